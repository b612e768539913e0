# Prints every failed assertion in a TAP log with the subtests above it and its diagnostics (what
# was found and wanted, and the stack; not the source around it), at most LIMIT lines
# in all. A test file that failed with no failed assertion inside it (killed, crashed, timed out) is
# printed with its own result. CI shows us only the end of its output, where tap puts the coverage
# table: this digest goes after it, so a failed run says what failed. POSIX awk (mawk).
#   awk -v LIMIT=200 -f scripts/ci/failures.awk LOG
BEGIN { if (LIMIT == "") LIMIT = 200; printed = 0; inblock = 0; shown = 0 }
function say(s) { if (printed < LIMIT) print s; printed++ }
function strip(s) { sub(/^[ \t]+/, "", s); return s }
function indent(s) { return match(s, /[^ ]/) - 1 }
# tap indents each level of subtest by four spaces.
function level(s) { return int(indent(s) / 4) }
function begin(ctx, line) {
  say("")
  if (ctx != "") say(ctx)
  say("  " strip(line))
  inblock = 1; blines = 0; keyindent = -1; skipping = 0
}
/^# Subtest: / { shown = 0 }
/^[ \t]*# Subtest: / { l = level($0); name[l] = substr(strip($0), 12); top = l; next }
/^[ \t]*not ok [0-9]+ / {
  if ($0 ~ /# (TODO|SKIP)/) { inblock = 0; next }
  # A subtest's own result repeats the failures shown inside it; a file's is shown when none was.
  if ($0 ~ /# time=/ && !($0 ~ /^not ok/ && !shown)) { inblock = 0; next }
  l = level($0)
  ctx = ""
  for (i = 0; i < l && i <= top; i++) ctx = ctx (i ? " > " : "") name[i]
  begin(ctx, $0)
  shown = 1
  next
}
inblock && /^[ \t]*\.\.\.$/ { inblock = 0; next }
inblock && /^[ \t]*---$/ { keyindent = indent($0); next }
inblock && keyindent < 0 { inblock = 0 }
inblock {
  if (strip($0) == "") next
  # A key of the diagnostics (at the block's indentation) starts or ends a part left out.
  if (indent($0) == keyindent && $0 ~ /^ *[A-Za-z_]+:/) skipping = ($0 ~ /^ *(at|source|test|args|stdio|cwd|command|externalID|env):/)
  if (!skipping && ++blines <= 24) say("    " strip($0))
  next
}
END { if (printed > LIMIT) print "... and " (printed - LIMIT) " more lines: the whole log is above" }
