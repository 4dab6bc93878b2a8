//! Image outputs live beside the workbook, in an asset folder, as PNG files named by content hash.
//!
//! In the text an image output is one Markdown image line,
//! `![title](book.tritlab.assets/0123…cdef.png "output image")`, so any Markdown viewer shows the
//! picture and a diff shows one changed line instead of a wall of base64. The link title
//! `output image` marks the line as an output; the file name is [`Image::content_hash`], checked
//! when the image is read, so a swapped or damaged file is an error rather than a wrong picture.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::image::Image;

/// What ends every image output line: the link title that marks it.
const MARKER_SUFFIX: &str = " \"output image\")";
/// Length of a content hash in hex digits.
pub(crate) const HASH_LEN: usize = 32;

/// Where the parser reads image assets from. Paths are relative to the workbook's directory and
/// always `FOLDER/HASH.png` with a single folder component (checked before `read` is called).
pub trait AssetSource {
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
}

/// No assets: any image line is an error. For parsing text that has no home on disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAssets;

impl AssetSource for NoAssets {
    fn read(&self, _path: &str) -> io::Result<Vec<u8>> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "this workbook was read without an asset folder",
        ))
    }
}

/// Assets on disk, relative to a workbook's directory.
#[derive(Debug, Clone)]
pub struct DirAssets {
    base: PathBuf,
}

impl DirAssets {
    /// Assets relative to `base`, the directory that holds the workbook.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        DirAssets { base: base.into() }
    }
}

/// The largest image asset file read: 256 MiB. No tritlab image comes near it (a PNG of the
/// largest image [`crate::MAX_IMAGE_PIXELS`] allows, uncompressed, is about this size), and a
/// workbook from elsewhere must not make its reader load gigabytes. Reads stop at this bound
/// even when the file's stated length is smaller, since device files and files that grow while
/// read state nothing useful.
pub const MAX_ASSET_BYTES: u64 = 256 << 20;

/// Why [`DirAssets`] refuses an asset file. It reaches callers inside the [`io::Error`] that
/// [`AssetSource::read`] returns (`get_ref()` and `downcast_ref` recover it), and its message
/// names the file.
#[derive(Debug, thiserror::Error)]
pub enum AssetFileError {
    /// A symlink, FIFO, device, socket or directory: only plain files are read, so a link to
    /// `/dev/zero` cannot feed the reader without end and a FIFO cannot block it. (A workbook
    /// file itself may be a link, to a plain file.)
    #[error("{} is a {kind}, not a regular file; image assets must be plain files", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// More than [`MAX_ASSET_BYTES`] (or, for a workbook file, [`crate::MAX_WORKBOOK_BYTES`]).
    #[error(
        "{} has more than the {max} bytes tritlab reads from such a file{}",
        path.display(),
        stated.map(|n| format!(" ({n} bytes)")).unwrap_or_default()
    )]
    TooLarge {
        path: PathBuf,
        /// The file's length as the file system states it, when that is what was over.
        stated: Option<u64>,
        max: u64,
    },
}

