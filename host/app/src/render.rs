//! Typed outputs as terminal text: coloured where the terminal allows, plain otherwise.
//!
//! Plain output (a pipe, a file, `NO_COLOR`) carries the same information: a traced token is
//! written `[text|#rrggbb]`, so a transcript still shows every colour the tracer chose.
//! Everything that comes from a model or a plugin is passed through [`sanitize`] first, so a
//! generated escape sequence cannot reprogram the terminal.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tritlab_session::lang::TokenKind;
use tritlab_workbook::{Image, Output, Plot, Rgb, Table, Trace, TraceToken};
use unicode_width::UnicodeWidthStr;

/// Whether to write ANSI escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    pub const PLAIN: Style = Style { colour: false };
    pub const COLOUR: Style = Style { colour: true };

    /// Colour for a terminal, unless `NO_COLOR` is set (to anything but the empty string) or
    /// `TERM` is `dumb`.
    pub fn for_stream(is_terminal: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if is_terminal && !no_color && !dumb {
            Style::COLOUR
        } else {
            Style::PLAIN
        }
    }

    pub fn stdout() -> Style {
        Style::for_stream(std::io::stdout().is_terminal())
    }

    pub fn stderr() -> Style {
        Style::for_stream(std::io::stderr().is_terminal())
    }

    /// `text` in the SGR attributes `sgr` (e.g. `"1;31"`), or as is without colour. Each line is
    /// painted on its own, so attributes never run across a line break.
    pub fn paint(self, sgr: &str, text: &str) -> String {
        if !self.colour {
            return text.to_string();
        }
        text.split('\n')
            .map(|line| {
                if line.is_empty() {
                    String::new()
                } else {
                    format!("\x1b[{sgr}m{line}\x1b[0m")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }
}

/// The SGR attributes for a highlighted part of the command line.
pub fn token_sgr(kind: TokenKind) -> Option<&'static str> {
    Some(match kind {
        TokenKind::Command => "1;34",
        TokenKind::Subcommand => "34",
        TokenKind::Option => "36",
        TokenKind::String => "32",
        TokenKind::Number => "35",
        TokenKind::Path => "33",
        TokenKind::Comment => "90",
        TokenKind::Error => "31;4",
        TokenKind::Rust => "38;5;173",
        TokenKind::Plain => return None,
    })
}

/// `line` with the language's highlighting as ANSI colours. The display width is unchanged.
pub fn highlight_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 32);
    let mut at = 0;
    for (range, kind) in tritlab_session::highlight(line) {
        if range.start < at || range.end > line.len() {
            continue;
        }
        out.push_str(&line[at..range.start]);
        let text = &line[range.clone()];
        match token_sgr(kind) {
            // Each line of a multi-line range is painted on its own, so a newline never sits
            // inside an escape sequence's reach.
            Some(sgr) => out.push_str(&Style::COLOUR.paint(sgr, text)),
            None => out.push_str(text),
        }
        at = range.end;
    }
    out.push_str(&line[at..]);
    out
}

/// Replaces control characters other than newline and tab by visible escapes (`\x1b`, `\u{9b}`),
/// so that text from a model or a plugin cannot move the cursor or change colours.
pub fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_unsafe_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe_control(c) {
            let _ = match c as u32 {
                n @ 0..=0xff => write!(out, "\\x{n:02x}"),
                n => write!(out, "\\u{{{n:x}}}"),
            };
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn is_unsafe_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Renders outputs; images are written as PNG files into `image_dir`.
#[derive(Debug, Clone)]
pub struct Renderer {
    pub style: Style,
    pub image_dir: PathBuf,
}

/// A rendered output and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Errors go to stderr, everything else to stdout.
    pub is_error: bool,
}

impl Renderer {
    /// Images go to `tritlab-images` in the system's temporary directory.
    pub fn new(style: Style) -> Renderer {
        Renderer {
            style,
            image_dir: std::env::temp_dir().join("tritlab-images"),
        }
    }

    pub fn render(&self, output: &Output) -> Rendered {
        let text = match output {
            Output::Text(text) => sanitize(text).into_owned(),
            Output::Error(message) => {
                return Rendered {
                    text: self.style.red(&sanitize(message)),
                    is_error: true,
                }
            }
            Output::Trace(trace) => trace_text(trace, self.style),
            Output::Table(table) => table_text(table, self.style),
            Output::Plot(plot) => plot_text(plot, self.style),
            Output::Image(image) => self.image_text(image),
        };
        Rendered {
            text,
            is_error: false,
        }
    }

