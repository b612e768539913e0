/*
 * vbpffs's libfuse3 binding: the low-level API, served by libfuse's own threads.
 *
 * Requests that need the engine cross to JS through one threadsafe function and are answered from
 * JS through the reply functions below. What needs no engine is answered here, on the libfuse
 * thread that received it: flush, write (bpffs files take no writes), opendir/releasedir, a
 * directory's entries after its first readdir call, reads of bytes JS has handed over and not yet
 * given out, and the EOF read once JS has said the file is at its end. Release is answered here
 * too; JS gets a message that needs no answer.
 *
 * Reads ignore the offset and follow a cursor, as fuse-native's path did and as bpf_seq_read does:
 * an iterator file is a stream.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum op {
  OP_LOOKUP = 1, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK,
  OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_RELEASE, OP_READDIR, OP_STATFS,
  OP_CREATE, OP_EXIT,
};

struct parked {
  fuse_req_t req;
  size_t size;
  struct parked *next;
};

/* One open file: the bytes JS rendered and the reader has not taken yet. */
struct file {
  pthread_mutex_t mu;
  double id;
  char *buf;
  size_t start, len, cap;
  int eof, err, fetching, released;
  struct parked *head, *tail;
};

struct dir {
  pthread_mutex_t mu;
  char **names;
  size_t count;
};

struct session {
  struct fuse_session *se;
  napi_threadsafe_function tsfn;
  pthread_t thread;
  int thread_started;
  int watchdog_fd;
  char *mountpoint;
};

struct msg {
  int op;
  fuse_req_t req;
  uint64_t ino;
  double v[6];
  uid_t uid;
  gid_t gid;
  pid_t pid;
  void *ptr;
  char *name, *name2;
};

/* ---- to JS ---------------------------------------------------------------------------------- */

static struct msg *msg_new(int op, fuse_req_t req, uint64_t ino, const char *name, const char *name2) {
  size_t l1 = name ? strlen(name) + 1 : 0, l2 = name2 ? strlen(name2) + 1 : 0;
  struct msg *m = calloc(1, sizeof *m + l1 + l2);
  if (!m) return NULL;
  m->op = op;
  m->req = req;
  m->ino = ino;
  if (req) {
    const struct fuse_ctx *c = fuse_req_ctx(req);
    m->uid = c->uid;
    m->gid = c->gid;
    m->pid = c->pid;
  }
  char *p = (char *)(m + 1);
  if (name) { memcpy(p, name, l1); m->name = p; p += l1; }
  if (name2) { memcpy(p, name2, l2); m->name2 = p; }
  return m;
}

static void send_msg(fuse_req_t req, struct msg *m) {
  struct session *s = req ? fuse_req_userdata(req) : NULL;
  if (!m) {
    if (req) fuse_reply_err(req, ENOMEM);
    return;
  }
  if (!s || napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_nonblocking) != napi_ok) {
    free(m);
    if (req) fuse_reply_err(req, EIO);
  }
}

static napi_value str_or_undefined(napi_env env, const char *s) {
  napi_value v;
  if (s) napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  else napi_get_undefined(env, &v);
  return v;
}

/* handler(op, req, ino, v0..v5 as an array, name, name2, ptr, uid, gid, pid) */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  struct msg *m = data;
  if (env == NULL) {
    if (m->req) fuse_reply_err(m->req, EIO);
    free(m);
    return;
  }
  napi_value args[11], undefined, v;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, m->op, &args[0]);
  if (m->req) napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)m->req, &args[1]);
  else args[1] = undefined;
  napi_create_double(env, (double)m->ino, &args[2]);
  napi_create_array_with_length(env, 6, &args[3]);
  for (uint32_t i = 0; i < 6; i++) {
    napi_create_double(env, m->v[i], &v);
    napi_set_element(env, args[3], i, v);
  }
  args[4] = str_or_undefined(env, m->name);
  args[5] = str_or_undefined(env, m->name2);
  if (m->ptr) napi_create_external(env, m->ptr, NULL, NULL, &args[6]);
  else args[6] = undefined;
  napi_create_uint32(env, m->uid, &args[7]);
  napi_create_uint32(env, m->gid, &args[8]);
  napi_create_int32(env, m->pid, &args[9]);
  free(m);
  napi_call_function(env, undefined, js_cb, 10, args, NULL);
}

