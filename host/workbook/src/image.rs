//! RGBA8 images, their PNG encoding and the content hash that names them on disk.

use std::io::Cursor;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The most pixels a decoded PNG may have: 64 Mi pixels, 256 MiB as RGBA8. Far above any picture
/// tritlab draws (trit maps are a few hundred pixels wide), far below what exhausts memory.
///
/// A PNG's header states its size, and a hundred bytes can claim 100000×100000 pixels; the claim
/// is checked against this before any pixel buffer is allocated.
pub const MAX_IMAGE_PIXELS: u64 = 64 << 20;

/// Decoding refuses to allocate more than this for the decoder's buffers (the `png` crate's own
/// limit) or for the decoded frame, so a small hostile PNG cannot exhaust memory.
const MAX_DECODED_BYTES: usize = 256 << 20;

/// An RGBA8 picture: `width × height` pixels, row-major, four bytes per pixel, straight alpha.
///
/// The fields are private so that the pixel buffer always matches the size: an `Image` that exists
/// can always be encoded. Serde goes through the same check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ImageRepr", into = "ImageRepr")]
pub struct Image {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    title: Option<String>,
}

/// Why pixels do not make an [`Image`], or a PNG does not decode to one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("an image must be at least 1×1 pixels, not {width}×{height}")]
    Empty { width: u32, height: u32 },
    #[error("a {width}×{height} RGBA image needs {expected} bytes, got {found}")]
    SizeMismatch {
        width: u32,
        height: u32,
        expected: u64,
        found: usize,
    },
    #[error("a {width}×{height} image is too large to hold in memory")]
    TooLarge { width: u32, height: u32 },
    #[error(
        "the PNG claims {width}×{height} pixels, more than the {max_pixels} an image may have"
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("PNG: {0}")]
    Png(String),
    #[error("pixels are not valid base64: {0}")]
    Base64(String),
}

impl Image {
    /// Wraps `rgba` (row-major, 4 bytes per pixel) as a `width × height` image.
    pub fn new(width: u32, height: u32, rgba: Vec<u8>) -> Result<Self, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Empty { width, height });
        }
        let expected = u64::from(width) * u64::from(height) * 4;
        if usize::try_from(expected).is_err() {
            return Err(ImageError::TooLarge { width, height });
        }
        if rgba.len() as u64 != expected {
            return Err(ImageError::SizeMismatch {
                width,
                height,
                expected,
                found: rgba.len(),
            });
        }
        Ok(Image {
            width,
            height,
            rgba,
            title: None,
        })
    }

    /// The same image with a caption. An empty title means none: a title is shown as a caption
    /// and as the alt text of the workbook's image line, where empty and absent look the same.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.set_title(Some(title.into()));
        self
    }

    /// Sets or clears the caption; `Some("")` clears it, as in [`Image::with_title`].
    pub fn set_title(&mut self, title: Option<String>) {
        self.title = title.filter(|t| !t.is_empty());
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major RGBA8 pixels, `width × height × 4` bytes.
    pub fn rgba(&self) -> &[u8] {
        &self.rgba
    }

    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Encodes the pixels as an 8-bit RGBA PNG. The title is not stored in the PNG.
    pub fn to_png(&self) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let png_error = |e: png::EncodingError| ImageError::Png(e.to_string());
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&self.rgba).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
        Ok(bytes)
    }

    /// Decodes any PNG (grey, palette, RGB, 16-bit…) into RGBA8, with no title.
    pub fn from_png(bytes: &[u8]) -> Result<Self, ImageError> {
        let png_error = |e: png::DecodingError| ImageError::Png(e.to_string());
        let mut decoder = png::Decoder::new_with_limits(
            Cursor::new(bytes),
            png::Limits {
                bytes: MAX_DECODED_BYTES,
            },
        );
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        // `read_info` reads the header chunks only; nothing sized by the claimed dimensions is
        // allocated until the check below has passed.
        let mut reader = decoder.read_info().map_err(png_error)?;
        let (width, height) = {
            let info = reader.info();
            (info.width, info.height)
        };
        if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
            return Err(ImageError::TooManyPixels {
                width,
                height,
                max_pixels: MAX_IMAGE_PIXELS,
            });
        }
        let size = reader
            .output_buffer_size()
            .filter(|&size| size <= MAX_DECODED_BYTES)
            .ok_or(ImageError::TooLarge { width, height })?;
        let mut buffer = vec![0; size];
        let frame = reader.next_frame(&mut buffer).map_err(png_error)?;
        buffer.truncate(frame.buffer_size());
        let rgba = match frame.color_type {
            png::ColorType::Rgba => buffer,
            png::ColorType::Rgb => buffer
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
            png::ColorType::GrayscaleAlpha => buffer
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
            png::ColorType::Grayscale => buffer.iter().flat_map(|&v| [v, v, v, 255]).collect(),
            png::ColorType::Indexed => {
                return Err(ImageError::Png("palette was not expanded".into()));
            }
        };
        Image::new(frame.width, frame.height, rgba)
    }

    /// A 128-bit content hash of the size and pixels, as 32 lowercase hex digits.
    ///
    /// It names the image's PNG file in a workbook's asset folder. Hashing pixels rather than PNG
    /// bytes means a different PNG encoder (or compression level) never renames an unchanged
    /// image, and any PNG tool may rewrite the file. The title is not hashed: it lives in the
    /// workbook text.
    pub fn content_hash(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"tritlab-image-v1\0");
        hasher.update(&self.width.to_le_bytes());
        hasher.update(&self.height.to_le_bytes());
        hasher.update(&self.rgba);
        hex(&hasher.finalize().as_bytes()[..16])
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The serde form: pixels as one base64 string, which JSON carries far more compactly than an
/// array of numbers.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageRepr {
    width: u32,
    height: u32,
    rgba_base64: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