impl From<AssetFileError> for io::Error {
    fn from(error: AssetFileError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// What kind of file system entry `file_type` is, in words.
fn kind_name(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_socket() {
            return "socket";
        }
    }
    if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Reads the regular file at `path`, at most `max` bytes of it.
///
/// Unless `follow_links`, the entry is checked without following links first (and opened with
/// `O_NOFOLLOW`). The file is opened non-blocking, so a FIFO cannot stall the open, and checked
/// again through the open handle, which is what is read: a swap between the check and the open
/// is caught there, and so is a link to a device when links are followed.
pub(crate) fn read_regular_file(path: &Path, max: u64, follow_links: bool) -> io::Result<Vec<u8>> {
    let not_a_file = |file_type| AssetFileError::NotAFile {
        path: path.to_path_buf(),
        kind: kind_name(file_type),
    };
    if !follow_links {
        let entry = std::fs::symlink_metadata(path)?;
        if !entry.file_type().is_file() {
            return Err(not_a_file(entry.file_type()).into());
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let no_follow = if follow_links { 0 } else { libc::O_NOFOLLOW };
        options.custom_flags(libc::O_NONBLOCK | no_follow);
    }
    let file = options.open(path)?;
    let opened = file.metadata()?;
    if !opened.file_type().is_file() {
        return Err(not_a_file(opened.file_type()).into());
    }
    let too_large = |stated| AssetFileError::TooLarge {
        path: path.to_path_buf(),
        stated,
        max,
    };
    if opened.len() > max {
        return Err(too_large(Some(opened.len())).into());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    io::Read::read_to_end(&mut io::Read::take(file, max + 1), &mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(None).into());
    }
    Ok(bytes)
}

impl AssetSource for DirAssets {
    /// Reads a plain file of at most [`MAX_ASSET_BYTES`]; links, FIFOs and devices are refused
    /// with an [`AssetFileError`].
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        read_regular_file(&self.base.join(path), MAX_ASSET_BYTES, false)
    }
}

/// Assets in memory, keyed by their relative path. For tests and for faces that hold a workbook
/// without a file.
#[derive(Debug, Clone, Default)]
pub struct MemoryAssets {
    files: HashMap<String, Vec<u8>>,
}

impl MemoryAssets {
    pub fn new() -> Self {
        MemoryAssets::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(path.into(), bytes);
    }
}

impl AssetSource for MemoryAssets {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such asset"))
    }
}

/// The image line for an image titled `title`, stored as `folder/hash.png`.
pub(crate) fn image_line(title: Option<&str>, folder: &str, hash: &str) -> String {
    format!(
        "![{}]({}/{hash}.png{MARKER_SUFFIX}",
        escape_alt(title.unwrap_or("")),
        percent_encode(folder)
    )
}

/// Whether `line` is an image output line (well formed or not): an image whose link title is
/// `output image`, starting in the first column.
pub(crate) fn is_image_line(line: &str) -> bool {
    line.starts_with("![") && line.trim_end().ends_with(MARKER_SUFFIX)
}

/// A parsed image output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageLine {
    pub title: Option<String>,
    /// `folder/hash.png`, percent-decoded: the path handed to [`AssetSource::read`].
    pub path: String,
    pub hash: String,
}

/// Parses a line for which [`is_image_line`] holds.
pub(crate) fn parse_image_line(line: &str) -> Result<ImageLine, String> {
    let inner = line
        .trim_end()
        .strip_prefix("![")
        .and_then(|rest| rest.strip_suffix(MARKER_SUFFIX))
        .ok_or("not an image output line")?;
    let (alt, destination) = split_alt(inner)?;
    let destination = destination
        .strip_prefix('(')
        .ok_or("expected `(` after the image's `]`")?;
    let (folder, file) = destination
        .split_once('/')
        .ok_or("the image path must be FOLDER/HASH.png")?;
    let folder = percent_decode(folder)?;
    if folder.is_empty() || folder == "." || folder == ".." || folder.contains(['/', '\\', '\0']) {
        return Err(format!("`{folder}` is not a single folder name"));
    }
    let hash = file
        .strip_suffix(".png")
        .filter(|hash| is_hash(hash))
        .ok_or_else(|| {
            format!(
                "the file name must be {HASH_LEN} lowercase hex digits and `.png`, not `{file}`"
            )
        })?;
    Ok(ImageLine {
        title: Some(alt).filter(|alt| !alt.is_empty()),
        path: format!("{folder}/{hash}.png"),
        hash: hash.to_owned(),
    })
}

/// Reads and checks the image an image line names.
pub(crate) fn load_image(assets: &dyn AssetSource, line: &ImageLine) -> Result<Image, String> {
    let bytes = assets.read(&line.path).map_err(|e| e.to_string())?;
    let mut image = Image::from_png(&bytes).map_err(|e| e.to_string())?;
    let actual = image.content_hash();
    if actual != line.hash {
        return Err(format!(
            "its pixels hash to {actual}, not to its name: the file was changed or replaced"
        ));
    }
    image.set_title(line.title.clone());
    Ok(image)
}

