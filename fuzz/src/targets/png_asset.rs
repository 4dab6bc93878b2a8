//! PNG image assets (`host/workbook/src/image.rs`).
//!
//! Input: PNG bytes. scripts/fuzz.sh runs this target under an RSS limit (`-rss_limit_mb=768`)
//! and a single-allocation limit (`-malloc_limit_mb=300`, above the reader's 256 MiB cap on
//! decoded pixels), so a PNG that gets past the reader's size caps fails the run.
//!
//! Properties: decoding never panics; a decoded image has `width × height × 4` bytes; encoding
//! it and decoding again gives the same pixels and the same content hash.

use tritlab_workbook::Image;

pub fn run(data: &[u8]) {
    let Ok(image) = Image::from_png(data) else {
        return;
    };
    assert_eq!(
        image.rgba().len() as u64,
        u64::from(image.width()) * u64::from(image.height()) * 4
    );
    let png = image.to_png().expect("a decoded image encodes");
    let again = Image::from_png(&png).expect("an encoded image decodes");
    assert_eq!(
        (again.width(), again.height()),
        (image.width(), image.height())
    );
    assert!(
        again.rgba() == image.rgba(),
        "pixels changed in a PNG round trip"
    );
    assert_eq!(again.content_hash(), image.content_hash());
}