/* ---- the operations ------------------------------------------------------------------------- */

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  send_msg(req, msg_new(OP_LOOKUP, req, parent, name, NULL));
}

static void forget_one(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  struct msg *m = msg_new(OP_FORGET, NULL, ino, NULL, NULL);
  if (!m) return;
  m->v[0] = (double)n;
  struct session *s = fuse_req_userdata(req);
  if (napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_nonblocking) != napi_ok) free(m);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  forget_one(req, ino, nlookup);
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  for (size_t i = 0; i < count; i++) forget_one(req, forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  send_msg(req, msg_new(OP_GETATTR, req, ino, NULL, NULL));
}

static double ms(struct timespec t) { return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6; }

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  struct msg *m = msg_new(OP_SETATTR, req, ino, NULL, NULL);
  if (m) {
    m->v[0] = to_set;
    m->v[1] = attr->st_mode;
    m->v[2] = attr->st_uid;
    m->v[3] = attr->st_gid;
    m->v[4] = ms(attr->st_atim);
    m->v[5] = ms(attr->st_mtim);
  }
  send_msg(req, m);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) { send_msg(req, msg_new(OP_READLINK, req, ino, NULL, NULL)); }

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  struct msg *m = msg_new(OP_MKNOD, req, parent, name, NULL);
  if (m) m->v[0] = mode;
  send_msg(req, m);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  struct msg *m = msg_new(OP_MKDIR, req, parent, name, NULL);
  if (m) m->v[0] = mode;
  send_msg(req, m);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) { send_msg(req, msg_new(OP_UNLINK, req, parent, name, NULL)); }
static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) { send_msg(req, msg_new(OP_RMDIR, req, parent, name, NULL)); }

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  send_msg(req, msg_new(OP_SYMLINK, req, parent, name, link));
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  struct msg *m = msg_new(OP_RENAME, req, parent, name, newname);
  if (m) {
    m->v[0] = (double)newparent;
    m->v[1] = flags;
  }
  send_msg(req, m);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  struct msg *m = msg_new(OP_LINK, req, ino, newname, NULL);
  if (m) m->v[0] = (double)newparent;
  send_msg(req, m);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct msg *m = msg_new(OP_OPEN, req, ino, NULL, NULL);
  if (m) m->v[0] = fi->flags;
  send_msg(req, m);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  struct msg *m = msg_new(OP_CREATE, req, parent, name, NULL);
  if (m) {
    m->v[0] = mode;
    m->v[1] = fi->flags;
  }
  send_msg(req, m);
}

/* Answers what it can from the buffer; the caller holds f->mu. 1 when answered. */
static int serve(struct file *f, fuse_req_t req, size_t size) {
  if (f->len > f->start) {
    size_t n = f->len - f->start < size ? f->len - f->start : size;
    fuse_reply_buf(req, f->buf + f->start, n);
    f->start += n;
    if (f->start == f->len) f->start = f->len = 0;
    return 1;
  }
  if (f->err) {
    int e = f->err;
    f->err = 0;
    fuse_reply_err(req, e);
    return 1;
  }
  if (f->eof) {
    fuse_reply_buf(req, NULL, 0);
    return 1;
  }
  return 0;
}

