# Prints every failed assertion in a TAP log with the subtests above it and the start of its
# diagnostics, at most LIMIT lines in all. CI shows us only the end of its output, where tap puts
# the coverage table: this digest goes after it, so a failed run says what failed. POSIX awk (mawk).
#   awk -v LIMIT=200 -f scripts/ci/failures.awk LOG
BEGIN { if (LIMIT == "") LIMIT = 200; printed = 0; inblock = 0 }
function say(s) { if (printed < LIMIT) print s; printed++ }
function strip(s) { sub(/^[ \t]+/, "", s); return s }
# tap indents each level of subtest by four spaces.
function level(s) { return int((match(s, /[^ ]/) - 1) / 4) }
/^[ \t]*# Subtest: / { l = level($0); name[l] = substr(strip($0), 12); top = l; next }
/^[ \t]*not ok [0-9]+ / {
  # A file's or a subtest's own result repeats the failures already shown inside it.
  if ($0 ~ /# time=/) { inblock = 0; next }
  l = level($0)
  ctx = ""
  for (i = 0; i < l && i <= top; i++) ctx = ctx (i ? " > " : "") name[i]
  say("")
  say(ctx)
  say("  " strip($0))
  inblock = 1; blines = 0
  next
}
inblock && /^[ \t]*\.\.\.$/ { inblock = 0; next }
inblock && /^[ \t]*(ok|not ok|# Subtest:|1\.\.)/ { inblock = 0 }
inblock {
  if (strip($0) != "" && ++blines <= 20) say("    " strip($0))
  next
}
END { if (printed > LIMIT) print "... and " (printed - LIMIT) " more lines: the whole log is above" }
