//! Plain Rust types of the plugin contract.
//!
//! These mirror the records of `wit/tritlab-plugin.wit` but belong to this
//! crate's public API: callers never see wasmtime's generated types, and
//! values coming back from a plugin are validated on the way into them (a
//! [`Trit`] is always -1, 0 or +1, an [`Image`]'s pixels always fill it).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The trit and count types are the kernels' (one definition for all of tritlab); the contract
/// re-exports them so callers need not name the kernels crate.
pub use tritlab_kernels::trit::{NotATrit, Trit, TritCounts};

/// Which world a plugin implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Tracer,
    Checker,
    Visualiser,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Tracer => "tracer",
            PluginKind::Checker => "checker",
            PluginKind::Visualiser => "visualiser",
        })
    }
}

/// One option a plugin accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionSpec {
    pub name: String,
    pub description: String,
    pub default_value: String,
}

/// A plugin's description of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub description: String,
    pub options: Vec<OptionSpec>,
}

/// One candidate token and its logit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenLogit {
    pub token_id: u32,
    pub logit: f32,
}

/// A summary of one step's logits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogitsSummary {
    pub top: Vec<TokenLogit>,
    pub max_logit: f32,
    pub mean_logit: f32,
    /// Entropy of the softmax distribution, in nats.
    pub entropy: f32,
}

/// One generated token, as tracers see it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStep {
    /// Index of the token in this generation, from 0.
    pub step: u64,
    /// Position in the context window.
    pub position: u32,
    pub token_id: u32,
    pub token_text: String,
    pub logits: LogitsSummary,
    pub trits: TritCounts,
}

/// How one layer's trits moved during a training step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerTransition {
    pub layer: String,
    /// `transitions[before + 1][after + 1]` counts weights that went from
    /// trit `before` to trit `after`.
    pub transitions: [[u64; 3]; 3],
    /// Counts after the step.
    pub counts: TritCounts,
    /// Σ trits after the step, mod 3, in 0..=2.
    pub gf3_sum: u8,
}

/// One optimiser step: the morphism from one model state to the next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingStep {
    pub step: u64,
    pub loss: f32,
    pub learning_rate: f32,
    pub grad_norm: f32,
    pub world_hash_before: String,
    pub world_hash_after: String,
    pub layers: Vec<LayerTransition>,
    pub counts: TritCounts,
    pub gf3_sum: u8,
}

/// A non-premultiplied sRGB colour with alpha.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rgba {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    pub a: u8,
}

impl Rgba {
    /// `#RRGGBB`, upper case (alpha left out).
    pub fn hex(&self) -> String {
        format!("#{:02X}{:02X}{:02X}", self.r, self.g, self.b)
    }
}

/// What a tracer says about a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub colour: Rgba,
    pub trit: Trit,
    pub label: String,
}

/// Trit counts of one layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerCounts {
    pub layer: String,
    pub counts: TritCounts,
}

/// One row of a weight matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TritRow {
    pub tensor: String,
    pub row: u32,
    pub trits: Vec<Trit>,
}

/// A whole tensor, row-major.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TritTensor {
    pub name: String,
    pub shape: Vec<u32>,
    pub trits: Vec<Trit>,
}

/// A traced step and its annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotatedStep {
    pub step: u64,
    pub annotation: Annotation,
}

/// A named party holding a trit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub name: String,
    pub trit: Trit,
}

/// Three parties whose trits should sum to 0 mod 3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triad {
    pub label: String,
    pub parties: [Party; 3],
}

/// What a checker is asked to check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckSubject {
    Layer(LayerCounts),
    Row(TritRow),
    Tensor(TritTensor),
    /// A tensor served by the [`TensorSource`](crate::TensorSource), by name.
    StoredTensor(String),
    Trace(Vec<AnnotatedStep>),
    Triad(Triad),
}

/// Whether a check passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictStatus {
    Ok,
    Violated,
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub check: String,
    pub status: VerdictStatus,
    pub message: String,
    pub location: String,
}

/// A series of numbers to plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub values: Vec<f32>,
}

/// What a visualiser is asked to draw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum VisualInput {
    Tensor(TritTensor),
    /// A tensor served by the [`TensorSource`](crate::TensorSource), by name.
    StoredTensor(String),
    Series(Series),
}

/// An RGBA8 image, row-major; `rgba.len() == width * height * 4`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub title: String,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl Image {
    /// The pixel at (x, y), if inside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgba> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (y as usize * self.width as usize + x as usize) * 4;
        let p = self.rgba.get(at..at + 4)?;
        Some(Rgba {
            r: p[0],
            g: p[1],
            b: p[2],
            a: p[3],
        })
    }
}

/// One point of a plot.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// How a plot's series are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlotStyle {
    Line,
    Bars,
}

/// One named series of a plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlotSeries {
    pub name: String,
    pub points: Vec<Point>,
}

/// Plot data the workbench draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub style: PlotStyle,
    pub series: Vec<PlotSeries>,
}

/// Something a visualiser drew.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Visual {
    Image(Image),
    Plot(Plot),
}

/// A tensor's name and shape, as the host serves them to plugins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<u32>,
}

impl TensorInfo {
    /// Number of elements, or `None` if it overflows u64.
    pub fn len(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// Severity of a plugin log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// A line a plugin logged through the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub plugin: String,
    pub level: LogLevel,
    pub message: String,
}
