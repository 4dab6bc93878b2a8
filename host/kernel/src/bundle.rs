//! Typed outputs as IOPub message contents.
//!
//! The mapping from an [`Output`] to MIME types lives in one place, the `.ipynb` exporter's
//! [`notebook_output`]: a notebook run live by this kernel and one exported from a workbook carry
//! the same MIME bundles. An nbformat output and an IOPub message differ only in that nbformat
//! may split text into a list of lines; here they are joined back into strings.

use jupyter_protocol::{DisplayData, ErrorOutput, JupyterMessageContent, Media, StreamContent};
use serde_json::{Map, Value};
use tritlab_workbook::{notebook_output, Output};

/// The IOPub content for one output: `stream` for text, `error` for an error, `display_data`
/// with a MIME bundle for traces, tables, plots and images.
pub fn iopub_content(output: &Output) -> JupyterMessageContent {
    let nb = notebook_output(output);
    let field = |name: &str| nb.get(name).map(joined).unwrap_or_default();
    match nb.get("output_type").and_then(Value::as_str) {
        Some("stream") => {
            let text = text_of(&field("text"));
            match nb.get("name").and_then(Value::as_str) {
                Some("stderr") => StreamContent::stderr(&text).into(),
                _ => StreamContent::stdout(&text).into(),
            }
        }
        Some("error") => ErrorOutput {
            ename: text_of(&field("ename")),
            evalue: text_of(&field("evalue")),
            traceback: nb
                .get("traceback")
                .and_then(Value::as_array)
                .map(|lines| lines.iter().map(text_of).collect())
                .unwrap_or_default(),
        }
        .into(),
        _ => {
            let data = media(&field("data"));
            let metadata = match field("metadata") {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            DisplayData {
                data,
                metadata,
                transient: None,
            }
            .into()
        }
    }
}

/// A MIME bundle (a JSON object of type → content) as [`Media`]; a bundle the protocol crate
/// cannot read becomes its plain-text rendering, so an output is never lost.
pub(crate) fn media(data: &Value) -> Media {
    serde_json::from_value(data.clone()).unwrap_or_else(|_| {
        let mut bundle = Map::new();
        bundle.insert("text/plain".into(), Value::String(data.to_string()));
        serde_json::from_value(Value::Object(bundle)).unwrap_or_default()
    })
}

/// `value` with every nbformat multiline string (a list of strings) joined into one string.
/// Only lists of strings are joined: a JSON payload keeps its arrays.
fn joined(value: &Value) -> Value {
    match value {
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Value::String(items.iter().filter_map(Value::as_str).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    // `application/json` content is data, not nbformat's split text.
                    let v = if k.ends_with("json") {
                        v.clone()
                    } else {
                        joined(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tritlab_workbook::{Image, Table};

    fn as_json(content: &JupyterMessageContent) -> Value {
        serde_json::to_value(content).unwrap()
    }

    #[test]
    fn text_is_a_stdout_stream_in_one_string() {
        let content = iopub_content(&Output::Text("a\nb\n".into()));
        assert_eq!(content.message_type(), "stream");
        let json = as_json(&content);
        assert_eq!(json["name"], "stdout");
        assert_eq!(json["text"], "a\nb\n");
    }

    #[test]
    fn errors_keep_their_lines_as_traceback() {
        let content = iopub_content(&Output::Error("bad\nthing".into()));
        assert_eq!(content.message_type(), "error");
        let json = as_json(&content);
        assert_eq!(json["ename"], "Error");
        assert_eq!(json["evalue"], "bad\nthing");
        assert_eq!(json["traceback"], serde_json::json!(["bad", "thing"]));
    }

    #[test]
    fn tables_are_html_and_images_png() {
        let table = Output::Table(Table {
            title: None,
            columns: vec!["a".into()],
            rows: vec![vec!["1".into()]],
        });
        let json = as_json(&iopub_content(&table));
        assert!(json["data"]["text/html"]
            .as_str()
            .unwrap()
            .contains("<table"));
        assert!(json["data"]["text/plain"].is_string());
        let image = Image::new(2, 1, vec![255; 8]).unwrap();
        let json = as_json(&iopub_content(&Output::Image(image)));
        let png = json["data"]["image/png"].as_str().unwrap();
        assert!(png.starts_with("iVBOR"), "{png}");
        assert_eq!(json["metadata"]["image/png"]["width"], 2);
    }
}
