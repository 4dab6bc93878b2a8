//! tritlab-assets: the files tritlab ships inside its binary, and where they are unpacked.
//!
//! The default model, the workbooks (with their data) and the bundled plugins are compiled into
//! the binary, so `cargo install --path host/app`, or the release binary copied anywhere, runs the
//! tour, opens the workbench and finds its plugins without the source tree it was built from.
//!
//! The model is memory-mapped and the plugins are read by path, so the files are unpacked once
//! into the user's data folder, `$TRITLAB_HOME`, else `$XDG_DATA_HOME/tritlab`, else
//! `~/.local/share/tritlab`, under `bundle/VERSION-HASH/`, keeping their paths relative to the
//! repository root (a workbook's `../assets/default-model` finds the model there as it does in a
//! checkout). The hash names the exact contents, so two builds never share a folder.
//!
//! Every start checks the unpacked model and plugins against the embedded bytes and rewrites any
//! that differ. Workbooks are the exception: they are written only when missing, because a person
//! may have edited and saved the tour, and that work is theirs.
//!
//! Environment variables override each part: `TRITLAB_DEFAULT_MODEL` (a model directory),
//! `TRITLAB_PLUGIN_DIR` (a folder of `*.wasm` components) and `TRITLAB_TOUR` (a workbook).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod bundle {
    include!(concat!(env!("OUT_DIR"), "/bundle.rs"));
}

/// Why the shipped files could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error(
        "there is no folder to unpack tritlab's model, workbooks and plugins into: \
         set TRITLAB_HOME (or HOME)"
    )]
    NoDataDir,
    #[error("unpacking tritlab's files into {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AssetError {
    fn io(path: &Path, source: std::io::Error) -> AssetError {
        AssetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, AssetError>;

/// tritlab's data folder: `$TRITLAB_HOME`, else `$XDG_DATA_HOME/tritlab`, else
/// `~/.local/share/tritlab`.
pub fn data_dir() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(home) = set("TRITLAB_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(data) = set("XDG_DATA_HOME") {
        return Some(PathBuf::from(data).join("tritlab"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".local/share/tritlab"))
}

/// The shipped files, as (path relative to the repository root, contents).
pub fn files() -> &'static [(&'static str, &'static [u8])] {
    bundle::FILES
}

/// The names of the shipped plugins (`gay-tracer.wasm`, …); empty when the binary was built
/// before the plugins were.
pub fn shipped_plugins() -> impl Iterator<Item = &'static str> {
    files()
        .iter()
        .filter_map(|(path, _)| path.strip_prefix("plugins/"))
}

