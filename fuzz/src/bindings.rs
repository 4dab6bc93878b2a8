//! The WIT types of `tritlab:plugin/types`, declared as wasmtime's `bindgen!` generates them
//! (same names, fields and variants), so `convert.rs` compiles against them without wasmtime.

pub(crate) mod wit {
    use arbitrary::Arbitrary;

    pub type Trit = i8;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
    pub enum PluginKind {
        Tracer,
        Checker,
        Visualiser,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct OptionSpec {
        pub name: String,
        pub description: String,
        pub default_value: String,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct PluginInfo {
        pub name: String,
        pub version: String,
        pub kind: PluginKind,
        pub description: String,
        pub options: Vec<OptionSpec>,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
    pub struct TritCounts {
        pub negative: u64,
        pub zero: u64,
        pub positive: u64,
    }

    #[derive(Debug, Clone, Copy, Arbitrary)]
    pub struct TokenLogit {
        pub token_id: u32,
        pub logit: f32,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct LogitsSummary {
        pub top: Vec<TokenLogit>,
        pub max_logit: f32,
        pub mean_logit: f32,
        pub entropy: f32,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct GenerationStep {
        pub step: u64,
        pub position: u32,
        pub token_id: u32,
        pub token_text: String,
        pub logits: LogitsSummary,
        pub trits: TritCounts,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct LayerTransition {
        pub layer: String,
        pub transitions: Vec<u64>,
        pub counts: TritCounts,
        pub gf3_sum: u8,
    }

    #[derive(Debug, Clone, Arbitrary)]
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

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
    pub struct Rgba {
        pub r: u8,
        pub g: u8,
        pub b: u8,
        pub a: u8,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct Annotation {
        pub colour: Rgba,
        pub trit: Trit,
        pub label: String,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct LayerCounts {
        pub layer: String,
        pub counts: TritCounts,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct TritRow {
        pub tensor: String,
        pub row: u32,
        pub trits: Vec<Trit>,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct TritTensor {
        pub name: String,
        pub shape: Vec<u32>,
        pub trits: Vec<Trit>,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct AnnotatedStep {
        pub step: u64,
        pub annotation: Annotation,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct Party {
        pub name: String,
        pub trit: Trit,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct Triad {
        pub label: String,
        pub parties: (Party, Party, Party),
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub enum CheckSubject {
        Layer(LayerCounts),
        Row(TritRow),
        Tensor(TritTensor),
        StoredTensor(String),
        Trace(Vec<AnnotatedStep>),
        Triad(Triad),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
    pub enum VerdictStatus {
        Ok,
        Violated,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct Verdict {
        pub check: String,
        pub status: VerdictStatus,
        pub message: String,
        pub location: String,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct Series {
        pub name: String,
        pub values: Vec<f32>,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub enum VisualInput {
        Tensor(TritTensor),
        StoredTensor(String),
        Series(Series),
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct RenderRequest {
        pub input: VisualInput,
        pub max_width: u32,
        pub max_height: u32,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct Image {
        pub title: String,
        pub width: u32,
        pub height: u32,
        pub rgba: Vec<u8>,
    }

    #[derive(Debug, Clone, Copy, Arbitrary)]
    pub struct Point {
        pub x: f32,
        pub y: f32,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
    pub enum PlotStyle {
        Line,
        Bars,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct PlotSeries {
        pub name: String,
        pub points: Vec<Point>,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub struct Plot {
        pub title: String,
        pub x_label: String,
        pub y_label: String,
        pub style: PlotStyle,
        pub series: Vec<PlotSeries>,
    }

    #[derive(Debug, Clone, Arbitrary)]
    pub enum Visual {
        Image(Image),
        Plot(Plot),
    }
}
