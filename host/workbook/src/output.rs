//! Typed outputs: what a cell produces, shared by the command language, the GUI and the exporters.
//!
//! Outputs are plain data. They know nothing of how they are drawn: the workbook format stores them
//! (see `workbooks/README.md`), the exporters render them. Every type serialises with serde so a
//! face can ship outputs across a thread or process boundary as JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::image::Image;

/// One result of running a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Output {
    /// Plain text, shown verbatim in a monospace font.
    Text(String),
    /// Generated tokens, each optionally coloured and annotated by a tracer plugin.
    Trace(Trace),
    /// An RGBA picture, e.g. a visualiser plugin's trit map.
    Image(Image),
    /// A line plot.
    Plot(Plot),
    /// A table of strings.
    Table(Table),
    /// What went wrong; a cell that fails shows at least one of these.
    Error(String),
}

impl Output {
    /// The kind of this output, as named in the workbook format.
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::Text(_) => OutputKind::Text,
            Output::Trace(_) => OutputKind::Trace,
            Output::Image(_) => OutputKind::Image,
            Output::Plot(_) => OutputKind::Plot,
            Output::Table(_) => OutputKind::Table,
            Output::Error(_) => OutputKind::Error,
        }
    }
}

/// The kinds of [`Output`], by the names the workbook format uses (`output text`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    Text,
    Trace,
    Image,
    Plot,
    Table,
    Error,
}

impl OutputKind {
    /// Every kind, in the order the format specification lists them.
    pub const ALL: [OutputKind; 6] = [
        OutputKind::Text,
        OutputKind::Trace,
        OutputKind::Image,
        OutputKind::Plot,
        OutputKind::Table,
        OutputKind::Error,
    ];

    /// The name used in the workbook format and in exports.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Text => "text",
            OutputKind::Trace => "trace",
            OutputKind::Image => "image",
            OutputKind::Plot => "plot",
            OutputKind::Table => "table",
            OutputKind::Error => "error",
        }
    }
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not an [`OutputKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an output kind (text, trace, image, plot, table or error)")]
pub struct BadOutputKind(pub String);

impl FromStr for OutputKind {
    type Err = BadOutputKind;

    fn from_str(s: &str) -> Result<Self, BadOutputKind> {
        OutputKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| BadOutputKind(s.to_owned()))
    }
}

/// Generated text as a sequence of tokens, coloured by a tracer plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub tokens: Vec<TraceToken>,
}

impl Trace {
    /// The generated text: every token's text, in order.
    pub fn text(&self) -> String {
        self.tokens
            .iter()
            .map(|token| token.text.as_str())
            .collect()
    }
}

/// One generated token and what a tracer said about it.
///
/// The serde form is also the workbook format's line for a token, which is why unknown fields are
/// rejected: a misspelt `"rbg"` by hand must not silently drop the colour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceToken {
    /// The token's text as decoded by the tokenizer (may hold spaces and newlines).
    pub text: String,
    /// Background colour chosen by the tracer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb: Option<Rgb>,
    /// The trit the tracer assigned to this token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trit: Option<Trit>,
    /// Free text shown on hover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TraceToken {
    /// A token with no colour, trit or note.
    pub fn plain(text: impl Into<String>) -> Self {
        TraceToken {
            text: text.into(),
            ..TraceToken::default()
        }
    }
}

/// An sRGB colour, written `#rrggbb` in every text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// WCAG relative luminance in 0..=1, from linearised sRGB channels.
    pub fn relative_luminance(self) -> f64 {
        fn linear(channel: u8) -> f64 {
            let c = f64::from(channel) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        }
        let [r, g, b] = self.0;
        0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    }

    /// Black or white, whichever contrasts more with this colour as a background.
    ///
    /// Black text on a background of luminance `L` has contrast `(L + 0.05) / 0.05`, white text
    /// `1.05 / (L + 0.05)`; they are equal at `L ≈ 0.179`, so above it black wins.
    pub fn contrasting_text(self) -> Rgb {
        if self.relative_luminance() > 0.179 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02x}{g:02x}{b:02x}")
    }
}

/// Why a string is not a `#rrggbb` colour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a colour of the form #rrggbb")]
pub struct BadRgb(pub String);

impl FromStr for Rgb {
    type Err = BadRgb;

    fn from_str(s: &str) -> Result<Self, BadRgb> {
        let bad = || BadRgb(s.to_owned());
        let hex = s.strip_prefix('#').ok_or_else(bad)?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        Ok(Rgb([channel(0)?, channel(2)?, channel(4)?]))
    }
}

