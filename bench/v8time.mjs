// Wall-clock time per iteration of one examples/hotpath.rs case compiled to
// wasm32-wasip1 and run in V8 (Node's WASI), the engine Envoy runs the filter
// in: the pure code's cost as wasm, not native x86. Timings move with the
// machine's load (best of 5 is printed); instruction counts (callgrind) are
// the repeatable measure.
//
//   node bench/v8time.mjs target/wasm32-wasip1/profiling/examples/hotpath.wasm <case> <iterations>
import { openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv } from 'node:process';
const [,, wasmPath, ...args] = argv;
const wasm = await WebAssembly.compile(await readFile(wasmPath));
async function run(a) {
  // The case's own summary line is not wanted here.
  const wasi = new WASI({
    version: 'preview1',
    args: ['hotpath', ...a],
    env: {},
    stdout: openSync('/dev/null', 'w'),
  });
  const imports = wasi.getImportObject();
  // The library's proxy-wasm host functions are linked but never called here.
  const env = {};
  for (const imp of WebAssembly.Module.imports(wasm)) {
    if (imp.module === 'env') env[imp.name] = () => { throw new Error('host call ' + imp.name); };
  }
  imports.env = env;
  const inst = await WebAssembly.instantiate(wasm, imports);
  const t0 = process.hrtime.bigint();
  wasi.start({ exports: { memory: inst.exports.memory, _start: inst.exports._start } });
  return Number(process.hrtime.bigint() - t0) / 1e3; // us
}
const [cs, nStr] = args;
const n = Number(nStr);
// Warm up V8's tiers, then time n and 2n iterations, five times each: the
// difference of the fastest of each is the time of n iterations without the
// set-up (fixtures), least disturbed by other load.
await run([cs, String(n)]);
let one = Infinity;
let two = Infinity;
for (let k = 0; k < 5; k++) {
  one = Math.min(one, await run([cs, String(n)]));
  two = Math.min(two, await run([cs, String(2 * n)]));
}
console.log(`${cs}: ${((two - one) / n).toFixed(2)} us per iteration (V8, best of 5)`);
