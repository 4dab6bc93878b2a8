//! Conversions at the session's boundaries: engine and training events into the plugin
//! contract's types, and plugin results into typed outputs.

use tritlab_morphism::StepRecord;
use tritlab_plugin_host as ph;
use tritlab_workbook::{Image, Output, Plot, Rgb, Series, TraceToken};

/// The engine's generated token, in the plugin contract's terms.
pub fn generation_step(step: &tritlab_engine::GenerationStep) -> ph::GenerationStep {
    let t = &step.trit_stats.total;
    ph::GenerationStep {
        step: step.index as u64,
        position: step.position as u32,
        token_id: step.token_id,
        token_text: step.text.clone(),
        logits: ph::LogitsSummary {
            top: step
                .logit_stats
                .top
                .iter()
                .map(|t| ph::TokenLogit {
                    token_id: t.id,
                    logit: t.logit,
                })
                .collect(),
            max_logit: step.logit_stats.max,
            mean_logit: step.logit_stats.mean,
            entropy: step.logit_stats.entropy,
        },
        trits: t.counts(),
    }
}

/// A training step's record, in the plugin contract's terms.
pub fn training_step(r: &StepRecord) -> ph::TrainingStep {
    let mut total = ph::TritCounts::default();
    let layers = r
        .layers
        .iter()
        .map(|l| {
            let counts = l.counts_after();
            total.merge(&counts);
            ph::LayerTransition {
                layer: l.name.clone(),
                transitions: l.flips.transitions().counts,
                counts,
                gf3_sum: l.gf3_after(),
            }
        })
        .collect();
    ph::TrainingStep {
        step: r.step,
        loss: r.loss as f32,
        learning_rate: r.learning_rate as f32,
        grad_norm: r.grad_norm as f32,
        world_hash_before: r.world_before.to_string(),
        world_hash_after: r.world_after.to_string(),
        layers,
        gf3_sum: total.gf3_sum(),
        counts: total,
    }
}

pub fn rgb(c: ph::Rgba) -> Rgb {
    Rgb([c.r, c.g, c.b])
}

/// A traced token for outputs.
pub fn trace_token(text: &str, annotation: Option<&ph::Annotation>, note: String) -> TraceToken {
    TraceToken {
        text: text.to_string(),
        rgb: annotation.map(|a| rgb(a.colour)),
        trit: annotation.map(|a| a.trit),
        note: Some(match annotation {
            Some(a) if !a.label.is_empty() => format!("{note} · {}", a.label),
            _ => note,
        }),
    }
}

/// A plugin's visual as an output.
pub fn visual(v: ph::Visual) -> Output {
    match v {
        ph::Visual::Image(img) => match Image::new(img.width, img.height, img.rgba) {
            Ok(image) => Output::Image(image.with_title(img.title)),
            Err(e) => Output::Error(format!("the visualiser returned a bad image: {e}")),
        },
        ph::Visual::Plot(p) => Output::Plot(Plot {
            title: (!p.title.is_empty()).then_some(p.title),
            x_label: p.x_label,
            y_label: p.y_label,
            series: p
                .series
                .into_iter()
                .map(|s| Series {
                    name: s.name,
                    points: s
                        .points
                        .iter()
                        .map(|pt| [pt.x as f64, pt.y as f64])
                        .collect(),
                })
                .collect(),
        }),
    }
}

/// Trits as a small RGBA image: −1 red, 0 near-black, +1 blue, averaged over blocks when the
/// matrix is larger than `max_side` (so a thumbnail shows where each sign dominates).
pub fn trit_image(trits: &[i8], rows: usize, cols: usize, max_side: usize) -> Option<Image> {
    if rows == 0 || cols == 0 || trits.len() != rows * cols {
        return None;
    }
    let step_r = rows.div_ceil(max_side.max(1));
    let step_c = cols.div_ceil(max_side.max(1));
    let (h, w) = (rows.div_ceil(step_r), cols.div_ceil(step_c));
    let mut rgba = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            let (mut neg, mut pos, mut n) = (0u32, 0u32, 0u32);
            for r in y * step_r..((y + 1) * step_r).min(rows) {
                for c in x * step_c..((x + 1) * step_c).min(cols) {
                    match trits[r * cols + c] {
                        -1 => neg += 1,
                        1 => pos += 1,
                        _ => {}
                    }
                    n += 1;
                }
            }
            rgba.extend_from_slice(&trit_colour(neg, pos, n));
        }
    }
    Image::new(w as u32, h as u32, rgba).ok()
}

/// The colour of a thumbnail pixel that covers `n` trits, `neg` of them -1 and `pos` of them +1:
/// red for -1, blue for +1, dark for 0.
pub(crate) fn trit_colour(neg: u32, pos: u32, n: u32) -> [u8; 4] {
    let n = n.max(1) as f32;
    let (fn_, fp) = (neg as f32 / n, pos as f32 / n);
    [
        (24.0 + 231.0 * fn_) as u8,
        (24.0 + 60.0 * fn_.min(fp)) as u8,
        (24.0 + 231.0 * fp) as u8,
        255,
    ]
}