    fn image_text(&self, image: &Image) -> String {
        let mut line = format!("image {}×{}", image.width(), image.height());
        if let Some(title) = image.title() {
            let _ = write!(line, " “{}”", sanitize(title));
        }
        match save_png(image, &self.image_dir) {
            Ok(path) => {
                let _ = write!(line, ", saved to {}", path.display());
                self.style.dim(&line)
            }
            Err(e) => {
                let _ = write!(line, " (not saved: {e})");
                self.style.yellow(&line)
            }
        }
    }
}

/// Writes `image` as `DIR/HASH.png` (content-named, so an image shown twice is saved once).
pub fn save_png(image: &Image, dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.png", image.content_hash()));
    if !path.is_file() {
        let png = image.to_png().map_err(|e| e.to_string())?;
        tritlab_workbook::write_atomic(&path, &png).map_err(|e| e.to_string())?;
    }
    Ok(path)
}

/// A trace: the title on a line of its own, then the tokens.
pub fn trace_text(trace: &Trace, style: Style) -> String {
    let mut out = String::new();
    if let Some(title) = &trace.title {
        out.push_str(&style.dim(&format!("[{}]", sanitize(title))));
        out.push('\n');
    }
    for token in &trace.tokens {
        out.push_str(&token_text(token, style));
    }
    out
}

/// One traced token: on its tracer's colour (with black or white text, whichever reads better),
/// or `[text|#rrggbb]` without colour. Tokens the tracer did not colour are written as they are.
pub fn token_text(token: &TraceToken, style: Style) -> String {
    let text = sanitize(&token.text);
    let Some(rgb) = token.rgb else {
        return text.into_owned();
    };
    if !style.colour {
        let escaped = text.replace('\n', "\\n").replace('\t', "\\t");
        return format!("[{escaped}|{rgb}]");
    }
    let Rgb([r, g, b]) = rgb;
    let Rgb([fr, fg, fb]) = rgb.contrasting_text();
    let on = format!("\x1b[48;2;{r};{g};{b}m\x1b[38;2;{fr};{fg};{fb}m");
    // A newline is shown as ↵ in the colour; the background stops before the line break.
    text.split('\n')
        .map(|part| part.to_string())
        .collect::<Vec<_>>()
        .join("↵\n")
        .split('\n')
        .map(|part| {
            if part.is_empty() {
                String::new()
            } else {
                format!("{on}{part}\x1b[0m")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table with aligned columns; a column of numbers is aligned right.
pub fn table_text(table: &Table, style: Style) -> String {
    let ncols = table
        .rows
        .iter()
        .map(Vec::len)
        .chain([table.columns.len()])
        .max()
        .unwrap_or(0);
    let cell = |row: &[String], i: usize| -> String {
        row.get(i)
            .map(|c| sanitize(c).replace('\n', " "))
            .unwrap_or_default()
    };
    let header: Vec<String> = (0..ncols).map(|i| cell(&table.columns, i)).collect();
    let rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|r| (0..ncols).map(|i| cell(r, i)).collect())
        .collect();
    let show_header = header.iter().any(|h| !h.is_empty());
    let widths: Vec<usize> = (0..ncols)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].width())
                .chain(show_header.then(|| header[i].width()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..ncols)
        .map(|i| {
            let mut cells = rows.iter().map(|r| r[i].as_str()).filter(|c| !c.is_empty());
            let mut any = false;
            let all = cells.all(|c| {
                any = true;
                looks_numeric(c)
            });
            all && any
        })
        .collect();
    let line = |cells: &[String], header: bool| -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[i].saturating_sub(c.width()));
            let text = if header { style.bold(c) } else { c.clone() };
            if i > 0 {
                out.push_str("  ");
            }
            if numeric[i] {
                out.push_str(&pad);
                out.push_str(&text);
            } else {
                out.push_str(&text);
                if i + 1 < cells.len() {
                    out.push_str(&pad);
                }
            }
        }
        out.trim_end().to_string()
    };
    let mut out = Vec::new();
    if let Some(title) = &table.title {
        out.push(style.bold(&sanitize(title)));
    }
    if show_header {
        out.push(line(&header, true));
        let total = widths.iter().sum::<usize>() + 2 * ncols.saturating_sub(1);
        out.push(style.dim(&"─".repeat(total)));
    }
    for row in &rows {
        out.push(line(row, false));
    }
    if rows.is_empty() {
        out.push(style.dim("(no rows)"));
    }
    out.join("\n")
}

/// A number as tables print them: `12`, `-3.5`, `1.2e-3`, `45.1%`.
fn looks_numeric(cell: &str) -> bool {
    let c = cell.trim_end_matches('%');
    let c = c.strip_prefix(['+', '-', '−']).unwrap_or(c);
    !c.is_empty() && c.parse::<f64>().is_ok()
}