static void fetch(struct file *f, fuse_req_t req, size_t size) {
  struct msg *m = msg_new(OP_READ, req, 0, NULL, NULL);
  if (!m) return;
  m->v[0] = (double)size;
  m->v[1] = f->id;
  m->ptr = f;
  struct session *s = fuse_req_userdata(req);
  if (napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_nonblocking) != napi_ok) free(m);
  else f->fetching = 1;
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  struct file *f = (struct file *)(uintptr_t)fi->fh;
  pthread_mutex_lock(&f->mu);
  if (f->head == NULL && serve(f, req, size)) {
    pthread_mutex_unlock(&f->mu);
    return;
  }
  struct parked *p = malloc(sizeof *p);
  if (!p) {
    pthread_mutex_unlock(&f->mu);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  p->req = req;
  p->size = size;
  p->next = NULL;
  if (f->tail) f->tail->next = p;
  else f->head = p;
  f->tail = p;
  if (!f->fetching) {
    fetch(f, req, size);
    if (!f->fetching) {
      f->head = f->tail = NULL;
      free(p);
      pthread_mutex_unlock(&f->mu);
      fuse_reply_err(req, EIO);
      return;
    }
  }
  pthread_mutex_unlock(&f->mu);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  fuse_reply_err(req, EINVAL);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct file *f = (struct file *)(uintptr_t)fi->fh;
  pthread_mutex_lock(&f->mu);
  f->released = 1;
  pthread_mutex_unlock(&f->mu);
  struct msg *m = msg_new(OP_RELEASE, NULL, ino, NULL, NULL);
  struct session *s = fuse_req_userdata(req);
  fuse_reply_err(req, 0);
  if (!m) return;
  m->v[0] = f->id;
  m->ptr = f;
  if (napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_nonblocking) != napi_ok) free(m);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct dir *d = calloc(1, sizeof *d);
  if (!d) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  pthread_mutex_init(&d->mu, NULL);
  fi->fh = (uintptr_t)d;
  if (fuse_reply_open(req, fi) != 0) {
    pthread_mutex_destroy(&d->mu);
    free(d);
  }
}

static void dir_clear(struct dir *d) {
  for (size_t i = 0; i < d->count; i++) free(d->names[i]);
  free(d->names);
  d->names = NULL;
  d->count = 0;
}

/*
 * Fills a reply from the stored entries (entry i's offset is i + 1) into a buffer of its own. The
 * caller holds d->mu and sends the reply after letting go of it: once answered, the reader may
 * close the directory at once, and releasedir frees d on another thread.
 */
static char *dir_fill(struct dir *d, fuse_req_t req, size_t size, off_t off, size_t *used) {
  char *buf = malloc(size ? size : 1);
  *used = 0;
  if (!buf) return NULL;
  /* What libfuse 2's path API said of entries it had no stat for: type unknown, this inode. */
  struct stat st = {.st_ino = 0xffffffff, .st_mode = 0};
  for (size_t i = (size_t)off; i < d->count; i++) {
    size_t need = fuse_add_direntry(req, buf + *used, size - *used, d->names[i], &st, (off_t)(i + 1));
    if (need > size - *used) break;
    *used += need;
  }
  return buf;
}

static void dir_send(fuse_req_t req, char *buf, size_t used) {
  if (!buf) fuse_reply_err(req, ENOMEM);
  else fuse_reply_buf(req, buf, used);
  free(buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  struct dir *d = (struct dir *)(uintptr_t)fi->fh;
  pthread_mutex_lock(&d->mu);
  if (off > 0 && d->names) {
    size_t used;
    char *buf = dir_fill(d, req, size, off, &used);
    pthread_mutex_unlock(&d->mu);
    dir_send(req, buf, used);
    return;
  }
  pthread_mutex_unlock(&d->mu);
  struct msg *m = msg_new(OP_READDIR, req, ino, NULL, NULL);
  if (m) {
    m->v[0] = (double)size;
    m->v[1] = (double)off;
    m->ptr = d;
  }
  send_msg(req, m);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct dir *d = (struct dir *)(uintptr_t)fi->fh;
  /* Waits for a reply_dir that answered the last readdir to let go of the lock. */
  pthread_mutex_lock(&d->mu);
  dir_clear(d);
  pthread_mutex_unlock(&d->mu);
  pthread_mutex_destroy(&d->mu);
  free(d);
  fuse_reply_err(req, 0);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) { send_msg(req, msg_new(OP_STATFS, req, ino, NULL, NULL)); }

/*
 * Reads follow a cursor, so the parts of one large direct read must come one after another, not
 * as parallel requests that libfuse's threads could take in any order.
 */
static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  conn->want &= ~FUSE_CAP_ASYNC_DIO;
}

static const struct fuse_lowlevel_ops ops = {
  .init = ll_init,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .forget_multi = ll_forget_multi,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mknod = ll_mknod,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_rmdir,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .link = ll_link,
  .open = ll_open,
  .read = ll_read,
  .write = ll_write,
  .flush = ll_flush,
  .release = ll_release,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .releasedir = ll_releasedir,
  .statfs = ll_statfs,
  .create = ll_create,
};

