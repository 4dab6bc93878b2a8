//! A plain-data picture of a session's engine state, for inspectors and timelines: the faces
//! render it without touching the engine.

use crate::convert;
use crate::session::Session;
use std::path::PathBuf;
use tritlab_workbook::Image;

/// Thumbnails are at most this many pixels on a side.
pub const THUMBNAIL_SIDE: usize = 96;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub model: Option<ModelSummary>,
    pub plugins: Vec<PluginRow>,
    /// Why plugins are unavailable, if they are.
    pub plugin_problem: Option<String>,
    pub run: Option<RunSummary>,
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
    pub fn of(s: &Session) -> Snapshot {
        let model = s.model().map(|m| {
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
                        thumbnail: convert::trit_image(
                            &lin.matrix().to_trits(),
                            lin.out_features(),
                            lin.in_features(),
                            THUMBNAIL_SIDE,
                        ),
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
        });
        let plugins = s
            .plugins()
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
            .unwrap_or_default();
        let run = s.run().map(|r| {
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
            RunSummary {
                dir: r.dir.clone(),
                first: tl.first_step(),
                last: tl.last_step(),
                position: tl.position(),
                steps,
                current,
                tensors,
            }
        });
        Snapshot {
            model,
            plugins,
            plugin_problem: s.plugin_problem.clone(),
            run,
            notes: s.startup_notes.clone(),
        }
    }
}