pub(crate) fn is_hash(text: &str) -> bool {
    text.len() == HASH_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Alt text with `\`, `[` and `]` backslash-escaped, and line breaks written `\n` / `\r` so the
/// image stays on one line.
fn escape_alt(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out
}

/// Splits `alt](rest` at the first unescaped `]`, unescaping the alt text: `\n` and `\r` are line
/// breaks, a backslash before ASCII punctuation yields the punctuation (as in CommonMark), any
/// other backslash is literal.
fn split_alt(inner: &str) -> Result<(String, &str), String> {
    let mut alt = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ']' => return Ok((alt, &inner[i + 1..])),
            '\\' => match chars.clone().next() {
                Some((_, 'n')) => {
                    chars.next();
                    alt.push('\n');
                }
                Some((_, 'r')) => {
                    chars.next();
                    alt.push('\r');
                }
                Some((_, p)) if p.is_ascii_punctuation() => {
                    chars.next();
                    alt.push(p);
                }
                _ => alt.push('\\'),
            },
            _ => alt.push(c),
        }
    }
    Err("the image's alt text has no closing `]`".into())
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so spaces, parentheses and
/// non-ASCII folder names survive inside a Markdown link.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad percent escape in `{text}`"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` does not decode to UTF-8"))
}

/// The asset folder of the book at `path`: its file name without a final `.md`, plus `.assets`.
/// `intro.tritlab.md` keeps its images in `intro.tritlab.assets/`.
pub(crate) fn folder_for(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .len()
        .checked_sub(3)
        .filter(|&cut| name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".md"))
        .map_or(name, |cut| &name[..cut]);
    (!stem.is_empty()).then(|| format!("{stem}.assets"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn image_lines_round_trip_awkward_titles_and_folders() {
        for title in [None, Some("plain"), Some("a]b[c\\d\n(e) \"f\" \\n")] {
            for folder in [
                "b.assets",
                "my notes (v2).tritlab.assets",
                "caf\u{e9}.assets",
            ] {
                let line = image_line(title, folder, HASH);
                assert!(is_image_line(&line), "{line}");
                let parsed = parse_image_line(&line).unwrap();
                assert_eq!(parsed.title.as_deref(), title, "{line}");
                assert_eq!(parsed.path, format!("{folder}/{HASH}.png"));
            }
        }
    }

    #[test]
    fn image_line_format_is_plain_markdown() {
        assert_eq!(
            image_line(Some("Layer [3]"), "intro.tritlab.assets", HASH),
            format!("![Layer \\[3\\]](intro.tritlab.assets/{HASH}.png \"output image\")")
        );
    }

    #[test]
    fn hand_written_escapes_follow_commonmark() {
        let line = format!("![a\\*b\\q](x.assets/{HASH}.png \"output image\")");
        assert_eq!(
            parse_image_line(&line).unwrap().title.as_deref(),
            Some("a*b\\q")
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        for path in [
            format!("{HASH}.png"),
            format!("../{HASH}.png"),
            format!("a/b/{HASH}.png"),
            format!("a%2Fb/{HASH}.png"),
            format!("x.assets/{}.png", HASH.to_uppercase()),
            "x.assets/abc.png".to_owned(),
            format!("x.assets/{HASH}.jpg"),
            format!("%zz/{HASH}.png"),
        ] {
            let line = format!("![]({path} \"output image\")");
            assert!(is_image_line(&line));
            assert!(parse_image_line(&line).is_err(), "{path} accepted");
        }
    }

    #[test]
    fn folder_for_strips_only_md() {
        assert_eq!(
            folder_for(Path::new("/w/intro.tritlab.md")).as_deref(),
            Some("intro.tritlab.assets")
        );
        assert_eq!(
            folder_for(Path::new("intro.MD")).as_deref(),
            Some("intro.assets")
        );
        assert_eq!(
            folder_for(Path::new("notes.txt")).as_deref(),
            Some("notes.txt.assets")
        );
        assert_eq!(folder_for(Path::new(".md")), None);
        assert_eq!(folder_for(Path::new("/")), None);
    }

    #[test]
    fn load_image_checks_the_hash() {
        let image = Image::new(1, 1, vec![1, 2, 3, 4]).unwrap();
        let hash = image.content_hash();
        let mut assets = MemoryAssets::new();
        assets.insert(format!("b.assets/{hash}.png"), image.to_png().unwrap());
        assets.insert(format!("b.assets/{HASH}.png"), image.to_png().unwrap());
        let line = |hash: &str| parse_image_line(&image_line(Some("t"), "b.assets", hash)).unwrap();
        assert_eq!(
            load_image(&assets, &line(&hash)).unwrap(),
            image.clone().with_title("t")
        );
        assert!(load_image(&assets, &line(HASH))
            .unwrap_err()
            .contains("changed or replaced"));
        assert!(load_image(&NoAssets, &line(&hash)).is_err());
    }
}
