//! A plain-data picture of a session's engine state, for inspectors and timelines: the faces
//! render it without touching the engine.
//!
//! A snapshot is taken after every command, so it must cost nothing when the command did not
//! change the engine: on a 2B-parameter model, unpacking every matrix for its thumbnail would
//! scan two billion trits after `help`. [`SnapshotCache`] keeps the model and run summaries
//! (shared through `Arc`, so a snapshot is a few pointer copies) and rebuilds one only when its
//! key changes: a model loaded, the timeline moved. A new model's summary comes first without
//! thumbnails; the worker draws them one tensor at a time while it has nothing else to do
//! ([`SnapshotCache::draw_one_thumbnail`]) and sends a new snapshot when they are all there.

use crate::convert;
use crate::session::{LoadedModel, Session};
use std::path::PathBuf;
use std::sync::Arc;
use tritlab_kernels::TernaryMatrix;
use tritlab_workbook::Image;

/// Thumbnails are at most this many pixels on a side.
pub const THUMBNAIL_SIDE: usize = 96;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub model: Option<Arc<ModelSummary>>,
    pub plugins: Vec<PluginRow>,
    /// Why plugins are unavailable, if they are.
    pub plugin_problem: Option<String>,
    pub run: Option<Arc<RunSummary>>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub path: PathBuf,
    pub name: String,
    pub layers: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub tensors: Vec<TensorRow>,
}

impl ModelSummary {
    /// The trits of every ternary tensor together (their GF(3) residue is `.gf3_sum()`).
    pub fn total_trits(&self) -> tritlab_kernels::TritCounts {
        let mut total = tritlab_kernels::TritCounts::default();
        for t in &self.tensors {
            total.merge(&t.counts());
        }
        total
    }
}

#[derive(Debug, Clone)]
pub struct TensorRow {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub neg: u64,
    pub zero: u64,
    pub pos: u64,
    pub gf3: u8,
    pub scale: f32,
    pub thumbnail: Option<Image>,
}

