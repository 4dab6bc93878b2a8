//! GPU textures for the images the workbench shows (image outputs, weight thumbnails), uploaded
//! once and dropped when no frame has used them for a while.
//!
//! Images are named by an [`Id`] that changes whenever the pixels behind it can have changed
//! (a cell's outputs revision, a snapshot's serial), so a cached texture is never stale and
//! nothing has to hash pixels every frame.

use std::collections::HashMap;

use eframe::egui::{ColorImage, Context, Id, TextureHandle, TextureOptions};
use tritlab_workbook::Image;

/// Frames an unused texture survives.
const KEEP_UNUSED_FRAMES: u64 = 120;

#[derive(Default)]
pub struct Textures {
    slots: HashMap<Id, Slot>,
    frame: u64,
}

struct Slot {
    handle: TextureHandle,
    last_used: u64,
}

impl Textures {
    /// The texture for `image`, uploading it the first time `id` is asked for.
    pub fn get(&mut self, ctx: &Context, id: Id, image: &Image) -> TextureHandle {
        let frame = self.frame;
        let slot = self.slots.entry(id).or_insert_with(|| {
            let size = [image.width() as usize, image.height() as usize];
            let pixels = ColorImage::from_rgba_unmultiplied(size, image.rgba());
            Slot {
                handle: ctx.load_texture(
                    format!("tritlab-image-{id:?}"),
                    pixels,
                    // Trit maps are cells of flat colour: keep their edges sharp when zoomed.
                    TextureOptions::NEAREST,
                ),
                last_used: frame,
            }
        });
        slot.last_used = frame;
        slot.handle.clone()
    }

    /// Ends a frame: textures unused for a while are freed.
    pub fn end_frame(&mut self) {
        let frame = self.frame;
        self.slots
            .retain(|_, slot| frame.saturating_sub(slot.last_used) <= KEEP_UNUSED_FRAMES);
        self.frame += 1;
    }
}
