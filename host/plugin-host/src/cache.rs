//! Compiling components, with an on-disk cache of the compiled code.
//!
//! Compiling a plugin with Cranelift takes tens to hundreds of milliseconds;
//! loading the cached machine code takes about one. The cache key is the
//! BLAKE3 hash of the component bytes together with the engine's
//! compatibility hash (wasmtime version, target, settings), so a changed
//! plugin or a changed engine never picks up stale code.

use std::hash::Hasher;
use std::path::Path;

use wasmtime::component::Component;
use wasmtime::Engine;

/// Feeds `std::hash::Hash` output into BLAKE3, so the engine's
/// compatibility hash can be folded into the cache key.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let hash = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.update(wasm);
    hasher.0.finalize().to_hex().to_string()
}

/// Compiles `wasm`, reusing and filling the cache in `cache_dir` if given.
///
/// Cache problems (unwritable folder, a corrupt or incompatible entry) never
/// fail a load: the component is compiled afresh instead.
pub(crate) fn compile_component(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm);
    };
    let path = dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
    // Read into memory rather than `deserialize_file`'s mmap: a cache file
    // truncated by another process while mapped would kill this one with
    // SIGBUS; a copy cannot change under us.
    if let Ok(serialized) = std::fs::read(&path) {
        // SAFETY: `deserialize` trusts the bytes to be machine code that this
        // engine produced. The cache folder belongs to the user running
        // tritlab, entries are written only by `compile_component` below
        // (atomically, by rename), and their names bind them to the exact
        // component bytes and engine configuration. Wasmtime additionally
        // checks the header's version and settings and refuses a mismatch.
        match unsafe { Component::deserialize(engine, &serialized) } {
            Ok(component) => return Ok(component),
            Err(_) => {
                // Stale or damaged: drop it and compile afresh.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Ok(serialized) = component.serialize() {
        // Best effort: a failed write only costs a compile next time.
        let _ = write_atomically(dir, &path, &serialized);
    }
    Ok(component)
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}
