const { getQuickJS, newQuickJSWASMModule, RELEASE_SYNC } = require('quickjs-emscripten');
(async () => {
  const Q = await getQuickJS();
  const rt = Q.newRuntime(); rt.setMemoryLimit(32 * 1024 * 1024);
  const vm = rt.newContext();
  const r = vm.unwrapResult(vm.evalCode('globalThis.ab = new ArrayBuffer(32); new Uint8Array(ab)[0]=5; ab'));
  const life = vm.getArrayBuffer(r);
  const view = life.value;
  console.log('view', view.constructor.name, view.length, view[0], 'buffer is wasm memory?', view.buffer.byteLength);
  view[1] = 99;
  console.log('vm sees host write:', vm.dump(vm.unwrapResult(vm.evalCode('new Uint8Array(ab)[1]'))));
  vm.unwrapResult(vm.evalCode('new Uint8Array(ab)[2]=77')).dispose();
  console.log('host sees vm write via old view:', view[2]);
  console.log('SAB in qjs?', vm.dump(vm.unwrapResult(vm.evalCode('typeof SharedArrayBuffer'))));
  console.log(Object.keys(vm.__proto__).concat(Object.getOwnPropertyNames(Object.getPrototypeOf(vm))).filter(k=>/Array|Buffer|new/.test(k)).join(' '));
  console.log('module keys', Object.keys(require('quickjs-emscripten')).join(' '));
})();