/// The folder name for this build's files: the version and a digest of every file.
fn bundle_name() -> String {
    let mut hasher = blake3::Hasher::new();
    for (path, bytes) in files() {
        hasher.update(&(path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let hex = hasher.finalize().to_hex();
    format!("{}-{}", env!("CARGO_PKG_VERSION"), &hex[..16])
}

/// The shipped files, unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    root: PathBuf,
}

impl Bundle {
    /// This build's files in the user's data folder, unpacked (or repaired) on the first call in
    /// a process.
    pub fn unpacked() -> Result<&'static Bundle> {
        // A lock rather than a `OnceLock`: two threads must not unpack at once, and a failure is
        // tried again on the next call.
        static BUNDLE: Mutex<Option<&'static Bundle>> = Mutex::new(None);
        let mut unpacked = BUNDLE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bundle) = *unpacked {
            return Ok(bundle);
        }
        let base = data_dir().ok_or(AssetError::NoDataDir)?.join("bundle");
        let bundle: &'static Bundle = Box::leak(Box::new(Bundle::unpack_into(&base)?));
        *unpacked = Some(bundle);
        Ok(bundle)
    }

    /// Unpacks this build's files under `base` (into `base/VERSION-HASH`), or checks and repairs
    /// a copy already there.
    pub fn unpack_into(base: &Path) -> Result<Bundle> {
        create_private_dir(base)?;
        let root = base.join(bundle_name());
        if !root.is_dir() {
            // Unpack beside the final folder and rename it into place, so that a crash or a
            // second tritlab starting at the same moment never sees half a bundle.
            let staging = base.join(format!(".unpacking-{}", std::process::id()));
            if staging.exists() {
                std::fs::remove_dir_all(&staging).map_err(|e| AssetError::io(&staging, e))?;
            }
            for (path, bytes) in files() {
                write_file(&staging.join(path), bytes)?;
            }
            if let Err(e) = std::fs::rename(&staging, &root) {
                // Another process won the race; its copy is checked below like any other.
                let _ = std::fs::remove_dir_all(&staging);
                if !root.is_dir() {
                    return Err(AssetError::io(&root, e));
                }
            }
        }
        let bundle = Bundle { root };
        bundle.repair()?;
        Ok(bundle)
    }

    /// Rewrites every model or plugin file that is missing or differs from the embedded bytes,
    /// and every missing workbook.
    fn repair(&self) -> Result<()> {
        for (path, bytes) in files() {
            let target = self.root.join(path);
            let keep = match std::fs::read(&target) {
                Ok(found) => found == *bytes || path.starts_with("workbooks/"),
                Err(_) => false,
            };
            if !keep {
                write_file(&target, bytes)?;
            }
        }
        Ok(())
    }

    /// The folder the files were unpacked into.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The default model's directory.
    pub fn default_model(&self) -> PathBuf {
        self.root.join("assets/default-model")
    }

    /// A shipped workbook (`tour.md`, `training.md`, …).
    pub fn workbook(&self, name: &str) -> PathBuf {
        self.root.join("workbooks").join(name)
    }

    /// The folder of shipped plugins, if this build ships any.
    pub fn plugin_dir(&self) -> Option<PathBuf> {
        shipped_plugins().next().map(|_| self.root.join("plugins"))
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The default model: `$TRITLAB_DEFAULT_MODEL`, else the shipped one.
pub fn default_model() -> Result<PathBuf> {
    match env_path("TRITLAB_DEFAULT_MODEL") {
        Some(dir) => Ok(dir),
        None => Ok(Bundle::unpacked()?.default_model()),
    }
}

/// The bundled plugins' folder: `$TRITLAB_PLUGIN_DIR`, else the shipped plugins (none when the
/// binary was built before them).
pub fn bundled_plugin_dir() -> Result<Option<PathBuf>> {
    match env_path("TRITLAB_PLUGIN_DIR") {
        Some(dir) => Ok(Some(dir)),
        None => Ok(Bundle::unpacked()?.plugin_dir()),
    }
}

/// The tour workbook: `$TRITLAB_TOUR`, else the shipped one.
pub fn tour() -> Result<PathBuf> {
    match env_path("TRITLAB_TOUR") {
        Some(book) => Ok(book),
        None => Ok(Bundle::unpacked()?.workbook("tour.md")),
    }
}

/// Creates `dir` (and its parents) readable by its owner only: plugins are loaded from here, so
/// nobody else may write into it.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| AssetError::io(dir, e))?;
    // The mode above applies only to folders it creates; one made earlier by other means is
    // narrowed too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let narrow = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(dir, narrow).map_err(|e| AssetError::io(dir, e))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    create_private_dir(parent)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let written = std::fs::File::create(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        AssetError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(prefix: &str) -> Vec<&'static str> {
        files()
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| p.starts_with(prefix))
            .collect()
    }

    #[test]
    fn ships_the_model_and_the_tour() {
        for needed in [
            "assets/default-model/config.json",
            "assets/default-model/model.safetensors",
            "assets/default-model/tokenizer.json",
            "assets/default-model/morphisms.tml",
            "workbooks/tour.md",
            "workbooks/data/sonnets.txt",
        ] {
            assert!(shipped(needed).contains(&needed), "{needed} is not shipped");
        }
    }

    #[test]
    fn unpacks_into_a_private_versioned_folder() {
        let base = tempfile::tempdir().unwrap();
        let bundle = Bundle::unpack_into(base.path()).unwrap();
        assert!(bundle.root().starts_with(base.path()));
        let name = bundle.root().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(env!("CARGO_PKG_VERSION")), "{name}");
        for (path, bytes) in files() {
            assert_eq!(
                std::fs::read(bundle.root().join(path)).unwrap(),
                *bytes,
                "{path}"
            );
        }
        assert!(bundle.default_model().join("config.json").is_file());
        assert!(bundle.workbook("tour.md").is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(base.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the bundle folder is private: {mode:o}");
        }
        // Nothing is left from staging.
        let left: Vec<_> = std::fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn repairs_the_model_but_keeps_an_edited_workbook() {
        let base = tempfile::tempdir().unwrap();
        let bundle = Bundle::unpack_into(base.path()).unwrap();
        let weights = bundle.default_model().join("model.safetensors");
        std::fs::write(&weights, b"tampered").unwrap();
        let config = bundle.default_model().join("config.json");
        std::fs::remove_file(&config).unwrap();
        let tour = bundle.workbook("tour.md");
        std::fs::write(&tour, "# my notes\n").unwrap();

        let again = Bundle::unpack_into(base.path()).unwrap();
        assert_eq!(again, bundle);
        let shipped = |p: &str| files().iter().find(|(f, _)| *f == p).unwrap().1;
        assert_eq!(
            std::fs::read(&weights).unwrap(),
            shipped("assets/default-model/model.safetensors")
        );
        assert_eq!(
            std::fs::read(&config).unwrap(),
            shipped("assets/default-model/config.json")
        );
        assert_eq!(std::fs::read_to_string(&tour).unwrap(), "# my notes\n");
    }

    #[test]
    fn plugin_folder_only_when_plugins_are_shipped() {
        let base = tempfile::tempdir().unwrap();
        let bundle = Bundle::unpack_into(base.path()).unwrap();
        match bundle.plugin_dir() {
            Some(dir) => {
                for name in shipped_plugins() {
                    assert!(dir.join(name).is_file(), "{name}");
                }
            }
            None => assert_eq!(shipped_plugins().count(), 0),
        }
    }
}
