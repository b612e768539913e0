#!/bin/sh
# node:vm has no memory limit: a memory bomb in an in-process vm context takes the host process down.
cd "$(dirname "$0")"
node --max-old-space-size=128 -e "
const vm=require('vm'); const ctx=vm.createContext({});
setTimeout(()=>{},100000);
try { vm.runInContext('const a=[]; for(;;) a.push(new Array(1e5).fill(1))', ctx, {timeout: 10000}); } catch(e) { console.log('caught', e.message); }
" > /tmp/rt-research/vm-bomb.out 2>&1
echo "host exit code: $?"; grep -m2 -E "heap out of memory|FATAL|caught" /tmp/rt-research/vm-bomb.out
