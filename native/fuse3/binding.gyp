{
  "targets": [
    {
      "target_name": "vbpffs_fuse3",
      "sources": ["vbpffs_fuse3.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lpthread"]
    }
  ]
}
