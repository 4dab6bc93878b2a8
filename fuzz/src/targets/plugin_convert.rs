//! Properties of the plugin host's WIT conversions (`host/plugin-host/src/convert.rs`).
//!
//! What a plugin returns is untrusted: every `*_from_wit` conversion must either refuse it with a
//! reason or return a value that keeps the limits it was given. What the host sends converts
//! without loss: an annotation that passed the check goes back into WIT unchanged.
//!
//! Input: structured through `arbitrary`: small limits, then one conversion case.

use arbitrary::{Arbitrary, Unstructured};

use crate::bindings::wit;
use crate::config::Limits;
use crate::convert;
use crate::types::{
    AnnotatedStep, CheckSubject, LayerTransition, PlotStyle, TrainingStep, Trit, TritTensor,
    Visual, VisualInput,
};

/// Small limits, so that inputs of a few hundred bytes reach both sides of every cap.
#[derive(Debug, Arbitrary)]
struct SmallLimits {
    label: u8,
    text: u8,
    verdicts: u8,
    visuals: u8,
    image_side: u8,
    plot_points: u8,
}

impl SmallLimits {
    fn limits(&self) -> Limits {
        Limits {
            max_label_bytes: usize::from(self.label % 64),
            max_text_bytes: usize::from(self.text % 128),
            max_verdicts: usize::from(self.verdicts % 8),
            max_visuals: usize::from(self.visuals % 8),
            max_image_side: u32::from(self.image_side % 32),
            max_plot_points: usize::from(self.plot_points % 64),
            ..Limits::default()
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Case {
    Info(wit::PluginInfo),
    Annotation(u64, wit::Annotation),
    Verdicts(Vec<wit::Verdict>),
    Visuals(Vec<wit::Visual>),
    Tensor(String, Vec<u32>, Vec<i8>),
    Transitions(Vec<(String, [[u64; 3]; 3])>),
    Series(String, Vec<f32>),
}

/// Runs one fuzz input; panics when a property fails.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(small) = SmallLimits::arbitrary(&mut u) else {
        return;
    };
    let Ok(case) = Case::arbitrary(&mut u) else {
        return;
    };
    let limits = small.limits();
    match case {
        Case::Info(info) => check_info(info, &limits),
        Case::Annotation(step, annotation) => check_annotation(step, annotation, &limits),
        Case::Verdicts(verdicts) => {
            let count = verdicts.len();
            match convert::verdicts_from_wit(verdicts.clone(), &limits) {
                Ok(out) => {
                    assert!(count <= limits.max_verdicts, "{count} verdicts accepted");
                    assert_eq!(out.len(), count);
                    for (v, w) in out.iter().zip(&verdicts) {
                        assert!(v.message.len() <= limits.max_text_bytes);
                        assert!(v.location.len() <= limits.max_text_bytes);
                        assert!(v.check.len() <= 64);
                        assert_eq!(
                            (&v.check, &v.message, &v.location),
                            (&w.check, &w.message, &w.location)
                        );
                    }
                }
                Err(reason) => assert!(!reason.is_empty()),
            }
        }
        Case::Visuals(visuals) => check_visuals(visuals, &limits),
        Case::Tensor(name, shape, raw) => {
            let trits: Vec<Trit> = raw.iter().filter_map(|&t| Trit::from_i8(t)).collect();
            let tensor = TritTensor { name, shape, trits };
            let wit::CheckSubject::Tensor(out) =
                convert::check_subject_to_wit(&CheckSubject::Tensor(tensor.clone()))
            else {
                panic!("a tensor subject converted to another variant");
            };
            assert_eq!(out.name, tensor.name);
            assert_eq!(out.shape, tensor.shape);
            let back: Vec<Trit> = out
                .trits
                .iter()
                .map(|&t| Trit::from_i8(t).unwrap())
                .collect();
            assert_eq!(back, tensor.trits);
            let request =
                convert::render_request_to_wit(&VisualInput::Tensor(tensor.clone()), &limits);
            assert_eq!(request.max_width, limits.max_image_side);
            assert_eq!(request.max_height, limits.max_image_side);
            let wit::VisualInput::Tensor(sent) = request.input else {
                panic!("a tensor render request converted to another variant");
            };
            assert_eq!(sent.trits, out.trits);
        }
        Case::Transitions(layers) => {
            let step = TrainingStep {
                layers: layers
                    .iter()
                    .map(|(layer, transitions)| LayerTransition {
                        layer: layer.clone(),
                        transitions: *transitions,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let out = convert::training_step_to_wit(&step);
            assert_eq!(out.layers.len(), layers.len());
            for (w, (name, t)) in out.layers.iter().zip(&layers) {
                assert_eq!(&w.layer, name);
                // Row-major: entry (before + 1) * 3 + (after + 1).
                let flat: Vec<u64> = t.iter().flatten().copied().collect();
                assert_eq!(w.transitions, flat);
            }
        }
        Case::Series(name, values) => {
            let series = crate::types::Series {
                name,
                values: values.clone(),
            };
            let request = convert::render_request_to_wit(&VisualInput::Series(series), &limits);
            let wit::VisualInput::Series(sent) = request.input else {
                panic!("a series render request converted to another variant");
            };
            let same = sent.values.len() == values.len()
                && sent
                    .values
                    .iter()
                    .zip(&values)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "series values changed on the way to the plugin");
        }
    }
}

fn check_info(info: wit::PluginInfo, limits: &Limits) {
    match convert::plugin_info_from_wit(info.clone(), limits) {
        Ok(out) => {
            assert!(!out.name.is_empty() && out.name.len() <= 64);
            assert!(out
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
            assert!(!out.version.is_empty() && out.version.len() <= 64);
            assert!(out.description.len() <= limits.max_text_bytes);
            assert!(out.options.len() <= 64);
            for o in &out.options {
                assert!(o.name.len() <= 64);
                assert!(o.description.len() <= limits.max_text_bytes);
                assert!(o.default_value.len() <= limits.max_text_bytes);
            }
            assert_eq!(out.name, info.name);
            assert_eq!(
                out.kind,
                convert::plugin_kind_from_wit(info.kind),
                "kind changed"
            );
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
}

fn check_annotation(step: u64, annotation: wit::Annotation, limits: &Limits) {
    let valid =
        (-1..=1).contains(&annotation.trit) && annotation.label.len() <= limits.max_label_bytes;
    match convert::annotation_from_wit(annotation.clone(), limits) {
        Ok(out) => {
            assert!(valid, "accepted {annotation:?}");
            // Back into WIT, as the host sends a traced step to a checker: nothing changes.
            let subject = CheckSubject::Trace(vec![AnnotatedStep {
                step,
                annotation: out,
            }]);
            let wit::CheckSubject::Trace(steps) = convert::check_subject_to_wit(&subject) else {
                panic!("a trace subject converted to another variant");
            };
            assert_eq!(steps.len(), 1);
            assert_eq!(steps[0].step, step);
            let back = &steps[0].annotation;
            assert_eq!(back.colour, annotation.colour);
            assert_eq!(back.trit, annotation.trit);
            assert_eq!(back.label, annotation.label);
        }
        Err(reason) => {
            assert!(!valid, "refused a valid annotation: {reason}");
            assert!(!reason.is_empty());
        }
    }
}

fn check_visuals(visuals: Vec<wit::Visual>, limits: &Limits) {
    let count = visuals.len();
    let Ok(out) = convert::visuals_from_wit(visuals, limits) else {
        return;
    };
    assert!(count <= limits.max_visuals, "{count} visuals accepted");
    assert_eq!(out.len(), count);
    for visual in &out {
        match visual {
            Visual::Image(image) => {
                let side = limits.max_image_side;
                assert!((1..=side).contains(&image.width), "width {}", image.width);
                assert!(
                    (1..=side).contains(&image.height),
                    "height {}",
                    image.height
                );
                assert_eq!(
                    image.rgba.len(),
                    image.width as usize * image.height as usize * 4
                );
                assert!(image.title.len() <= limits.max_text_bytes);
            }
            Visual::Plot(plot) => {
                let points: usize = plot.series.iter().map(|s| s.points.len()).sum();
                assert!(points <= limits.max_plot_points, "{points} points accepted");
                for s in &plot.series {
                    assert!(s.name.len() <= limits.max_text_bytes);
                    assert!(s.points.iter().all(|p| p.x.is_finite() && p.y.is_finite()));
                }
                for text in [&plot.title, &plot.x_label, &plot.y_label] {
                    assert!(text.len() <= limits.max_text_bytes);
                }
                assert!(matches!(plot.style, PlotStyle::Line | PlotStyle::Bars));
            }
        }
    }
}
