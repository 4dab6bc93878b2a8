//! The kernelspec: the folder `kernels/tritlab/` in a Jupyter data directory, holding
//! `kernel.json` (how to start the kernel) and the logos front ends show beside it.
//!
//! Where it goes follows jupyter_core's rules, so `jupyter kernelspec list` finds it: `--user`
//! is the user's data directory (`$JUPYTER_DATA_DIR`, else `$XDG_DATA_HOME/jupyter` or
//! `~/.local/share/jupyter` on Linux, `~/Library/Jupyter` on macOS, `%APPDATA%\jupyter` on
//! Windows); `--sys-prefix` is `share/jupyter` under the active Python environment;
//! `--prefix DIR` is `DIR/share/jupyter`.

use std::path::{Path, PathBuf};

use serde_json::json;
use tritlab_workbook::Image;

use crate::KernelError;

/// The kernelspec's name: what notebooks name in `metadata.kernelspec.name`.
pub const KERNEL_NAME: &str = "tritlab";
/// What front ends show in their kernel menus.
pub const DISPLAY_NAME: &str = "tritlab";

/// Which Jupyter data directory a kernelspec goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The user's own data directory.
    User,
    /// The active Python environment (virtualenv or conda), as `jupyter --sys-prefix` means.
    SysPrefix,
    /// `DIR/share/jupyter`.
    Prefix(PathBuf),
}

impl Location {
    /// The folder the kernelspec lives in: `<data dir>/kernels/tritlab`.
    pub fn kernel_dir(&self) -> Result<PathBuf, KernelError> {
        Ok(self.data_dir()?.join("kernels").join(KERNEL_NAME))
    }

