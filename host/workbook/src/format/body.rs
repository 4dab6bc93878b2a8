//! The bodies of fenced output blocks.
//!
//! `text` and `error` bodies are the text itself. `trace`, `table` and `plot` bodies are JSON
//! Lines: a header object, then one JSON value per token, row or series. One item per line keeps
//! diffs to the items that changed and lets an error name the exact line.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ParseError, ParseErrorKind};
use crate::output::{Output, OutputKind, Plot, Series, Table, Trace, TraceToken};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    columns: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlotHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    x_label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    y_label: String,
}

/// One JSON line. These types hold only strings, numbers and sequences, which always serialise
/// (non-finite floats are mapped to `null` by `Series`), so failure here is a bug, not bad input.
fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("workbook output types always serialise to JSON")
}

/// The body of `output`'s fenced block, or `None` for an image (which is an image line instead).
pub(crate) fn encode(output: &Output) -> Option<String> {
    let lines: Vec<String> = match output {
        Output::Text(text) | Output::Error(text) => return Some(text.clone()),
        Output::Image(_) => return None,
        Output::Trace(trace) => std::iter::once(json_line(&TraceHeader {
            title: trace.title.clone(),
        }))
        .chain(trace.tokens.iter().map(json_line))
        .collect(),
        Output::Table(table) => std::iter::once(json_line(&TableHeader {
            title: table.title.clone(),
            columns: table.columns.clone(),
        }))
        .chain(table.rows.iter().map(json_line))
        .collect(),
        Output::Plot(plot) => std::iter::once(json_line(&PlotHeader {
            title: plot.title.clone(),
            x_label: plot.x_label.clone(),
            y_label: plot.y_label.clone(),
        }))
        .chain(plot.series.iter().map(json_line))
        .collect(),
    };
    Some(lines.join("\n"))
}

/// Decodes the body of an `output KIND` block whose first body line is line `first_line`.
/// `kind` is never `Image`: the parser turns `output image` blocks away before calling this.
pub(crate) fn decode(
    kind: OutputKind,
    first_line: usize,
    body: &[&str],
) -> Result<Output, ParseError> {
    match kind {
        OutputKind::Text => Ok(Output::Text(body.join("\n"))),
        OutputKind::Error => Ok(Output::Error(body.join("\n"))),
        OutputKind::Trace => {
            let (header, tokens) = json_lines::<TraceHeader, TraceToken>(kind, first_line, body)?;
            Ok(Output::Trace(Trace {
                title: header.title,
                tokens,
            }))
        }
        OutputKind::Table => {
            let (header, rows) = json_lines::<TableHeader, Vec<String>>(kind, first_line, body)?;
            Ok(Output::Table(Table {
                title: header.title,
                columns: header.columns,
                rows,
            }))
        }
        OutputKind::Plot => {
            let (header, series) = json_lines::<PlotHeader, Series>(kind, first_line, body)?;
            Ok(Output::Plot(Plot {
                title: header.title,
                x_label: header.x_label,
                y_label: header.y_label,
                series,
            }))
        }
        OutputKind::Image => Err(ParseError::new(
            first_line.saturating_sub(1),
            ParseErrorKind::FencedImage,
        )),
    }
}

/// Reads a header line and item lines, skipping blank lines (a hand edit may leave some).
fn json_lines<H: DeserializeOwned, I: DeserializeOwned>(
    kind: OutputKind,
    first_line: usize,
    body: &[&str],
) -> Result<(H, Vec<I>), ParseError> {
    let mut lines = body
        .iter()
        .enumerate()
        .map(|(i, line)| (first_line + i, *line))
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(ParseError::new(
            first_line.saturating_sub(1),
            ParseErrorKind::MissingHeader { kind },
        ));
    };
    let header = parse_json(kind, header_line, header, "header")?;
    let items = lines
        .map(|(number, line)| parse_json(kind, number, line, "line"))
        .collect::<Result<_, _>>()?;
    Ok((header, items))
}

fn parse_json<T: DeserializeOwned>(
    kind: OutputKind,
    line: usize,
    text: &str,
    what: &str,
) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|error| {
        // serde_json ends its message with a position inside this one line; keep the column only.
        let message = error.to_string();
        let position = format!(" at line {} column {}", error.line(), error.column());
        let reason = message.strip_suffix(&position).unwrap_or(&message);
        ParseError::new(
            line,
            ParseErrorKind::BadOutput {
                kind,
                message: format!("{what} is not valid: {reason} (column {})", error.column()),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Rgb, Trit};

    fn round_trip(output: Output) {
        let body = encode(&output).unwrap();
        let lines: Vec<&str> = body.split('\n').collect();
        assert_eq!(decode(output.kind(), 10, &lines).unwrap(), output, "{body}");
    }

    #[test]
    fn every_fenced_kind_round_trips() {
        round_trip(Output::Text("two\nlines".into()));
        round_trip(Output::Error("boom".into()));
        round_trip(Output::Trace(Trace {
            title: Some("gay-tracer".into()),
            tokens: vec![
                TraceToken {
                    text: "To".into(),
                    rgb: Some(Rgb([0xe4, 0x57, 0x2e])),
                    trit: Some(Trit::Positive),
                    note: Some("hue 12°".into()),
                },
                TraceToken::plain(" be\n"),
            ],
        }));
        round_trip(Output::Table(Table {
            title: None,
            columns: vec!["layer".into(), "zeros".into()],
            rows: vec![vec!["q".into(), "40%".into()], vec![]],
        }));
        round_trip(Output::Plot(Plot {
            title: Some("loss".into()),
            x_label: "step".into(),
            y_label: String::new(),
            series: vec![Series {
                name: "train".into(),
                points: vec![[0.0, 2.5], [1.0, 1e-300]],
            }],
        }));
    }

    #[test]
    fn table_is_one_row_per_line() {
        let table = Output::Table(Table {
            title: Some("t".into()),
            columns: vec!["a".into()],
            rows: vec![vec!["1".into()], vec!["2".into()]],
        });
        assert_eq!(
            encode(&table).unwrap(),
            "{\"title\":\"t\",\"columns\":[\"a\"]}\n[\"1\"]\n[\"2\"]"
        );
    }

    #[test]
    fn errors_name_the_offending_line() {
        let body = ["{}", "", r#"{"text":"a"}"#, r#"{"text":"b","trit":3}"#];
        let error = decode(OutputKind::Trace, 20, &body).unwrap_err();
        assert_eq!(error.line, 23);
        assert!(error.to_string().contains("not a trit"), "{error}");

        let error = decode(OutputKind::Plot, 5, &[r#"{"titel":"x"}"#]).unwrap_err();
        assert_eq!(error.line, 5);
        assert!(error.to_string().contains("titel"), "{error}");

        let error = decode(OutputKind::Table, 8, &[" "]).unwrap_err();
        assert_eq!(
            error,
            ParseError::new(
                7,
                ParseErrorKind::MissingHeader {
                    kind: OutputKind::Table
                }
            )
        );
    }
}
