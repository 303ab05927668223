//! proxy-wasm edge (wasm32 only).