impl Serialize for Rgb {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rgb {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A trace token's trit is the kernels' [`Trit`] (serialised as −1, 0 or +1, validated when
/// read); the workbook re-exports it with its error type.
pub use tritlab_kernels::trit::{NotATrit, Trit};

/// A line plot: named series of `[x, y]` points drawn as polylines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x_label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub y_label: String,
    pub series: Vec<Series>,
}

/// One named line of a [`Plot`].
///
/// A point with a non-finite coordinate is a gap: the line breaks there. JSON has no NaN or
/// infinity, so such coordinates are written `null` and read back as NaN.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub name: String,
    #[serde(with = "points")]
    pub points: Vec<[f64; 2]>,
}

/// serde for plot points, mapping non-finite coordinates to `null` and back to NaN.
mod points {
    use serde::{Deserialize, Deserializer, Serializer};

    fn finite(value: f64) -> Option<f64> {
        value.is_finite().then_some(value)
    }

    pub fn serialize<S: Serializer>(points: &[[f64; 2]], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(points.iter().map(|[x, y]| [finite(*x), finite(*y)]))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<[f64; 2]>, D::Error> {
        let raw = Vec::<[Option<f64>; 2]>::deserialize(deserializer)?;
        Ok(raw
            .into_iter()
            .map(|[x, y]| [x.unwrap_or(f64::NAN), y.unwrap_or(f64::NAN)])
            .collect())
    }
}

/// A table of strings. Rows shorter or longer than the header are kept as they are; renderers pad.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The number of columns a renderer needs: the widest of the header and every row.
    pub fn width(&self) -> usize {
        self.rows
            .iter()
            .map(Vec::len)
            .chain([self.columns.len()])
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_parses_and_prints_hex() {
        let rgb: Rgb = "#E4572e".parse().unwrap();
        assert_eq!(rgb, Rgb([0xe4, 0x57, 0x2e]));
        assert_eq!(rgb.to_string(), "#e4572e");
        for bad in ["e4572e", "#e4572", "#e4572e0", "#g4572e", "#e4572\u{e9}"] {
            assert!(bad.parse::<Rgb>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn contrasting_text_follows_luminance() {
        assert_eq!(Rgb([255, 255, 0]).contrasting_text(), Rgb([0, 0, 0]));
        assert_eq!(Rgb([0, 0, 128]).contrasting_text(), Rgb([255, 255, 255]));
        assert_eq!(Rgb([255, 255, 255]).contrasting_text(), Rgb([0, 0, 0]));
        assert_eq!(Rgb([0, 0, 0]).contrasting_text(), Rgb([255, 255, 255]));
    }

    #[test]
    fn trit_serialises_as_integer_and_rejects_others() {
        let token = TraceToken {
            text: "a".into(),
            rgb: Some(Rgb([1, 2, 3])),
            trit: Some(Trit::Negative),
            note: None,
        };
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, r##"{"text":"a","rgb":"#010203","trit":-1}"##);
        assert_eq!(serde_json::from_str::<TraceToken>(&json).unwrap(), token);
        assert!(serde_json::from_str::<TraceToken>(r#"{"text":"a","trit":2}"#).is_err());
        assert!(serde_json::from_str::<TraceToken>(r##"{"text":"a","rbg":"#000000"}"##).is_err());
    }

    #[test]
    fn non_finite_points_become_null_and_read_back_as_gaps() {
        let series = Series {
            name: "loss".into(),
            points: vec![[0.0, 1.5], [1.0, f64::NAN], [f64::INFINITY, 2.0]],
        };
        let json = serde_json::to_string(&series).unwrap();
        assert_eq!(
            json,
            r#"{"name":"loss","points":[[0.0,1.5],[1.0,null],[null,2.0]]}"#
        );
        let back: Series = serde_json::from_str(&json).unwrap();
        assert_eq!(back.points[0], [0.0, 1.5]);
        assert!(back.points[1][1].is_nan());
        assert!(back.points[2][0].is_nan());
    }

    #[test]
    fn output_kind_names_round_trip() {
        for kind in OutputKind::ALL {
            assert_eq!(kind.name().parse::<OutputKind>(), Ok(kind));
        }
        assert!("picture".parse::<OutputKind>().is_err());
    }

    #[test]
    fn table_width_covers_ragged_rows() {
        let table = Table {
            title: None,
            columns: vec!["a".into()],
            rows: vec![vec!["1".into(), "2".into(), "3".into()], vec![]],
        };
        assert_eq!(table.width(), 3);
    }
}