/* ---- from JS -------------------------------------------------------------------------------- */

#define THROW(env, msg) do { napi_throw_error(env, NULL, msg); return NULL; } while (0)
#define ARGS(n) \
  size_t argc = n; napi_value argv[n]; \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;

static fuse_req_t req_arg(napi_env env, napi_value v) {
  uint64_t r = 0;
  bool lossless;
  napi_get_value_bigint_uint64(env, v, &r, &lossless);
  return (fuse_req_t)(uintptr_t)r;
}

static void *ext_arg(napi_env env, napi_value v) {
  void *p = NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

static double num(napi_env env, napi_value arr, uint32_t i) {
  napi_value v;
  double d = 0;
  napi_get_element(env, arr, i, &v);
  napi_get_value_double(env, v, &d);
  return d;
}

/* A stat from JS: [ino, mode, nlink, uid, gid, size, atime ms, mtime ms, ctime ms, rdev]. */
static void stat_arg(napi_env env, napi_value arr, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)num(env, arr, 0);
  st->st_mode = (mode_t)num(env, arr, 1);
  st->st_nlink = (nlink_t)num(env, arr, 2);
  st->st_uid = (uid_t)num(env, arr, 3);
  st->st_gid = (gid_t)num(env, arr, 4);
  st->st_size = (off_t)num(env, arr, 5);
  double t[3] = {num(env, arr, 6), num(env, arr, 7), num(env, arr, 8)};
  struct timespec *ts[3] = {&st->st_atim, &st->st_mtim, &st->st_ctim};
  for (int i = 0; i < 3; i++) {
    double s = t[i] / 1e3;
    ts[i]->tv_sec = (time_t)s;
    ts[i]->tv_nsec = (long)((s - (double)ts[i]->tv_sec) * 1e9);
    if (ts[i]->tv_nsec < 0) { ts[i]->tv_sec--; ts[i]->tv_nsec += 1000000000L; }
  }
  st->st_rdev = (dev_t)num(env, arr, 9);
  st->st_blksize = 4096;
  st->st_blocks = (st->st_size + 511) / 512;
}

static napi_value undef(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

static napi_value reply_err(napi_env env, napi_callback_info info) {
  ARGS(2)
  int32_t e = 0;
  napi_get_value_int32(env, argv[1], &e);
  fuse_reply_err(req_arg(env, argv[0]), e);
  return undef(env);
}

static napi_value reply_none(napi_env env, napi_callback_info info) {
  ARGS(1)
  fuse_reply_none(req_arg(env, argv[0]));
  return undef(env);
}

/* (req, nodeid, stat, timeout) */
static napi_value reply_entry(napi_env env, napi_callback_info info) {
  ARGS(4)
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  double node = 0, t = 0;
  napi_get_value_double(env, argv[1], &node);
  napi_get_value_double(env, argv[3], &t);
  e.ino = (fuse_ino_t)node;
  stat_arg(env, argv[2], &e.attr);
  e.attr_timeout = e.entry_timeout = t;
  fuse_reply_entry(req_arg(env, argv[0]), &e);
  return undef(env);
}

/* (req, stat, timeout) */
static napi_value reply_attr(napi_env env, napi_callback_info info) {
  ARGS(3)
  struct stat st;
  double t = 0;
  stat_arg(env, argv[1], &st);
  napi_get_value_double(env, argv[2], &t);
  fuse_reply_attr(req_arg(env, argv[0]), &st, t);
  return undef(env);
}

static napi_value reply_readlink(napi_env env, napi_callback_info info) {
  ARGS(2)
  size_t n = 0;
  napi_get_value_string_utf8(env, argv[1], NULL, 0, &n);
  char *s = malloc(n + 1);
  if (!s) THROW(env, "out of memory");
  napi_get_value_string_utf8(env, argv[1], s, n + 1, &n);
  fuse_reply_readlink(req_arg(env, argv[0]), s);
  free(s);
  return undef(env);
}

/* (req, [bsize, blocks, bfree, bavail, files, ffree, namemax]) */
static napi_value reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(2)
  struct statvfs s;
  memset(&s, 0, sizeof s);
  s.f_bsize = s.f_frsize = (unsigned long)num(env, argv[1], 0);
  s.f_blocks = (fsblkcnt_t)num(env, argv[1], 1);
  s.f_bfree = (fsblkcnt_t)num(env, argv[1], 2);
  s.f_bavail = (fsblkcnt_t)num(env, argv[1], 3);
  s.f_files = (fsfilcnt_t)num(env, argv[1], 4);
  s.f_ffree = s.f_favail = (fsfilcnt_t)num(env, argv[1], 5);
  s.f_namemax = (unsigned long)num(env, argv[1], 6);
  fuse_reply_statfs(req_arg(env, argv[0]), &s);
  return undef(env);
}

