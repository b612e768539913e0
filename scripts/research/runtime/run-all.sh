#!/bin/sh
# Reproduce every figure in REPORT.md. Results land in results/. ~10 minutes on 2 shared cores.
set -e
cd "$(dirname "$0")"
mkdir -p results/safety-repeat
uptime | tee results/uptime-start.txt
for i in 1 2 3 4 5 6; do node bench-perf.js > results/perf-$i.jsonl; uptime >> results/uptime-perf.txt; done
for i in 1 2 3; do node bench-deadline.js > results/deadline-$i.jsonl; done
node bench-rpc.js > results/rpc.jsonl
for k in ivm ivm-async qjs vm vm-nocodegen worker+vm worker+ivm; do node bench-safety.js $k > results/safety-$k.json; done
for i in 2 3; do for k in ivm qjs worker+vm worker+ivm; do node bench-safety.js $k > results/safety-repeat/safety-$k-$i.json; done; done
./safety-vm-bomb.sh > results/vm-bomb.txt
node bench-membomb.js bomb > results/membomb.json; node bench-membomb.js bomb2 > results/membomb2.json
node qjs-bomb-rss.js bomb 10 > results/qjs-bomb-rss.jsonl; node qjs-bomb-rss.js bomb2 10 >> results/qjs-bomb-rss.jsonl
rm -f results/mem.jsonl; for k in ivm qjs qjs-own-module vm worker+vm worker+ivm; do for i in 1 2 3; do node --expose-gc bench-mem.js $k 20 >> results/mem.jsonl; done; done
for i in 1 2 3; do node --expose-gc qjs-module-cost.js; done > results/qjs-module.jsonl
node ivm-overshoot.js > results/ivm-overshoot.jsonl
node aggregate.js > results/summary.md
uptime | tee results/uptime-end.txt
