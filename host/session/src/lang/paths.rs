//! File-system completion for PATH and DIR arguments.

use std::path::{Path, PathBuf};

/// Directory listings can be huge (a dataset directory); a menu longer than this helps nobody.
const MAX_ENTRIES: usize = 1000;

/// One completed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathCandidate {
    /// The whole path as it should be typed: the directory part as the user wrote it (a `~`
    /// kept), then the entry's name, then `/` for a directory.
    pub text: String,
    /// The entry's name, with `/` for a directory.
    pub name: String,
    pub is_dir: bool,
}

/// `path` with a leading `~` or `~/` replaced by `home`; other paths unchanged.
pub fn expand_tilde(path: &Path, home: Option<&Path>) -> PathBuf {
    let Some(home) = home else {
        return path.to_path_buf();
    };
    match path.to_str() {
        Some("~") => home.to_path_buf(),
        Some(text) => match text.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => path.to_path_buf(),
        },
        None => path.to_path_buf(),
    }
}

/// The entries that complete `typed`, relative to `cwd` unless absolute or starting with `~`.
/// Hidden entries are offered only once the name typed so far starts with a dot. Unreadable
/// directories give no candidates rather than an error: completion is a convenience.
pub(crate) fn complete_path(
    typed: &str,
    dirs_only: bool,
    cwd: Option<&Path>,
    home: Option<&Path>,
) -> Vec<PathCandidate> {
    if typed == "~" {
        return match home {
            Some(_) => vec![PathCandidate {
                text: "~/".into(),
                name: "~/".into(),
                is_dir: true,
            }],
            None => Vec::new(),
        };
    }
    let (dir_part, prefix) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed),
    };
    let dir = if dir_part.is_empty() {
        PathBuf::from(".")
    } else {
        expand_tilde(Path::new(dir_part), home)
    };
    let dir = match cwd {
        Some(cwd) if dir.is_relative() => cwd.join(dir),
        _ => dir,
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };

    let mut out: Vec<PathCandidate> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            // `Path::is_dir` follows symlinks, so a link to a directory completes as one.
            let is_dir = entry.path().is_dir();
            if dirs_only && !is_dir {
                return None;
            }
            let name = if is_dir { format!("{name}/") } else { name };
            Some(PathCandidate {
                text: format!("{dir_part}{name}"),
                name,
                is_dir,
            })
        })
        .take(MAX_ENTRIES)
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde() {
        let home = Path::new("/home/u");
        assert_eq!(
            expand_tilde(Path::new("~"), Some(home)),
            PathBuf::from("/home/u")
        );
        assert_eq!(
            expand_tilde(Path::new("~/x"), Some(home)),
            PathBuf::from("/home/u/x")
        );
        assert_eq!(
            expand_tilde(Path::new("~x"), Some(home)),
            PathBuf::from("~x")
        );
        assert_eq!(expand_tilde(Path::new("~/x"), None), PathBuf::from("~/x"));
    }

    #[test]
    fn missing_directories_give_nothing() {
        assert!(complete_path("/definitely/not/here/x", false, None, None).is_empty());
    }
}
