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
    /// Thumbnails drawn so far for the cached model, by tensor; `None` when they are complete.
    drawing: Option<Vec<Option<Image>>>,
}

impl SnapshotCache {
    /// A snapshot of `s`, reusing every summary whose key has not changed.
    pub fn snapshot(&mut self, s: &Session) -> Snapshot {
        let model_key = s.model().map(|m| (m.path.clone(), m.load_id));
        if model_key != self.model.as_ref().map(|(k, _)| k.clone()) {
            self.model = model_key
                .zip(s.model())
                .map(|(key, m)| (key, Arc::new(model_summary(m))));
            self.drawing = self
                .model
                .as_ref()
                .map(|(_, m)| Vec::with_capacity(m.tensors.len()));
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

    /// Draws the next missing thumbnail of the cached model. Returns whether there is more to
    /// do; on the call that draws the last one the model summary is replaced by one with every
    /// thumbnail, and the next [`SnapshotCache::snapshot`] carries it.
    pub fn draw_one_thumbnail(&mut self, s: &Session) -> bool {
        let (Some(drawn), Some((key, summary)), Some(loaded)) =
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
        let linears: Vec<_> = loaded
            .model
            .layers()
            .iter()
            .flat_map(|l| l.projections())
            .collect();
        if let Some(lin) = linears.get(drawn.len()) {
            drawn.push(thumbnail(lin.matrix(), THUMBNAIL_SIDE));
        }
        if drawn.len() < summary.tensors.len().min(linears.len()) {
            return true;
        }
        let mut complete = (**summary).clone();
        for (row, image) in complete.tensors.iter_mut().zip(drawn.drain(..)) {
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
    let (rows, cols) = (matrix.rows(), matrix.cols());
    if rows == 0 || cols == 0 {
        return None;
    }
    let step_r = rows.div_ceil(max_side.max(1));
    let step_c = cols.div_ceil(max_side.max(1));
    let (h, w) = (rows.div_ceil(step_r), cols.div_ceil(step_c));
    let mut row = vec![0i8; cols];
    let mut rgba = Vec::with_capacity(w * h * 4);
    let mut counts = vec![(0u32, 0u32, 0u32); w];
    for y in 0..h {
        counts.fill((0, 0, 0));
        let band = y * step_r..((y + 1) * step_r).min(rows);
        let take = band.len().min(SAMPLED_ROWS);
        for i in 0..take {
            let r = band.start + i * band.len() / take;
            matrix.row_trits(r, &mut row).ok()?;
            for (c, &t) in row.iter().enumerate() {
                let px = &mut counts[c / step_c];
                match t {
                    -1 => px.0 += 1,
                    1 => px.1 += 1,
                    _ => {}
                }
                px.2 += 1;
            }
        }
        for &(neg, pos, n) in &counts {
            rgba.extend_from_slice(&convert::trit_colour(neg, pos, n));
        }
    }
    Image::new(w as u32, h as u32, rgba).ok()
}

/// Rows read per thumbnail pixel row (see [`thumbnail`]).
pub const SAMPLED_ROWS: usize = 8;