static struct file *file_new(double id) {
  struct file *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  pthread_mutex_init(&f->mu, NULL);
  f->id = id;
  return f;
}

static void file_free(struct file *f) {
  pthread_mutex_destroy(&f->mu);
  free(f->buf);
  free(f);
}

/*
 * (req, id) -> the file's handle, or null when the open was interrupted (the kernel then sends no
 * release: the caller releases). (req, id, nodeid, stat, timeout) answers a create.
 */
static napi_value reply_open(napi_env env, napi_callback_info info) {
  ARGS(5)
  double id = 0;
  napi_get_value_double(env, argv[1], &id);
  struct file *f = file_new(id);
  fuse_req_t req = req_arg(env, argv[0]);
  if (!f) {
    fuse_reply_err(req, ENOMEM);
    napi_value nul;
    napi_get_null(env, &nul);
    return nul;
  }
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = (uintptr_t)f;
  /* An iterator file's size is unknown until it is read (its stat says 0). */
  fi.direct_io = 1;
  int r;
  if (argc >= 5) {
    napi_valuetype t;
    napi_typeof(env, argv[2], &t);
    if (t == napi_number) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof e);
      double node = 0, to = 0;
      napi_get_value_double(env, argv[2], &node);
      napi_get_value_double(env, argv[4], &to);
      e.ino = (fuse_ino_t)node;
      stat_arg(env, argv[3], &e.attr);
      e.attr_timeout = e.entry_timeout = to;
      r = fuse_reply_create(req, &e, &fi);
    } else {
      r = fuse_reply_open(req, &fi);
    }
  } else {
    r = fuse_reply_open(req, &fi);
  }
  napi_value out;
  if (r != 0) {
    file_free(f);
    napi_get_null(env, &out);
  } else {
    napi_create_external(env, f, NULL, NULL, &out);
  }
  return out;
}

/*
 * (file, bytes | null, status): bytes the reader has not taken yet, and what follows them:
 * 0 more is being fetched, 1 the fetch is done (a read past these bytes asks again; with no bytes,
 * the read waiting is answered empty), 2 EOF (every read past these bytes is answered empty here),
 * a negative errno the read waiting past these bytes fails with (the next one asks again).
 */
static napi_value feed(napi_env env, napi_callback_info info) {
  ARGS(3)
  struct file *f = ext_arg(env, argv[0]);
  if (!f) THROW(env, "not a file handle");
  void *data = NULL;
  size_t n = 0;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t == napi_object) {
    napi_typedarray_type tt;
    size_t len, boff;
    napi_value ab;
    napi_get_typedarray_info(env, argv[1], &tt, &len, &data, &ab, &boff);
    n = len;
  }
  int32_t status = 0;
  napi_get_value_int32(env, argv[2], &status);
  pthread_mutex_lock(&f->mu);
  if (f->released) {
    pthread_mutex_unlock(&f->mu);
    return undef(env);
  }
  if (n > 0) {
    if (f->start > 0 && f->start == f->len) f->start = f->len = 0;
    if (f->len + n > f->cap) {
      size_t cap = f->cap ? f->cap : 4096;
      while (cap < f->len + n) cap *= 2;
      char *b = realloc(f->buf, cap);
      if (!b) {
        pthread_mutex_unlock(&f->mu);
        THROW(env, "out of memory");
      }
      f->buf = b;
      f->cap = cap;
    }
    memcpy(f->buf + f->len, data, n);
    f->len += n;
  }
  if (status != 0) f->fetching = 0;
  if (status == 2) f->eof = 1;
  if (status < 0) f->err = -status;
  /* An empty read that is not EOF: the read waiting for it returns 0, as the backend said. */
  int empty = status == 1 && n == 0;
  while (f->head) {
    struct parked *p = f->head;
    if (!serve(f, p->req, p->size)) {
      if (empty) {
        fuse_reply_buf(p->req, NULL, 0);
        empty = 0;
      } else {
        if (!f->fetching) fetch(f, p->req, p->size);
        if (f->fetching) break;
        fuse_reply_err(p->req, EIO);
      }
    }
    f->head = p->next;
    if (!f->head) f->tail = NULL;
    free(p);
  }
  pthread_mutex_unlock(&f->mu);
  return undef(env);
}

