// Run a wasm32-wasip1 test binary (`cargo test --target wasm32-wasip1
// --no-run`) in Node's V8 with WASI: `node tools/wasi-test.mjs <test.wasm>
// [libtest args...]`. Exits with the tests' status.
//
// Why: the JSON scanner has a wasm-SIMD path (src/json_in.rs `plain_run`)
// that native `cargo test` never runs; this runs the same unit tests as wasm,
// with SIMD, in V8 (`make unit`). The proxy-wasm host functions the library
// imports (module "env") are stubs that fail if called: the tests run here
// are pure code and never call them.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: ["test", ...args], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const imports = { wasi_snapshot_preview1: wasi.wasiImport };
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === "wasi_snapshot_preview1") continue;
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => {
    throw new Error(`host function ${imp.module}.${imp.name} called in a pure test`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The library's proxy-wasm entry point exports `_initialize` too; libtest's
// `_start` is what runs the tests, and WASI refuses a module with both.
const exports = { ...instance.exports };
delete exports._initialize;
process.exitCode = wasi.start({ exports });
