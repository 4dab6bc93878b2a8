//! Conversions between the public types and the generated WIT types.
//!
//! Inputs convert infallibly. Outputs are checked against the contract and
//! the size caps on the way out of the sandbox: anything a plugin returns is
//! untrusted, so a violation becomes an `Err(reason)` the host reports as
//! invalid output, never a panic.

use crate::bindings::wit;
use crate::config::Limits;
use crate::types::{
    AnnotatedStep, Annotation, CheckSubject, GenerationStep, Image, OptionSpec, Plot, PlotSeries,
    PlotStyle, PluginInfo, PluginKind, Point, Rgba, TrainingStep, Trit, TritCounts, TritTensor,
    Verdict, VerdictStatus, Visual, VisualInput,
};

fn trits_to_wit(trits: &[Trit]) -> Vec<i8> {
    trits.iter().map(|t| t.value()).collect()
}

fn counts_to_wit(counts: &TritCounts) -> wit::TritCounts {
    wit::TritCounts {
        negative: counts.neg,
        zero: counts.zero,
        positive: counts.pos,
    }
}

fn rgba_to_wit(colour: &Rgba) -> wit::Rgba {
    wit::Rgba {
        r: colour.r,
        g: colour.g,
        b: colour.b,
        a: colour.a,
    }
}

fn tensor_to_wit(tensor: &TritTensor) -> wit::TritTensor {
    wit::TritTensor {
        name: tensor.name.clone(),
        shape: tensor.shape.clone(),
        trits: trits_to_wit(&tensor.trits),
    }
}

pub(crate) fn generation_step_to_wit(step: &GenerationStep) -> wit::GenerationStep {
    wit::GenerationStep {
        step: step.step,
        position: step.position,
        token_id: step.token_id,
        token_text: step.token_text.clone(),
        logits: wit::LogitsSummary {
            top: step
                .logits
                .top
                .iter()
                .map(|t| wit::TokenLogit {
                    token_id: t.token_id,
                    logit: t.logit,
                })
                .collect(),
            max_logit: step.logits.max_logit,
            mean_logit: step.logits.mean_logit,
            entropy: step.logits.entropy,
        },
        trits: counts_to_wit(&step.trits),
    }
}

pub(crate) fn training_step_to_wit(step: &TrainingStep) -> wit::TrainingStep {
    wit::TrainingStep {
        step: step.step,
        loss: step.loss,
        learning_rate: step.learning_rate,
        grad_norm: step.grad_norm,
        world_hash_before: step.world_hash_before.clone(),
        world_hash_after: step.world_hash_after.clone(),
        layers: step
            .layers
            .iter()
            .map(|layer| wit::LayerTransition {
                layer: layer.layer.clone(),
                transitions: layer.transitions.iter().flatten().copied().collect(),
                counts: counts_to_wit(&layer.counts),
                gf3_sum: layer.gf3_sum,
            })
            .collect(),
        counts: counts_to_wit(&step.counts),
        gf3_sum: step.gf3_sum,
    }
}

fn annotation_to_wit(annotation: &Annotation) -> wit::Annotation {
    wit::Annotation {
        colour: rgba_to_wit(&annotation.colour),
        trit: annotation.trit.value(),
        label: annotation.label.clone(),
    }
}

fn party_to_wit(party: &crate::types::Party) -> wit::Party {
    wit::Party {
        name: party.name.clone(),
        trit: party.trit.value(),
    }
}

pub(crate) fn check_subject_to_wit(subject: &CheckSubject) -> wit::CheckSubject {
    match subject {
        CheckSubject::Layer(layer) => wit::CheckSubject::Layer(wit::LayerCounts {
            layer: layer.layer.clone(),
            counts: counts_to_wit(&layer.counts),
        }),
        CheckSubject::Row(row) => wit::CheckSubject::Row(wit::TritRow {
            tensor: row.tensor.clone(),
            row: row.row,
            trits: trits_to_wit(&row.trits),
        }),
        CheckSubject::Tensor(tensor) => wit::CheckSubject::Tensor(tensor_to_wit(tensor)),
        CheckSubject::StoredTensor(name) => wit::CheckSubject::StoredTensor(name.clone()),
        CheckSubject::Trace(steps) => wit::CheckSubject::Trace(
            steps
                .iter()
                .map(|AnnotatedStep { step, annotation }| wit::AnnotatedStep {
                    step: *step,
                    annotation: annotation_to_wit(annotation),
                })
                .collect(),
        ),
        CheckSubject::Triad(triad) => {
            let [a, b, c] = &triad.parties;
            wit::CheckSubject::Triad(wit::Triad {
                label: triad.label.clone(),
                parties: (party_to_wit(a), party_to_wit(b), party_to_wit(c)),
            })
        }
    }
}

pub(crate) fn render_request_to_wit(input: &VisualInput, limits: &Limits) -> wit::RenderRequest {
    let input = match input {
        VisualInput::Tensor(tensor) => wit::VisualInput::Tensor(tensor_to_wit(tensor)),
        VisualInput::StoredTensor(name) => wit::VisualInput::StoredTensor(name.clone()),
        VisualInput::Series(series) => wit::VisualInput::Series(wit::Series {
            name: series.name.clone(),
            values: series.values.clone(),
        }),
    };
    wit::RenderRequest {
        input,
        max_width: limits.max_image_side,
        max_height: limits.max_image_side,
    }
}

