//! The exporters on a workbook holding every kind of output.

use crate::common;

use std::collections::HashSet;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use tritlab_workbook::{export, to_html, to_ipynb, ExportFormat, Image, Output, Workbook};

#[test]
fn html_is_self_contained_coloured_and_escaped() {
    let html = to_html(&common::every_output_book());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>Every output</title>"));
    assert!(html.contains("<style>") && !html.contains("<script") && !html.contains("<link"));

    // Trace: dark red gets white text, pale yellow black text, trits and notes in tooltips.
    assert!(html.contains(
        "<span style=\"background:#d62728;color:#ffffff;border-radius:2px\" title=\"trit -1\">&lt;To&gt;</span>"
    ), "{html}");
    assert!(html.contains(
        "<span style=\"background:#f0f060;color:#000000;border-radius:2px\" title=\"trit +1 · hue 60°\"> be &amp; &quot;not&quot;</span>"
    ));

    // Prose HTML, text output and table cells are escaped.
    assert!(html.contains("&lt;b&gt;raw&lt;/b&gt;"));
    assert!(html.contains("3 tokens\n&lt;done&gt;"));
    assert!(html.contains("<td>k|proj &lt;b&gt;</td>"));
    assert!(html.contains("<th>+1</th>"));
    assert!(html.contains("<figcaption>trit map &lt;q_proj&gt;</figcaption>"));

    assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(html.contains("class=\"output output-error\">cannot open missing\n  caused by"));
    assert!(html.contains("<section class=\"cell\" id=\"gen\">"));
    assert!(html.contains("let x = 1;\nprintln!(&quot;{x}&quot;);"));
}

#[test]
fn html_embeds_the_image_as_a_png_data_url() {
    let html = to_html(&common::every_output_book());
    let start = html
        .find("src=\"data:image/png;base64,")
        .expect("an embedded PNG")
        + 27;
    let end = start + html[start..].find('"').unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(&html[start..end])
        .unwrap();
    let decoded = Image::from_png(&png).unwrap();
    assert_eq!(decoded.rgba(), common::image().rgba());
}

fn notebook() -> Value {
    serde_json::from_str(&to_ipynb(&common::every_output_book())).unwrap()
}

