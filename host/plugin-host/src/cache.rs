//! Compiling components, with an on-disk cache of the compiled code.
//!
//! Compiling a plugin with Cranelift takes tens to hundreds of milliseconds;
//! loading the cached machine code takes about one. But loading it means
//! `Component::deserialize`, which trusts its input to be machine code this
//! engine produced: whoever can write a cache entry can run native code in
//! the host. So the cache is guarded three ways:
//!
//! - the folder is created private (mode 0700) and refused when it is not
//!   owned by the current user or is writable by group or others;
//! - every artifact starts with a header holding its key (BLAKE3 of the
//!   engine's compatibility hash and the component bytes) and a BLAKE3
//!   digest of the compiled bytes, both checked before deserializing, so a
//!   file with the right name but the wrong content is recompiled, never
//!   loaded;
//! - artifacts are written to a temporary file in the same folder and
//!   renamed into place, so a reader never sees half an entry.

use std::fs::DirBuilder;
use std::hash::Hasher;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// The start of every cache artifact; the version changes with the layout.
const MAGIC: &[u8; 16] = b"tritlab-cwasm-01";
/// Magic, key, digest of the compiled bytes.
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

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

/// BLAKE3 of the engine configuration (wasmtime version, target, settings)
/// and the component bytes: what a cached artifact must be compiled from.
pub(crate) fn cache_key(engine: &Engine, wasm: &[u8]) -> blake3::Hash {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.update(b"\0component\0");
    hasher.0.update(wasm);
    hasher.0.finalize()
}

/// Where the artifact for `key` lives in `dir`.
pub(crate) fn artifact_path(dir: &Path, key: &blake3::Hash) -> PathBuf {
    dir.join(format!("{}.cwasm", key.to_hex()))
}

/// Makes `dir` ready to hold the cache: creates it private if missing and
/// checks that only the current user can write to it. `Err` says why the
/// cache cannot be used.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.is_dir() {
        return Err("it is not a folder".into());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {mode:o}); run `chmod 700` on it"
        ));
    }
    // The owner of a file we create is us: compare it with the folder's.
    let probe = dir.join(format!(".owner-probe-{}", std::process::id()));
    let probe_meta = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|file| file.metadata())
        .map_err(|e| format!("cannot write to it: {e}"));
    let _ = std::fs::remove_file(&probe);
    let me = probe_meta?.uid();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by user {} rather than the current user {me}",
            meta.uid()
        ));
    }
    Ok(())
}

/// The compiled bytes of the artifact at `path` if it holds exactly what
/// `key` names: right magic, right key, and compiled bytes matching the
/// digest. Anything else is `None`.
fn read_verified(path: &Path, key: &blake3::Hash) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(path).ok()?;
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let stored_key = &bytes[MAGIC.len()..MAGIC.len() + 32];
    let stored_digest = &bytes[MAGIC.len() + 32..HEADER_LEN];
    if stored_key != key.as_bytes() {
        return None;
    }
    // Constant-time comparison through blake3's Hash equality.
    let digest = blake3::hash(&bytes[HEADER_LEN..]);
    let stored_digest: [u8; 32] = stored_digest.try_into().ok()?;
    if digest != blake3::Hash::from_bytes(stored_digest) {
        return None;
    }
    bytes.drain(..HEADER_LEN);
    Some(bytes)
}

/// Compiles `wasm`, reusing and filling the cache in `cache_dir` if given
/// (a folder [`prepare_dir`] accepted).
///
/// Cache problems (unwritable folder, a corrupt, tampered or incompatible
/// entry) never fail a load: the component is compiled afresh instead.
pub(crate) fn compile_component(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm);
    };
    let key = cache_key(engine, wasm);
    let path = artifact_path(dir, &key);
    // Read into memory rather than `deserialize_file`'s mmap: a cache file
    // truncated by another process while mapped would kill this one with
    // SIGBUS; a copy cannot change under us.
    if let Some(compiled) = read_verified(&path, &key) {
        // SAFETY: `deserialize` trusts the bytes to be machine code that this
        // engine produced. They come from a folder only the current user can
        // write to (checked by `prepare_dir`), and `read_verified` checked
        // that the artifact's header names exactly this component and engine
        // configuration and that the compiled bytes match the digest written
        // with them by `store` below. Wasmtime additionally checks its own
        // header's version and settings and refuses a mismatch.
        match unsafe { Component::deserialize(engine, &compiled) } {
            Ok(component) => return Ok(component),
            Err(_) => {
                // Stale or damaged: drop it and compile afresh.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Ok(compiled) = component.serialize() {
        // Best effort: a failed write only costs a compile next time.
        let _ = store(dir, &path, &key, &compiled);
    }
    Ok(component)
}

/// Writes an artifact (header, then the compiled bytes) atomically: into a
/// private temporary file in the same folder, then renamed over `path`.
fn store(dir: &Path, path: &Path, key: &blake3::Hash, compiled: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{}.tmp{}", key.to_hex(), std::process::id()));
    // A leftover of an earlier process that had this id: never ours to keep.
    let _ = std::fs::remove_file(&temporary);
    let written =
        write_artifact(&temporary, key, compiled).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Writes header and compiled bytes to a new private file at `path`.
fn write_artifact(path: &Path, key: &blake3::Hash, compiled: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(MAGIC)?;
    file.write_all(key.as_bytes())?;
    file.write_all(blake3::hash(compiled).as_bytes())?;
    file.write_all(compiled)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tritlab-cache-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_cache_folder_is_private() {
        let dir = temp_dir("private").join("nested");
        prepare_dir(&dir).expect("usable");
        let mode = std::fs::metadata(&dir).expect("exists").mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = std::fs::remove_dir_all(dir.parent().expect("parent"));
    }

    #[test]
    fn a_group_or_world_writable_cache_folder_is_refused() {
        let dir = temp_dir("shared");
        std::fs::create_dir_all(&dir).expect("create");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = prepare_dir(&dir).expect_err("refused");
        assert!(err.contains("writable by group or others"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o720)).expect("chmod");
        assert!(prepare_dir(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn artifacts_are_checked_before_use() {
        let dir = temp_dir("verify");
        prepare_dir(&dir).expect("usable");
        let key = blake3::hash(b"component");
        let path = artifact_path(&dir, &key);
        store(&dir, &path, &key, b"compiled").expect("stored");
        assert_eq!(
            read_verified(&path, &key).as_deref(),
            Some(&b"compiled"[..])
        );
        assert_eq!(
            read_verified(&path, &blake3::hash(b"other")),
            None,
            "wrong key"
        );
        let mut bytes = std::fs::read(&path).expect("read");
        *bytes.last_mut().expect("not empty") ^= 1;
        std::fs::write(&path, &bytes).expect("tamper");
        assert_eq!(read_verified(&path, &key), None, "wrong digest");
        std::fs::write(&path, b"compiled").expect("headerless");
        assert_eq!(read_verified(&path, &key), None, "no header");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