/// Checks that a text field fits its cap.
fn text(field: &str, value: String, max_bytes: usize) -> Result<String, String> {
    if value.len() > max_bytes {
        return Err(format!(
            "{field} is {} bytes long; the limit is {max_bytes}",
            value.len()
        ));
    }
    Ok(value)
}

fn trit(field: &str, value: i8) -> Result<Trit, String> {
    Trit::from_i8(value)
        .ok_or_else(|| format!("{field} is {value}, which is not a trit (-1, 0 or +1)"))
}

pub(crate) fn plugin_kind_from_wit(kind: wit::PluginKind) -> PluginKind {
    match kind {
        wit::PluginKind::Tracer => PluginKind::Tracer,
        wit::PluginKind::Checker => PluginKind::Checker,
        wit::PluginKind::Visualiser => PluginKind::Visualiser,
    }
}

/// Longest plugin name and version accepted.
const MAX_NAME_BYTES: usize = 64;
/// Most options a plugin may declare.
const MAX_OPTIONS: usize = 64;

pub(crate) fn plugin_info_from_wit(
    info: wit::PluginInfo,
    limits: &Limits,
) -> Result<PluginInfo, String> {
    let name = text("name", info.name, MAX_NAME_BYTES)?;
    let name_is_identifier = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if !name_is_identifier {
        return Err(format!(
            "name `{name}` must be non-empty lowercase ASCII letters, digits, `-`, `_` or `.`"
        ));
    }
    let version = text("version", info.version, MAX_NAME_BYTES)?;
    if version.is_empty() {
        return Err("version is empty".into());
    }
    if info.options.len() > MAX_OPTIONS {
        return Err(format!(
            "declares {} options; the limit is {MAX_OPTIONS}",
            info.options.len()
        ));
    }
    let options = info
        .options
        .into_iter()
        .map(|o| {
            Ok(OptionSpec {
                name: text("option name", o.name, MAX_NAME_BYTES)?,
                description: text("option description", o.description, limits.max_text_bytes)?,
                default_value: text("option default", o.default_value, limits.max_text_bytes)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(PluginInfo {
        name,
        version,
        kind: plugin_kind_from_wit(info.kind),
        description: text("description", info.description, limits.max_text_bytes)?,
        options,
    })
}

pub(crate) fn annotation_from_wit(
    annotation: wit::Annotation,
    limits: &Limits,
) -> Result<Annotation, String> {
    let wit::Rgba { r, g, b, a } = annotation.colour;
    Ok(Annotation {
        colour: Rgba { r, g, b, a },
        trit: trit("trit", annotation.trit)?,
        label: text("label", annotation.label, limits.max_label_bytes)?,
    })
}

pub(crate) fn verdicts_from_wit(
    verdicts: Vec<wit::Verdict>,
    limits: &Limits,
) -> Result<Vec<Verdict>, String> {
    if verdicts.len() > limits.max_verdicts {
        return Err(format!(
            "{} verdicts; the limit is {}",
            verdicts.len(),
            limits.max_verdicts
        ));
    }
    verdicts
        .into_iter()
        .map(|v| {
            Ok(Verdict {
                check: text("verdict check", v.check, MAX_NAME_BYTES)?,
                status: match v.status {
                    wit::VerdictStatus::Ok => VerdictStatus::Ok,
                    wit::VerdictStatus::Violated => VerdictStatus::Violated,
                },
                message: text("verdict message", v.message, limits.max_text_bytes)?,
                location: text("verdict location", v.location, limits.max_text_bytes)?,
            })
        })
        .collect()
}

fn image_from_wit(image: wit::Image, limits: &Limits) -> Result<Image, String> {
    let side = limits.max_image_side;
    if image.width == 0 || image.height == 0 || image.width > side || image.height > side {
        return Err(format!(
            "image is {}×{}; each side must be 1..={side}",
            image.width, image.height
        ));
    }
    let expected = image.width as usize * image.height as usize * 4;
    if image.rgba.len() != expected {
        return Err(format!(
            "{}×{} image carries {} bytes of RGBA; it needs exactly {expected}",
            image.width,
            image.height,
            image.rgba.len()
        ));
    }
    Ok(Image {
        title: text("image title", image.title, limits.max_text_bytes)?,
        width: image.width,
        height: image.height,
        rgba: image.rgba,
    })
}

fn plot_from_wit(plot: wit::Plot, limits: &Limits) -> Result<Plot, String> {
    let points: usize = plot.series.iter().map(|s| s.points.len()).sum();
    if points > limits.max_plot_points {
        return Err(format!(
            "plot has {points} points; the limit is {}",
            limits.max_plot_points
        ));
    }
    let series = plot
        .series
        .into_iter()
        .map(|s| {
            if let Some(p) = s
                .points
                .iter()
                .find(|p| !p.x.is_finite() || !p.y.is_finite())
            {
                return Err(format!(
                    "plot series `{}` has a non-finite point ({}, {})",
                    s.name, p.x, p.y
                ));
            }
            Ok(PlotSeries {
                name: text("series name", s.name, limits.max_text_bytes)?,
                points: s
                    .points
                    .into_iter()
                    .map(|p| Point { x: p.x, y: p.y })
                    .collect(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Plot {
        title: text("plot title", plot.title, limits.max_text_bytes)?,
        x_label: text("x label", plot.x_label, limits.max_text_bytes)?,
        y_label: text("y label", plot.y_label, limits.max_text_bytes)?,
        style: match plot.style {
            wit::PlotStyle::Line => PlotStyle::Line,
            wit::PlotStyle::Bars => PlotStyle::Bars,
        },
        series,
    })
}

pub(crate) fn visuals_from_wit(
    visuals: Vec<wit::Visual>,
    limits: &Limits,
) -> Result<Vec<Visual>, String> {
    if visuals.len() > limits.max_visuals {
        return Err(format!(
            "{} visuals; the limit is {}",
            visuals.len(),
            limits.max_visuals
        ));
    }
    visuals
        .into_iter()
        .map(|visual| match visual {
            wit::Visual::Image(image) => image_from_wit(image, limits).map(Visual::Image),
            wit::Visual::Plot(plot) => plot_from_wit(plot, limits).map(Visual::Plot),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, bytes: usize) -> wit::Visual {
        wit::Visual::Image(wit::Image {
            title: "i".into(),
            width,
            height,
            rgba: vec![0; bytes],
        })
    }

    fn plot(points: Vec<(f32, f32)>) -> wit::Visual {
        wit::Visual::Plot(wit::Plot {
            title: "p".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            style: wit::PlotStyle::Line,
            series: vec![wit::PlotSeries {
                name: "s".into(),
                points: points
                    .into_iter()
                    .map(|(x, y)| wit::Point { x, y })
                    .collect(),
            }],
        })
    }

    #[test]
    fn images_must_fill_their_pixels_and_fit_the_limit() {
        let limits = Limits {
            max_image_side: 8,
            ..Limits::default()
        };
        assert!(visuals_from_wit(vec![image(2, 3, 24)], &limits).is_ok());
        let short = visuals_from_wit(vec![image(2, 3, 23)], &limits).expect_err("short");
        assert!(short.contains("needs exactly 24"), "{short}");
        let wide = visuals_from_wit(vec![image(9, 1, 36)], &limits).expect_err("too wide");
        assert!(wide.contains("1..=8"), "{wide}");
        assert!(
            visuals_from_wit(vec![image(0, 1, 0)], &limits).is_err(),
            "empty"
        );
    }

    #[test]
    fn plots_must_be_finite_and_bounded() {
        let limits = Limits {
            max_plot_points: 3,
            ..Limits::default()
        };
        assert!(visuals_from_wit(vec![plot(vec![(0.0, 1.0); 3])], &limits).is_ok());
        assert!(visuals_from_wit(vec![plot(vec![(0.0, 1.0); 4])], &limits).is_err());
        let nan = visuals_from_wit(vec![plot(vec![(0.0, f32::NAN)])], &limits).expect_err("NaN");
        assert!(nan.contains("non-finite"), "{nan}");
    }

    #[test]
    fn visual_and_verdict_counts_are_capped() {
        let limits = Limits {
            max_visuals: 1,
            max_verdicts: 1,
            ..Limits::default()
        };
        assert!(visuals_from_wit(vec![image(1, 1, 4), image(1, 1, 4)], &limits).is_err());
        let verdict = || wit::Verdict {
            check: "c".into(),
            status: wit::VerdictStatus::Ok,
            message: String::new(),
            location: String::new(),
        };
        assert!(verdicts_from_wit(vec![verdict()], &limits).is_ok());
        assert!(verdicts_from_wit(vec![verdict(), verdict()], &limits).is_err());
    }

    #[test]
    fn plugin_names_are_identifiers() {
        let info = |name: &str| wit::PluginInfo {
            name: name.into(),
            version: "1.0.0".into(),
            kind: wit::PluginKind::Checker,
            description: "d".into(),
            options: Vec::new(),
        };
        let limits = Limits::default();
        assert!(plugin_info_from_wit(info("my-plugin_2.x"), &limits).is_ok());
        for bad in ["", "My Plugin", "../evil", "ü"] {
            assert!(plugin_info_from_wit(info(bad), &limits).is_err(), "{bad:?}");
        }
        assert!(plugin_info_from_wit(info(&"a".repeat(65)), &limits).is_err());
    }

    #[test]
    fn training_transitions_flatten_row_major() {
        let step = TrainingStep {
            layers: vec![crate::types::LayerTransition {
                layer: "l".into(),
                transitions: [[0, 1, 2], [3, 4, 5], [6, 7, 8]],
                ..Default::default()
            }],
            ..Default::default()
        };
        // Entry (before + 1) * 3 + (after + 1): from -1 to +1 is index 2.
        assert_eq!(
            training_step_to_wit(&step).layers[0].transitions,
            (0..9).collect::<Vec<u64>>()
        );
    }
}