fn keys(value: &Value) -> HashSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn ipynb_cells_have_unique_schema_ids_and_only_schema_keys() {
    let notebook = notebook();
    assert_eq!(
        (
            notebook["nbformat"].as_u64(),
            notebook["nbformat_minor"].as_u64()
        ),
        (Some(4), Some(5))
    );
    assert_eq!(
        keys(&notebook),
        HashSet::from(["nbformat", "nbformat_minor", "metadata", "cells"])
    );
    assert_eq!(notebook["metadata"]["kernelspec"]["name"], "tritlab");
    assert_eq!(notebook["metadata"]["language_info"]["name"], "tritlab");

    let cells = notebook["cells"].as_array().unwrap();
    let types: Vec<&str> = cells
        .iter()
        .map(|c| c["cell_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["markdown", "code", "markdown", "code", "code"]);
    let mut seen = HashSet::new();
    for cell in cells {
        let id = cell["id"].as_str().unwrap();
        assert!((1..=64).contains(&id.len()));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        assert!(seen.insert(id.to_owned()), "duplicate id {id}");
        let expected: HashSet<&str> = match cell["cell_type"].as_str().unwrap() {
            "markdown" => HashSet::from(["cell_type", "id", "metadata", "source"]),
            _ => HashSet::from([
                "cell_type",
                "id",
                "metadata",
                "source",
                "execution_count",
                "outputs",
            ]),
        };
        assert_eq!(keys(cell), expected);
    }
    assert_eq!(cells[1]["id"], "gen");
    assert_eq!(cells[1]["execution_count"], 1);
    assert_eq!(
        cells[3]["execution_count"],
        Value::Null,
        "a cell that has not run"
    );
    assert_eq!(cells[3]["metadata"]["tritlab"]["language"], "rust");
    assert_eq!(
        cells[3]["source"],
        serde_json::json!([":rust\n", "let x = 1;\n", "println!(\"{x}\");"]),
        "a Rust cell opens with `:rust`, so the tritlab kernel runs it as Rust"
    );
}

#[test]
fn ipynb_outputs_map_to_jupyter_output_types() {
    let notebook = notebook();
    let outputs = notebook["cells"][1]["outputs"].as_array().unwrap();
    let types: Vec<&str> = outputs
        .iter()
        .map(|o| o["output_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "stream",
            "display_data",
            "display_data",
            "display_data",
            "display_data"
        ]
    );
    assert_eq!(outputs[0]["name"], "stdout");
    assert_eq!(
        outputs[0]["text"],
        serde_json::json!(["3 tokens\n", "<done>"])
    );

    let trace_html: String = outputs[1]["data"]["text/html"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    assert!(trace_html.contains("background:#d62728"), "{trace_html}");
    assert!(outputs[1]["data"]["text/plain"].is_array());

    let png = outputs[2]["data"]["image/png"].as_str().unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(png)
        .unwrap();
    assert_eq!(
        Image::from_png(&png).unwrap().rgba(),
        common::image().rgba()
    );
    assert_eq!(outputs[2]["metadata"]["image/png"]["width"], 4);

    assert!(outputs[3]["data"]["text/html"]
        .to_string()
        .contains("<table>"));
    assert!(outputs[4]["data"]["text/html"].to_string().contains("<svg"));
    assert!(outputs[4]["data"]["image/svg+xml"]
        .to_string()
        .contains("<svg xmlns"));

    let error = &notebook["cells"][4]["outputs"][0];
    assert_eq!(error["output_type"], "error");
    assert_eq!(error["ename"], "Error");
    assert_eq!(
        error["traceback"],
        serde_json::json!(["cannot open missing", "  caused by: no such file"])
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn markdown_export_reads_on_github_with_sidecar_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.md");
    let mut book = common::every_output_book();
    export(&book, &path).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# Every output\n"),
        "no version line: {text}"
    );
    assert!(!text.contains("id=gen") && !text.contains("output text"));
    assert!(text.contains("```tritlab\ngenerate default --prompt \"To be\"\n```\n"));
    assert!(text.contains("```text\n3 tokens\n<done>\n```"));
    assert!(text.contains("**gay-tracer**\n\n<div class=\"trace\""));
    assert!(text.contains("| layer | -1 | 0 | +1 |\n| --- | --- | --- | --- |\n"));
    assert!(text.contains("| k\\|proj \\<b\\> | 6 |  |  |"));
    assert!(text.contains("**Error**\n\n```text\ncannot open missing"));
    let png = format!(
        "![trit map \\<q_proj\\>](report.assets/{}.png)",
        common::image().content_hash()
    );
    assert!(text.contains(&png), "{text}");

    let assets = dir.path().join("report.assets");
    let files = names_in(&assets);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with(".svg")) && files.iter().any(|f| f.ends_with(".png")));
    let svg = files.iter().find(|f| f.ends_with(".svg")).unwrap();
    assert!(text.contains(&format!("](report.assets/{svg})")));

    // Exporting again without the image removes its file; a file of the user's stays.
    std::fs::write(assets.join("notes.txt"), "mine").unwrap();
    for cell in book.cells_mut() {
        cell.outputs.retain(|o| !matches!(o, Output::Image(_)));
    }
    export(&book, &path).unwrap();
    let files = names_in(&assets);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.contains(&"notes.txt".to_owned()) && files.contains(svg));
}

#[test]
fn export_picks_the_format_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let book = common::every_output_book();
    export(&book, dir.path().join("a.HTML")).unwrap();
    export(&book, dir.path().join("a.ipynb")).unwrap();
    assert!(std::fs::read_to_string(dir.path().join("a.HTML"))
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    let notebook: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("a.ipynb")).unwrap())
            .unwrap();
    assert_eq!(notebook["nbformat"], 4);

    let error = export(&book, dir.path().join("a.pdf")).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown extension; use .html, .ipynb or .md"),
        "{error}"
    );
    assert!(export(&book, dir.path().join("no-extension")).is_err());
    assert!(!dir.path().join("a.pdf").exists());

    assert_eq!(
        ExportFormat::from_path(Path::new("x.Md")),
        Some(ExportFormat::Markdown)
    );
    assert_eq!(ExportFormat::from_path(Path::new("x.tritlab")), None);
}

#[test]
fn empty_workbooks_export_too() {
    let book = Workbook::new();
    assert!(to_html(&book).contains("<title>tritlab workbook</title>"));
    let notebook: Value = serde_json::from_str(&to_ipynb(&book)).unwrap();
    assert_eq!(notebook["cells"], serde_json::json!([]));
}