/* After its release message: nothing refers to the file any more. */
static napi_value file_close(napi_env env, napi_callback_info info) {
  ARGS(1)
  struct file *f = ext_arg(env, argv[0]);
  if (f) file_free(f);
  return undef(env);
}

/* (req, dir, names | null, size, off): stores a directory's entries and answers from them. */
static napi_value reply_dir(napi_env env, napi_callback_info info) {
  ARGS(5)
  fuse_req_t req = req_arg(env, argv[0]);
  struct dir *d = ext_arg(env, argv[1]);
  double size = 0, off = 0;
  napi_get_value_double(env, argv[3], &size);
  napi_get_value_double(env, argv[4], &off);
  uint32_t count = 0;
  napi_get_array_length(env, argv[2], &count);
  pthread_mutex_lock(&d->mu);
  dir_clear(d);
  d->names = calloc(count ? count : 1, sizeof(char *));
  if (!d->names) {
    pthread_mutex_unlock(&d->mu);
    fuse_reply_err(req, ENOMEM);
    return undef(env);
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    size_t n = 0;
    napi_get_element(env, argv[2], i, &v);
    napi_get_value_string_utf8(env, v, NULL, 0, &n);
    char *s = malloc(n + 1);
    if (!s) break;
    napi_get_value_string_utf8(env, v, s, n + 1, &n);
    d->names[d->count++] = s;
  }
  size_t used;
  char *buf = dir_fill(d, req, (size_t)size, (off_t)off, &used);
  pthread_mutex_unlock(&d->mu);
  dir_send(req, buf, used);
  return undef(env);
}

/* ---- the session ---------------------------------------------------------------------------- */

static void *loop_thread(void *arg) {
  struct session *s = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  fuse_loop_cfg_set_max_threads(cfg, 16);
  fuse_session_loop_mt(s->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  struct msg *m = msg_new(OP_EXIT, NULL, 0, NULL, NULL);
  if (m && napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_blocking) != napi_ok) free(m);
  return NULL;
}

/*
 * auto_unmount without fusermount3 (Debian's fuse3 package, which ships it, removes fuse-native's
 * fusermount): a grandchild that waits on a pipe and lazily unmounts when the daemon dies without
 * saying it unmounted. It holds no other descriptor (the /dev/fuse one would keep the connection
 * alive) and makes only system calls, as a child of a threaded process must.
 */
