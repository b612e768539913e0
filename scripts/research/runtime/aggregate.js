'use strict';
// Summarize results/*.jsonl into markdown tables: median over runs [min–max].
const fs = require('fs'); const path = require('path');
const R = (f) => path.join(__dirname, 'results', f);
const lines = (re) => fs.readdirSync(path.join(__dirname, 'results')).filter(f => re.test(f)).flatMap(f => fs.readFileSync(R(f), 'utf8').split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l)));
const med = (a) => { const s = a.slice().sort((x, y) => x - y); return s[(s.length - 1) >> 1]; };
const fmt = (a, d = 1) => a.length === 1 ? a[0].toFixed(d) : `${med(a).toFixed(d)} [${Math.min(...a).toFixed(d)}–${Math.max(...a).toFixed(d)}]`;
const group = (rows, key) => rows.reduce((m, r) => ((m[r[key]] ||= []).push(r), m), {});
const perf = group(lines(/^perf-\d+\.jsonl$/), 'config');
let out = `### cgroup_view run and tick hook (${Object.values(perf)[0]?.length || 0} runs of 20,000 view runs each; median [min–max] over runs)\n\n`;
out += '| config | view p50 µs | view p99 µs | process CPU µs/run | tick x1000 total ms | tick x1000 CPU ms | tick x1000 as one batch message ms | output ok | false deadline kills (normal runs cut) |\n|---|---|---|---|---|---|---|---|---|\n';
for (const [k, rs] of Object.entries(perf)) out += `| ${k} | ${fmt(rs.map(r => r.view.p50))} | ${fmt(rs.map(r => r.view.p99))} | ${fmt(rs.map(r => r.view.cpuPerRunUs))} | ${fmt(rs.map(r => r.tick.totalMs))} | ${fmt(rs.map(r => r.tick.cpuMs))} | ${rs[0].tickBatch ? fmt(rs.map(r => r.tickBatch.totalMs)) : '–'} | ${rs.every(r => r.outputErrors === 0) ? 'yes' : 'NO'} | ${rs.map(r => r.falseDeadlineKills ?? 'n/a').join(' / ')} |\n`;
const dl = group(lines(/^deadline-\d+\.jsonl$/), 'label');
out += `\n### Deadline mechanism, empty program (median [min–max] over ${Object.values(dl)[0]?.length || 0} runs of 20,000 calls)\n\n| call | p50 µs | p99 µs |\n|---|---|---|\n`;
for (const [k, rs] of Object.entries(dl)) out += `| ${k} | ${fmt(rs.map(r => r.p50), 2)} | ${fmt(rs.map(r => r.p99), 1)} |\n`;
if (fs.existsSync(R('rpc.jsonl'))) { out += '\n### Synchronous helper from a worker\n\n| call | p50 µs | p99 µs |\n|---|---|---|\n'; for (const r of lines(/^rpc\.jsonl$/)) out += `| ${r.label} | ${r.p50} | ${r.p99} |\n`; }
const mem = group(lines(/^mem\.jsonl$/), 'kind');
out += '\n### Memory per runtime instance (20 instances, program loaded, 3 runs)\n\n| runtime | RSS MB per instance | create ms each | note |\n|---|---|---|---|\n';
for (const [k, rs] of Object.entries(mem)) out += `| ${k} | ${fmt(rs.map(r => r.rssPerInstanceMB), 2)} | ${fmt(rs.map(r => r.createMsEach), 1)} | ${rs[0].extra} |\n`;
out += '\n### Safety (deadline 10 ms, memory limit 32 MB, sink limit 1 MB)\n\n| runtime | program | stopped by / result | run ms | longest timer gap ms | ELD max ms | afterwards | recreate ms |\n|---|---|---|---|---|---|---|---|\n';
for (const f of fs.readdirSync(path.join(__dirname, 'results')).filter(f => /^safety-.*\.json$/.test(f))) {
  const j = JSON.parse(fs.readFileSync(R(f), 'utf8'));
  for (const r of j.results || []) out += `| ${j.kind} | ${r.prog} | ${String(r.result).replace(/\|/g, '/')} | ${r.ms ?? '–'} | ${r.maxTimerGapMs ?? '–'} | ${r.eldMaxMs ?? '–'} | ${r.after ?? '–'} | ${r.recreateMs ?? ''} |\n`;
  out += `| ${j.kind} | (recreate runtime, median of 5) | | | | | | ${j.recreateMedianMs} |\n`;
}
for (const f of ['membomb.json', 'membomb2.json']) if (fs.existsSync(R(f))) {
  out += `\n### Memory limit alone (${f}: deadline 5 s, limit 32 MB)\n\n| runtime | program | result | ms | longest timer gap ms | afterwards | process RSS MB after |\n|---|---|---|---|---|---|---|\n`;
  for (const r of JSON.parse(fs.readFileSync(R(f), 'utf8'))) out += `| ${r.kind} | ${r.prog} | ${r.result} | ${r.ms} | ${r.maxTimerGapMs} | ${r.after} | ${r.rssMB} |\n`;
}
console.log(out);