/// The sparkline's levels, lowest first.
const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// A sparkline is at most this many characters wide.
const SPARK_WIDTH: usize = 48;

/// A plot as text: per series its size, ranges, last value and a sparkline.
pub fn plot_text(plot: &Plot, style: Style) -> String {
    let mut out = Vec::new();
    let mut heading = plot
        .title
        .as_deref()
        .map(|t| sanitize(t).into_owned())
        .unwrap_or_else(|| "plot".into());
    if !plot.y_label.is_empty() || !plot.x_label.is_empty() {
        let y = if plot.y_label.is_empty() {
            "y"
        } else {
            &plot.y_label
        };
        let x = if plot.x_label.is_empty() {
            "x"
        } else {
            &plot.x_label
        };
        let _ = write!(heading, " ({} by {})", sanitize(y), sanitize(x));
    }
    out.push(style.bold(&heading));
    let name_width = plot
        .series
        .iter()
        .map(|s| sanitize(&s.name).width())
        .max()
        .unwrap_or(0);
    for series in &plot.series {
        let name = sanitize(&series.name);
        let pad = " ".repeat(name_width - name.width());
        let finite: Vec<[f64; 2]> = series
            .points
            .iter()
            .copied()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
            .collect();
        let Some(last) = finite.last() else {
            out.push(format!(
                "  {name}{pad}  {} points, none to draw",
                series.points.len()
            ));
            continue;
        };
        let (x_min, x_max) = min_max(finite.iter().map(|p| p[0]));
        let (y_min, y_max) = min_max(finite.iter().map(|p| p[1]));
        out.push(format!(
            "  {name}{pad}  {} points  x {}…{}  y {}…{}  last {}  {}",
            series.points.len(),
            short(x_min),
            short(x_max),
            short(y_min),
            short(y_max),
            short(last[1]),
            style.paint("36", &sparkline(&series.points, SPARK_WIDTH)),
        ));
    }
    if plot.series.is_empty() {
        out.push(style.dim("  (no series)"));
    }
    out.join("\n")
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// A number in at most about six significant characters.
fn short(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 1e5 || v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The y values of `points` in at most `width` characters: points are grouped into equal runs
/// and each run shows its mean; a run with no finite value (a gap) is a blank.
pub fn sparkline(points: &[[f64; 2]], width: usize) -> String {
    if points.is_empty() || width == 0 {
        return String::new();
    }
    let columns = points.len().min(width);
    let means: Vec<Option<f64>> = (0..columns)
        .map(|c| {
            let from = c * points.len() / columns;
            let to = ((c + 1) * points.len() / columns).max(from + 1);
            let ys: Vec<f64> = points[from..to]
                .iter()
                .map(|p| p[1])
                .filter(|y| y.is_finite())
                .collect();
            (!ys.is_empty()).then(|| ys.iter().sum::<f64>() / ys.len() as f64)
        })
        .collect();
    let (lo, hi) = min_max(means.iter().flatten().copied());
    means
        .iter()
        .map(|m| match m {
            None => ' ',
            Some(_) if hi <= lo => LEVELS[LEVELS.len() / 2],
            Some(v) => {
                let level = ((v - lo) / (hi - lo) * (LEVELS.len() - 1) as f64).round() as usize;
                LEVELS[level.min(LEVELS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tritlab_workbook::Series;

    fn token(text: &str, rgb: Option<[u8; 3]>) -> TraceToken {
        TraceToken {
            text: text.into(),
            rgb: rgb.map(Rgb),
            ..TraceToken::default()
        }
    }

    #[test]
    fn plain_traces_spell_out_colours() {
        let trace = Trace {
            title: Some("coloured by gay-tracer".into()),
            tokens: vec![
                token("To", None),
                token(" be", Some([0xd6, 0x27, 0x28])),
                token("\n", Some([0, 0, 0])),
            ],
        };
        assert_eq!(
            trace_text(&trace, Style::PLAIN),
            "[coloured by gay-tracer]\nTo[ be|#d62728][\\n|#000000]"
        );
    }

    #[test]
    fn coloured_tokens_use_true_colour_and_contrasting_text() {
        // A dark background gets white text, a light one black.
        let dark = token_text(&token("a", Some([10, 20, 30])), Style::COLOUR);
        assert_eq!(dark, "\x1b[48;2;10;20;30m\x1b[38;2;255;255;255ma\x1b[0m");
        let light = token_text(&token("b", Some([250, 250, 200])), Style::COLOUR);
        assert_eq!(light, "\x1b[48;2;250;250;200m\x1b[38;2;0;0;0mb\x1b[0m");
        // The background ends before a line break.
        let newline = token_text(&token("x\ny", Some([0, 0, 0])), Style::COLOUR);
        assert_eq!(
            newline,
            "\x1b[48;2;0;0;0m\x1b[38;2;255;255;255mx↵\x1b[0m\n\x1b[48;2;0;0;0m\x1b[38;2;255;255;255my\x1b[0m"
        );
    }

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(sanitize("a\x1b[2Jb\n\tc"), "a\\x1b[2Jb\n\tc");
        assert_eq!(sanitize("\u{9b}31m"), "\\x9b31m");
        assert!(matches!(sanitize("plain"), std::borrow::Cow::Borrowed(_)));
        let t = token_text(&token("\x1b]0;pwned\x07", Some([1, 2, 3])), Style::COLOUR);
        assert!(!t.contains("\x1b]"), "{t:?}");
    }

    #[test]
    fn tables_align_and_numbers_go_right() {
        let table = Table {
            title: Some("layers".into()),
            columns: vec!["tensor".into(), "−1".into(), "Σ mod 3".into()],
            rows: vec![
                vec!["q_proj".into(), "1201".into(), "0".into()],
                vec!["down_proj".into(), "7".into(), "2".into()],
            ],
        };
        let expected = [
            "layers",
            "tensor       −1  Σ mod 3",
            "────────────────────────",
            "q_proj     1201        0",
            "down_proj     7        2",
        ];
        assert_eq!(table_text(&table, Style::PLAIN), expected.join("\n"));
    }

    #[test]
    fn tables_without_headers_or_rows() {
        let table = Table {
            title: None,
            columns: vec!["".into(), "".into()],
            rows: vec![
                vec!["model".into(), "default".into()],
                vec!["vocabulary".into(), "300 tokens".into(), "extra".into()],
            ],
        };
        assert_eq!(
            table_text(&table, Style::PLAIN),
            "model       default\nvocabulary  300 tokens  extra"
        );
        let empty = Table {
            title: None,
            columns: vec!["a".into()],
            rows: vec![],
        };
        assert_eq!(table_text(&empty, Style::PLAIN), "a\n─\n(no rows)");
    }

    #[test]
    fn sparklines_scale_to_the_range_and_show_gaps() {
        let points: Vec<[f64; 2]> = (0..8).map(|i| [i as f64, i as f64]).collect();
        assert_eq!(sparkline(&points, 48), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&points, 4), "▁▃▆█");
        let gap = [[0.0, 1.0], [1.0, f64::NAN], [2.0, 3.0]];
        assert_eq!(sparkline(&gap, 10), "▁ █");
        assert_eq!(sparkline(&[[0.0, 5.0], [1.0, 5.0]], 10), "▅▅");
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn plots_summarise_each_series() {
        let plot = Plot {
            title: Some("loss per step".into()),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "loss".into(),
                    points: vec![[1.0, 5.5], [2.0, 4.25], [3.0, 3.0]],
                },
                Series {
                    name: "eval".into(),
                    points: vec![],
                },
            ],
        };
        assert_eq!(
            plot_text(&plot, Style::PLAIN),
            "loss per step (loss by step)\n  loss  3 points  x 1…3  y 3…5.5  last 3  █▅▁\n  eval  0 points, none to draw"
        );
    }

    #[test]
    fn errors_are_red_line_by_line() {
        let r = Renderer::new(Style::COLOUR).render(&Output::Error("a\n^ b".into()));
        assert!(r.is_error);
        assert_eq!(r.text, "\x1b[31ma\x1b[0m\n\x1b[31m^ b\x1b[0m");
        let plain = Renderer::new(Style::PLAIN).render(&Output::Error("oops".into()));
        assert_eq!(plain.text, "oops");
    }

    #[test]
    fn images_are_saved_once_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let renderer = Renderer {
            style: Style::PLAIN,
            image_dir: dir.path().join("img"),
        };
        let image = Image::new(2, 1, vec![255, 0, 0, 255, 0, 0, 255, 255])
            .unwrap()
            .with_title("two pixels");
        let text = renderer.render(&Output::Image(image.clone())).text;
        let path = dir
            .path()
            .join("img")
            .join(format!("{}.png", image.content_hash()));
        assert_eq!(
            text,
            format!("image 2×1 “two pixels”, saved to {}", path.display())
        );
        let back = Image::from_png(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back.rgba(), image.rgba());
    }

    #[test]
    fn highlighting_keeps_the_text() {
        let line = "generate \"To be\" --max-tokens 5 # note";
        let painted = highlight_line(line);
        assert!(painted.contains("\x1b[1;34mgenerate\x1b[0m"), "{painted:?}");
        assert!(painted.contains("\x1b[32m\"To be\"\x1b[0m"), "{painted:?}");
        let stripped = strip_ansi(&painted);
        assert_eq!(stripped, line);
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