    fn data_dir(&self) -> Result<PathBuf, KernelError> {
        match self {
            Location::User => user_data_dir(),
            Location::SysPrefix => Ok(sys_prefix()?.join("share").join("jupyter")),
            Location::Prefix(dir) => Ok(dir.join("share").join("jupyter")),
        }
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn user_data_dir() -> Result<PathBuf, KernelError> {
    if let Some(dir) = env_path("JUPYTER_DATA_DIR") {
        return Ok(dir);
    }
    let missing = || KernelError::NoDataDir("the user's kernels (no home directory)".into());
    if cfg!(windows) {
        return env_path("APPDATA")
            .map(|d| d.join("jupyter"))
            .ok_or_else(missing);
    }
    let home = env_path("HOME").ok_or_else(missing)?;
    if cfg!(target_os = "macos") {
        return Ok(home.join("Library").join("Jupyter"));
    }
    Ok(env_path("XDG_DATA_HOME")
        .unwrap_or_else(|| home.join(".local").join("share"))
        .join("jupyter"))
}

/// The active Python environment: a virtualenv, a conda environment, or the prefix of the
/// `python3` on `PATH`.
fn sys_prefix() -> Result<PathBuf, KernelError> {
    if let Some(dir) = env_path("VIRTUAL_ENV").or_else(|| env_path("CONDA_PREFIX")) {
        return Ok(dir);
    }
    let missing = || {
        KernelError::NoDataDir(
            "the Python environment (no VIRTUAL_ENV or CONDA_PREFIX, and no python3 to ask)".into(),
        )
    };
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .map_err(|_| missing())?;
    let prefix = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || prefix.is_empty() {
        return Err(missing());
    }
    Ok(PathBuf::from(prefix))
}

/// `kernel.json` for a kernel started as `EXE kernel --connection-file FILE`.
///
/// Interrupts come as `interrupt_request` messages on the control channel (the kernel cancels
/// the running command, as Ctrl-C does in the REPL), so front ends never signal the process.
pub fn kernel_json(exe: &Path) -> serde_json::Value {
    json!({
        "argv": [exe.to_string_lossy(), "kernel", "--connection-file", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "tritlab",
        "interrupt_mode": "message",
        "metadata": {"debugger": false},
    })
}

/// Writes the kernelspec for `exe` (an absolute path) into `location`; returns its folder.
/// An existing tritlab kernelspec there is replaced.
pub fn install(location: &Location, exe: &Path) -> Result<PathBuf, KernelError> {
    let dir = location.kernel_dir()?;
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| KernelError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let mut text = serde_json::to_string_pretty(&kernel_json(exe)).unwrap_or_default();
    text.push('\n');
    let json_path = dir.join("kernel.json");
    std::fs::write(&json_path, text).map_err(io("write", &json_path))?;
    for size in [32u32, 64] {
        let path = dir.join(format!("logo-{size}x{size}.png"));
        let png = logo(size).to_png()?;
        std::fs::write(&path, png).map_err(io("write", &path))?;
    }
    Ok(dir)
}

/// Removes the kernelspec from `location`; returns its folder, or `None` if none was there.
pub fn uninstall(location: &Location) -> Result<Option<PathBuf>, KernelError> {
    let dir = location.kernel_dir()?;
    if !dir.join("kernel.json").is_file() {
        return Ok(None);
    }
    std::fs::remove_dir_all(&dir).map_err(|source| KernelError::Io {
        action: "remove",
        path: dir.clone(),
        source,
    })?;
    Ok(Some(dir))
}

/// The logo: a 3×3 block of trits (−1, 0, +1) on a dark rounded square, the picture of a
/// ternary weight matrix that the trit visualiser draws at scale.
pub fn logo(size: u32) -> Image {
    const BACKGROUND: [u8; 4] = [0x1f, 0x24, 0x30, 0xff];
    const PLUS: [u8; 4] = [0xe4, 0x57, 0x2e, 0xff];
    const ZERO: [u8; 4] = [0x9a, 0xa0, 0xa6, 0xff];
    const MINUS: [u8; 4] = [0x2e, 0x86, 0xab, 0xff];
    const TRITS: [[i8; 3]; 3] = [[1, 0, -1], [0, 1, 0], [-1, 0, 1]];
    let s = size as f32;
    let radius = s * 0.18;
    let margin = s * 0.14;
    let gap = s * 0.05;
    let cell = (s - 2.0 * margin - 2.0 * gap) / 3.0;
    let mut rgba = Vec::with_capacity((size * size * 4) as usize);
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            // Outside the rounded square: transparent.
            let dx = (radius - px).max(px - (s - radius)).max(0.0);
            let dy = (radius - py).max(py - (s - radius)).max(0.0);
            if dx * dx + dy * dy > radius * radius {
                rgba.extend_from_slice(&[0, 0, 0, 0]);
                continue;
            }
            let mut colour = BACKGROUND;
            let (gx, gy) = (px - margin, py - margin);
            let (col, row) = ((gx / (cell + gap)) as usize, (gy / (cell + gap)) as usize);
            let inside = gx >= 0.0
                && gy >= 0.0
                && col < 3
                && row < 3
                && gx - col as f32 * (cell + gap) < cell
                && gy - row as f32 * (cell + gap) < cell;
            if inside {
                colour = match TRITS[row][col] {
                    1 => PLUS,
                    0 => ZERO,
                    _ => MINUS,
                };
            }
            rgba.extend_from_slice(&colour);
        }
    }
    Image::new(size, size, rgba)
        .expect("size × size × 4 bytes")
        .with_title("tritlab")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_kernel_json_and_logos_and_uninstall_removes_them() {
        let prefix = tempfile::tempdir().unwrap();
        let location = Location::Prefix(prefix.path().to_path_buf());
        let exe = Path::new("/opt/tritlab/bin/tritlab");
        let dir = install(&location, exe).unwrap();
        assert_eq!(dir, prefix.path().join("share/jupyter/kernels/tritlab"));
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).unwrap())
                .unwrap();
        assert_eq!(
            spec["argv"],
            json!([
                "/opt/tritlab/bin/tritlab",
                "kernel",
                "--connection-file",
                "{connection_file}"
            ])
        );
        assert_eq!(spec["language"], "tritlab");
        assert_eq!(spec["interrupt_mode"], "message");
        for size in [32, 64] {
            let png = std::fs::read(dir.join(format!("logo-{size}x{size}.png"))).unwrap();
            let image = Image::from_png(&png).unwrap();
            assert_eq!((image.width(), image.height()), (size, size));
        }
        assert_eq!(uninstall(&location).unwrap(), Some(dir.clone()));
        assert!(!dir.exists());
        assert_eq!(uninstall(&location).unwrap(), None);
    }
}