impl TensorRow {
    pub fn counts(&self) -> tritlab_kernels::TritCounts {
        tritlab_kernels::TritCounts {
            neg: self.neg,
            zero: self.zero,
            pos: self.pos,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PluginRow {
    pub name: String,
    pub kind: String,
    pub version: String,
    pub description: String,
    pub enabled: bool,
    pub failures: u64,
    pub last_error: Option<String>,
    /// (name, description, default value)
    pub options: Vec<(String, String, String)>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub first: u64,
    pub last: u64,
    pub position: u64,
    pub steps: Vec<StepSummary>,
    /// The record that produced the current step, per layer.
    pub current: Vec<LayerStep>,
    /// The ternary tensors at the current step (thumbnails update as the timeline moves).
    pub tensors: Vec<TensorRow>,
}

#[derive(Debug, Clone)]
pub struct StepSummary {
    pub step: u64,
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub flips: u64,
    pub gf3: u8,
    pub colour: Option<[u8; 3]>,
}

#[derive(Debug, Clone)]
pub struct LayerStep {
    pub name: String,
    /// `transitions[old + 1][new + 1]`.
    pub transitions: [[u64; 3]; 3],
    pub gf3_before: u8,
    pub gf3_after: u8,
    pub scale_before: f32,
    pub scale_after: f32,
}

impl Snapshot {
    /// A complete snapshot of `s`, thumbnails included (no cache: everything is computed).
    pub fn of(s: &Session) -> Snapshot {
        let mut cache = SnapshotCache::default();
        let _ = cache.snapshot(s);
        while cache.draw_one_thumbnail(s) {}
        cache.snapshot(s)
    }
}

/// What identifies a loaded model.
type ModelKey = (PathBuf, u64);
/// What identifies a run's state on the timeline: directory, position, first and last step.
type RunKey = (PathBuf, u64, u64, u64, usize);

/// Model and run summaries kept between snapshots; see the module documentation.
#[derive(Default)]
pub struct SnapshotCache {
    model: Option<(ModelKey, Arc<ModelSummary>)>,
    run: Option<(RunKey, Arc<RunSummary>)>,
    /// Thumbnails drawn so far for the cached model; `None` when they are complete.
    drawing: Option<Drawing>,
}

/// The cached model's thumbnails in progress: the finished ones by tensor, and the next one part
/// drawn.
#[derive(Default)]
struct Drawing {
    done: Vec<Option<Image>>,
    current: Option<ThumbnailDraft>,
}

/// Pixel rows drawn per [`SnapshotCache::draw_one_thumbnail`] call: a few hundred thousand trits
/// at most, well under a millisecond, which is all a command arriving meanwhile waits.
const BANDS_PER_STEP: usize = 4;

impl SnapshotCache {
    /// A snapshot of `s`, reusing every summary whose key has not changed.
    pub fn snapshot(&mut self, s: &Session) -> Snapshot {
        let model_key = s.model().map(|m| (m.path.clone(), m.load_id));
        if model_key != self.model.as_ref().map(|(k, _)| k.clone()) {
            self.model = model_key
                .zip(s.model())
                .map(|(key, m)| (key, Arc::new(model_summary(m))));
            self.drawing = self.model.as_ref().map(|_| Drawing::default());
        }
        let run_key = s.run().map(|r| {
            let tl = &r.timeline;
            (
                r.dir.clone(),
                tl.position(),
                tl.first_step(),
                tl.last_step(),
                tl.records().len(),
            )
        });
        if run_key != self.run.as_ref().map(|(k, _)| k.clone()) {
            self.run = run_key.and_then(|key| run_summary(s).map(|r| (key, Arc::new(r))));
        }
        Snapshot {
            model: self.model.as_ref().map(|(_, m)| m.clone()),
            plugins: plugin_rows(s),
            plugin_problem: s.plugin_problem.clone(),
            run: self.run.as_ref().map(|(_, r)| r.clone()),
            notes: s.startup_notes.clone(),
        }
    }

    /// Whether the cached model still lacks thumbnails.
    pub fn is_drawing(&self) -> bool {
        self.drawing.is_some()
    }

    /// Draws a little more of the cached model's thumbnails (a few pixel rows of one tensor).
    /// Returns whether there is more to do; on the call that finishes the last one the model
    /// summary is replaced by one with every thumbnail, and the next
    /// [`SnapshotCache::snapshot`] carries it.
    pub fn draw_one_thumbnail(&mut self, s: &Session) -> bool {
        let (Some(drawing), Some((key, summary)), Some(loaded)) =
            (self.drawing.as_mut(), self.model.as_mut(), s.model())
        else {
            self.drawing = None;
            return false;
        };
        if key.1 != loaded.load_id {
            // The model changed under the cache: the next snapshot starts over.
            self.drawing = None;
            return false;
        }
        let matrices: Vec<&TernaryMatrix> = loaded
            .model
            .layers()
            .iter()
            .flat_map(|l| l.projections())
            .map(|p| p.matrix())
            .collect();
        let wanted = summary.tensors.len().min(matrices.len());
        if let Some(&matrix) = matrices.get(drawing.done.len()) {
            let draft = drawing
                .current
                .get_or_insert_with(|| ThumbnailDraft::new(matrix, THUMBNAIL_SIDE));
            if let Some(image) = draft.advance(matrix, BANDS_PER_STEP) {
                drawing.done.push(image);
                drawing.current = None;
            }
        }
        if drawing.done.len() < wanted {
            return true;
        }
        let mut complete = (**summary).clone();
        for (row, image) in complete.tensors.iter_mut().zip(drawing.done.drain(..)) {
            row.thumbnail = image;
        }
        *summary = Arc::new(complete);
        self.drawing = None;
        false
    }
}

/// The loaded model's summary, without thumbnails: the trit counts are kept by the model, so
/// this reads no weights.
fn model_summary(m: &LoadedModel) -> ModelSummary {
    let c = m.model.config();
    let tensors = m
        .model
        .layers()
        .iter()
        .flat_map(|l| l.projections())
        .map(|lin| {
            let t = lin.trits();
            TensorRow {
                name: lin.name().trim_start_matches("model.").to_string(),
                rows: lin.out_features(),
                cols: lin.in_features(),
                neg: t.neg,
                zero: t.zero,
                pos: t.pos,
                gf3: t.gf3_sum,
                scale: lin.scale(),
                thumbnail: None,
            }
        })
        .collect();
    ModelSummary {
        name: m
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| m.path.display().to_string()),
        path: m.path.clone(),
        layers: c.num_hidden_layers,
        hidden: c.hidden_size,
        vocab: c.vocab_size,
        tensors,
    }
}

fn plugin_rows(s: &Session) -> Vec<PluginRow> {
    s.plugins()
        .map(|h| {
            h.plugins()
                .into_iter()
                .map(|p| PluginRow {
                    kind: format!("{:?}", p.info.kind).to_lowercase(),
                    version: p.info.version.clone(),
                    description: p.info.description.clone(),
                    options: p
                        .info
                        .options
                        .iter()
                        .map(|o| {
                            (
                                o.name.clone(),
                                o.description.clone(),
                                o.default_value.clone(),
                            )
                        })
                        .collect(),
                    name: p.info.name,
                    enabled: p.enabled,
                    failures: p.total_failures,
                    last_error: p.last_error,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn run_summary(s: &Session) -> Option<RunSummary> {
    let r = s.run()?;
    let tl = &r.timeline;
    let steps = tl
        .records()
        .iter()
        .enumerate()
        .map(|(i, rec)| StepSummary {
            step: rec.step,
            loss: rec.loss,
            learning_rate: rec.learning_rate,
            grad_norm: rec.grad_norm,
            flips: rec.flipped_trits(),
            gf3: rec.gf3_after(),
            colour: r.colours.get(i).copied().flatten(),
        })
        .collect();
    let current = tl
        .current_record()
        .map(|rec| {
            rec.layers
                .iter()
                .map(|l| LayerStep {
                    name: l.name.trim_start_matches("model.").to_string(),
                    transitions: l.flips.transitions().counts,
                    gf3_before: l.gf3_before(),
                    gf3_after: l.gf3_after(),
                    scale_before: l.scale_before,
                    scale_after: l.scale_after,
                })
                .collect()
        })
        .unwrap_or_default();
    let tensors = tl
        .layers()
        .iter()
        .map(|l| {
            let c = tritlab_kernels::count_trits(&l.trits).unwrap_or_default();
            TensorRow {
                name: l.name.trim_start_matches("model.").to_string(),
                rows: l.rows,
                cols: l.cols,
                neg: c.neg,
                zero: c.zero,
                pos: c.pos,
                gf3: c.gf3_sum(),
                scale: l.scale,
                thumbnail: convert::trit_image(&l.trits, l.rows, l.cols, THUMBNAIL_SIDE),
            }
        })
        .collect();
    Some(RunSummary {
        dir: r.dir.clone(),
        first: tl.first_step(),
        last: tl.last_step(),
        position: tl.position(),
        steps,
        current,
        tensors,
    })
}

/// A thumbnail of a ternary matrix at most `max_side` pixels on a side. Each pixel stands for a
/// block of the matrix; at most [`SAMPLED_ROWS`] rows of each block are read (evenly spread),
/// all of their columns, so a thumbnail of a large matrix unpacks a few hundred rows instead of
/// all of them. Small matrices are drawn exactly.
pub fn thumbnail(matrix: &TernaryMatrix, max_side: usize) -> Option<Image> {
    let mut draft = ThumbnailDraft::new(matrix, max_side);
    loop {
        if let Some(image) = draft.advance(matrix, usize::MAX) {
            return image;
        }
    }
}

/// A [`thumbnail`] drawn a few pixel rows at a time, so whoever draws it can stop in between.
struct ThumbnailDraft {
    step_r: usize,
    step_c: usize,
    width: usize,
    height: usize,
    next_band: usize,
    rgba: Vec<u8>,
    row: Vec<i8>,
    counts: Vec<(u32, u32, u32)>,
}

impl ThumbnailDraft {
    fn new(matrix: &TernaryMatrix, max_side: usize) -> ThumbnailDraft {
        let (rows, cols) = (matrix.rows(), matrix.cols());
        let step_r = rows.div_ceil(max_side.max(1)).max(1);
        let step_c = cols.div_ceil(max_side.max(1)).max(1);
        let (height, width) = (rows.div_ceil(step_r), cols.div_ceil(step_c));
        ThumbnailDraft {
            step_r,
            step_c,
            width,
            height,
            next_band: 0,
            rgba: Vec::with_capacity(width * height * 4),
            row: vec![0; cols],
            counts: vec![(0, 0, 0); width],
        }
    }

    /// Draws up to `bands` more pixel rows; the image once all are drawn (`None` inside for an
    /// empty matrix or one that cannot be read).
    fn advance(&mut self, matrix: &TernaryMatrix, bands: usize) -> Option<Option<Image>> {
        let rows = matrix.rows();
        let end = self.height.min(self.next_band.saturating_add(bands));
        while self.next_band < end {
            let y = self.next_band;
            self.counts.fill((0, 0, 0));
            let band = y * self.step_r..((y + 1) * self.step_r).min(rows);
            let take = band.len().min(SAMPLED_ROWS);
            for i in 0..take {
                let r = band.start + i * band.len() / take;
                if matrix.row_trits(r, &mut self.row).is_err() {
                    return Some(None);
                }
                for (c, &t) in self.row.iter().enumerate() {
                    let px = &mut self.counts[c / self.step_c];
                    match t {
                        -1 => px.0 += 1,
                        1 => px.1 += 1,
                        _ => {}
                    }
                    px.2 += 1;
                }
            }
            for &(neg, pos, n) in &self.counts {
                self.rgba
                    .extend_from_slice(&convert::trit_colour(neg, pos, n));
            }
            self.next_band += 1;
        }
        if self.next_band < self.height {
            return None;
        }
        let rgba = std::mem::take(&mut self.rgba);
        Some(Image::new(self.width as u32, self.height as u32, rgba).ok())
    }
}

/// Rows read per thumbnail pixel row (see [`thumbnail`]).
pub const SAMPLED_ROWS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use tritlab_kernels::WeightScale;

    fn matrix(rows: usize, cols: usize) -> (Vec<i8>, TernaryMatrix) {
        let trits: Vec<i8> = (0..rows * cols)
            .map(|i| ((i * 7 + i / 13) % 3) as i8 - 1)
            .collect();
        let m = TernaryMatrix::from_trits(&trits, rows, cols, WeightScale::PerTensor(1.0)).unwrap();
        (trits, m)
    }

    #[test]
    fn small_matrices_are_drawn_exactly() {
        // 300 rows at 96 pixels: 4 rows per pixel, all of them read.
        let (trits, m) = matrix(300, 200);
        assert_eq!(
            thumbnail(&m, THUMBNAIL_SIDE),
            convert::trit_image(&trits, 300, 200, THUMBNAIL_SIDE)
        );
    }

    #[test]
    fn drawing_band_by_band_gives_the_same_image() {
        let (_, m) = matrix(2000, 300);
        let whole = thumbnail(&m, THUMBNAIL_SIDE).unwrap();
        let mut draft = ThumbnailDraft::new(&m, THUMBNAIL_SIDE);
        let mut steps = 0;
        let image = loop {
            steps += 1;
            if let Some(image) = draft.advance(&m, 3) {
                break image.unwrap();
            }
        };
        assert_eq!(image, whole);
        assert_eq!(steps, (whole.height() as usize).div_ceil(3));
        // Large matrices are sampled: 2000 rows make 21-row pixel bands, of which 8 are read.
        assert_eq!(whole.height(), 96);
    }
}