static int start_watchdog(const char *mountpoint) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    if (fork() != 0) _exit(0);
    setsid();
    if (dup2(fds[0], 3) < 0) _exit(1);
    syscall(SYS_close_range, 0, 2, 0);
    syscall(SYS_close_range, 4, ~0U, 0);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    char c;
    ssize_t n;
    do n = read(3, &c, 1); while (n < 0 && errno == EINTR);
    if (n != 1) umount2(mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
    _exit(0);
  }
  close(fds[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return fds[1];
}

static void session_free(struct session *s) {
  if (s->watchdog_fd >= 0) close(s->watchdog_fd);
  free(s->mountpoint);
  free(s);
}

/* (mountpoint, options string, handler, autoUnmount) -> session */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  ARGS(4)
  char mnt[4096], opts[1024];
  size_t n;
  if (napi_get_value_string_utf8(env, argv[0], mnt, sizeof mnt, &n) != napi_ok) THROW(env, "mountpoint must be a string");
  if (napi_get_value_string_utf8(env, argv[1], opts, sizeof opts, &n) != napi_ok) THROW(env, "options must be a string");
  bool autoUnmount = false;
  napi_get_value_bool(env, argv[3], &autoUnmount);
  struct session *s = calloc(1, sizeof *s);
  if (!s) THROW(env, "out of memory");
  s->watchdog_fd = -1;
  s->mountpoint = strdup(mnt);
  char *args_v[] = {"vbpffs", "-o", opts, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, args_v);
  s->se = fuse_session_new(&args, &ops, sizeof ops, s);
  if (!s->se) {
    session_free(s);
    THROW(env, "fuse_session_new failed (bad options?)");
  }
  if (fuse_session_mount(s->se, mnt) != 0) {
    fuse_session_destroy(s->se);
    session_free(s);
    THROW(env, "fuse_session_mount failed (libfuse3 mounts as root, or through fusermount3)");
  }
  if (autoUnmount) s->watchdog_fd = start_watchdog(mnt);
  napi_value name;
  napi_create_string_utf8(env, "vbpffs-fuse3", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &s->tsfn) != napi_ok) {
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    session_free(s);
    THROW(env, "cannot make the threadsafe function");
  }
  if (pthread_create(&s->thread, NULL, loop_thread, s) != 0) {
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    session_free(s);
    THROW(env, "cannot start the session thread");
  }
  s->thread_started = 1;
  napi_value out;
  napi_create_external(env, s, NULL, NULL, &out);
  return out;
}

/*
 * Ends the session: a lazy unmount, after which the kernel ends the connection once no file in the
 * mount is open, the loop threads' reads fail with ENODEV and the loop thread sends OP_EXIT. Not
 * fuse_session_unmount here: it closes /dev/fuse under the threads still reading it, and the number
 * can be reused by any file the process opens next. (fs/fuse/libfuse3.ts aborts a connection that
 * open files keep alive.)
 */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  ARGS(1)
  struct session *s = ext_arg(env, argv[0]);
  if (!s) THROW(env, "not a session");
  if (s->watchdog_fd >= 0) {
    ssize_t w = write(s->watchdog_fd, "u", 1);
    (void)w;
    close(s->watchdog_fd);
    s->watchdog_fd = -1;
  }
  fuse_session_exit(s->se);
  if (umount2(s->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL) {
    char msg[256];
    snprintf(msg, sizeof msg, "cannot unmount %s: %s", s->mountpoint, strerror(errno));
    THROW(env, msg);
  }
  return undef(env);
}

/* After OP_EXIT: the loop thread has returned (or is returning) and sends nothing more. */
static napi_value destroy(napi_env env, napi_callback_info info) {
  ARGS(1)
  struct session *s = ext_arg(env, argv[0]);
  if (!s) THROW(env, "not a session");
  if (s->thread_started) pthread_join(s->thread, NULL);
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  /* Unmounted already (js_unmount): destroying closes /dev/fuse; fuse_session_unmount would try again. */
  fuse_session_destroy(s->se);
  session_free(s);
  return undef(env);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
    {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
    {"destroy", NULL, destroy, NULL, NULL, NULL, napi_default, NULL},
    {"replyErr", NULL, reply_err, NULL, NULL, NULL, napi_default, NULL},
    {"replyNone", NULL, reply_none, NULL, NULL, NULL, napi_default, NULL},
    {"replyEntry", NULL, reply_entry, NULL, NULL, NULL, napi_default, NULL},
    {"replyAttr", NULL, reply_attr, NULL, NULL, NULL, napi_default, NULL},
    {"replyReadlink", NULL, reply_readlink, NULL, NULL, NULL, napi_default, NULL},
    {"replyStatfs", NULL, reply_statfs, NULL, NULL, NULL, napi_default, NULL},
    {"replyOpen", NULL, reply_open, NULL, NULL, NULL, napi_default, NULL},
    {"replyDir", NULL, reply_dir, NULL, NULL, NULL, napi_default, NULL},
    {"feed", NULL, feed, NULL, NULL, NULL, napi_default, NULL},
    {"fileClose", NULL, file_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