impl From<Image> for ImageRepr {
    fn from(image: Image) -> Self {
        ImageRepr {
            width: image.width,
            height: image.height,
            rgba_base64: base64::engine::general_purpose::STANDARD.encode(&image.rgba),
            title: image.title,
        }
    }
}

impl TryFrom<ImageRepr> for Image {
    type Error = ImageError;

    fn try_from(repr: ImageRepr) -> Result<Self, ImageError> {
        let rgba = base64::engine::general_purpose::STANDARD
            .decode(repr.rgba_base64.as_bytes())
            .map_err(|e| ImageError::Base64(e.to_string()))?;
        let mut image = Image::new(repr.width, repr.height, rgba)?;
        image.set_title(repr.title);
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker() -> Image {
        let rgba = (0..4u8)
            .flat_map(|i| [i * 60, 255 - i * 60, i, 200 + i])
            .collect();
        Image::new(2, 2, rgba).unwrap()
    }

    #[test]
    fn new_checks_the_buffer_size() {
        assert_eq!(
            Image::new(0, 3, vec![]),
            Err(ImageError::Empty {
                width: 0,
                height: 3
            })
        );
        assert!(matches!(
            Image::new(2, 2, vec![0; 15]),
            Err(ImageError::SizeMismatch {
                expected: 16,
                found: 15,
                ..
            })
        ));
    }

    #[test]
    fn png_round_trips_pixels() {
        let image = checker().with_title("four pixels");
        let back = Image::from_png(&image.to_png().unwrap()).unwrap();
        assert_eq!(back.rgba(), image.rgba());
        assert_eq!((back.width(), back.height()), (2, 2));
        assert_eq!(back.title(), None);
        assert_eq!(back.content_hash(), image.content_hash());
    }

    #[test]
    fn grey_png_expands_to_rgba() {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, 2, 1);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[10, 200]).unwrap();
        writer.finish().unwrap();
        let image = Image::from_png(&bytes).unwrap();
        assert_eq!(image.rgba(), [10, 10, 10, 255, 200, 200, 200, 255]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            Image::from_png(b"not a png"),
            Err(ImageError::Png(_))
        ));
        let mut truncated = checker().to_png().unwrap();
        truncated.truncate(truncated.len() / 2);
        assert!(Image::from_png(&truncated).is_err());
    }

    /// A valid PNG signature and header chunk claiming `width × height` RGBA8 pixels, followed by
    /// one empty data chunk and the end chunk: about 70 bytes.
    pub(crate) fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut header = Vec::new();
        header.extend_from_slice(&width.to_be_bytes());
        header.extend_from_slice(&height.to_be_bytes());
        header.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, no interlace
        chunk(&mut png, b"IHDR", &header);
        // An empty zlib stream: the decoder gets as far as the pixel data.
        chunk(
            &mut png,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut png, b"IEND", &[]);
        png
    }

    /// The process's peak resident memory in bytes (Linux).
    fn peak_resident_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    #[test]
    fn a_tiny_png_claiming_a_huge_size_is_refused_before_allocating() {
        let png = png_claiming(100_000, 100_000);
        assert!(png.len() < 100, "{} bytes", png.len());
        let before = peak_resident_bytes();
        let started = std::time::Instant::now();
        assert_eq!(
            Image::from_png(&png),
            Err(ImageError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                max_pixels: MAX_IMAGE_PIXELS
            })
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        if let (Some(before), Some(after)) = (before, peak_resident_bytes()) {
            // Other tests of this binary run in parallel and allocate a little, never 64 MiB.
            assert!(
                after.saturating_sub(before) < 64 << 20,
                "peak resident memory grew by {} bytes",
                after - before
            );
        }
        let message = Image::from_png(&png).unwrap_err().to_string();
        assert!(message.contains("100000×100000"), "{message}");
    }

    #[test]
    fn a_claimed_size_within_the_limit_still_needs_its_pixels() {
        // 4096×4096 is allowed; the empty data stream then fails to decode, as an error.
        assert!(matches!(
            Image::from_png(&png_claiming(4096, 4096)),
            Err(ImageError::Png(_))
        ));
    }

    #[test]
    fn empty_title_means_none() {
        assert_eq!(checker().with_title("").title(), None);
    }

    #[test]
    fn content_hash_depends_on_shape_and_pixels() {
        let a = checker();
        let flat = Image::new(4, 1, a.rgba().to_vec()).unwrap();
        assert_ne!(a.content_hash(), flat.content_hash());
        assert_eq!(a.content_hash().len(), 32);
        assert_eq!(a.content_hash(), checker().with_title("x").content_hash());
    }

    #[test]
    fn serde_validates_the_pixels() {
        let image = checker().with_title("t");
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<Image>(&json).unwrap(), image);
        let bad = r#"{"width":2,"height":2,"rgba_base64":"AAAA"}"#;
        assert!(serde_json::from_str::<Image>(bad).is_err());
    }
}
