//! The examples in workbooks/README.md, the format's specification, read as the spec says.

use tritlab_workbook::{Block, CellKind, Image, MemoryAssets, Output, Rgb, Trit, Workbook};

const SPEC: &str = include_str!("../../../../workbooks/README.md");
const FOLDER: &str = "first-look.tritlab.assets";

/// The bodies of the spec's ````markdown blocks.
fn markdown_examples() -> Vec<String> {
    let mut examples = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in SPEC.lines() {
        match (&mut current, line) {
            (None, "````markdown") => current = Some(Vec::new()),
            (Some(lines), "````") => {
                examples.push(lines.join("\n") + "\n");
                current = None;
            }
            (Some(lines), line) => lines.push(line),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated example in the spec");
    examples
}

/// The 3×1 image the spec describes pixel by pixel.
fn spec_image() -> Image {
    Image::new(
        3,
        1,
        vec![214, 39, 40, 255, 200, 200, 200, 255, 31, 119, 180, 255],
    )
    .unwrap()
}

fn spec_assets() -> MemoryAssets {
    let image = spec_image();
    let mut assets = MemoryAssets::new();
    assets.insert(
        format!("{FOLDER}/{}.png", image.content_hash()),
        image.to_png().unwrap(),
    );
    assets
}

#[test]
fn the_example_reads_as_described() {
    let examples = markdown_examples();
    assert_eq!(examples.len(), 1);
    let book = Workbook::parse_with_assets(&examples[0], &spec_assets()).unwrap();

    let cells: Vec<_> = book.cells().collect();
    assert_eq!(cells.len(), 5);
    let kinds: Vec<Vec<&str>> = cells
        .iter()
        .map(|cell| cell.outputs.iter().map(|o| o.kind().name()).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec!["table"],
            vec!["image"],
            vec!["trace", "text"],
            vec!["plot"],
            vec!["error"]
        ]
    );
    let ids: Vec<Option<&str>> = cells
        .iter()
        .map(|c| c.id.as_ref().map(|id| id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [Some("info"), Some("row-map"), Some("generate"), None, None]
    );
    assert_eq!(cells[3].kind, CellKind::Rust);
    assert_eq!(
        cells[3].source,
        "let losses = [2.9, 2.4, 2.2];\nplot(\"loss\", &losses);"
    );
    assert_eq!(cells[0].source_line(), Some(7));

    let Block::Prose(first) = &book.blocks[0] else {
        panic!("prose first")
    };
    assert!(first.starts_with("# A first look"), "{first}");

    let Output::Image(image) = &cells[1].outputs[0] else {
        panic!()
    };
    assert_eq!(image.rgba(), spec_image().rgba());
    assert_eq!(image.title(), Some("Row 0 of q_proj"));

    let Output::Trace(trace) = &cells[2].outputs[0] else {
        panic!()
    };
    assert_eq!(trace.text(), "To be,");
    assert_eq!(trace.tokens[0].rgb, Some(Rgb([0xd6, 0x27, 0x28])));
    assert_eq!(trace.tokens[0].trit, Some(Trit::Negative));
    assert_eq!(trace.tokens[1].note.as_deref(), Some("prompt"));

    let Output::Plot(plot) = &cells[3].outputs[0] else {
        panic!()
    };
    assert_eq!(plot.series.len(), 2);
    assert!(plot.series[1].points[1][1].is_nan(), "null is a gap");

    let Output::Error(message) = &cells[4].outputs[0] else {
        panic!()
    };
    assert!(message.starts_with("cannot open missing-model"));
}

#[test]
fn the_example_is_in_canonical_shape() {
    let example = &markdown_examples()[0];
    let book = Workbook::parse_with_assets(example, &spec_assets()).unwrap();
    assert_eq!(&book.render(FOLDER).text, example);
}

#[test]
fn the_spec_states_the_hash_recipe_the_code_uses() {
    let image = spec_image();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"tritlab-image-v1\0");
    hasher.update(&3u32.to_le_bytes());
    hasher.update(&1u32.to_le_bytes());
    hasher.update(image.rgba());
    let digest: String = hasher.finalize().as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(image.content_hash(), digest);
    assert!(SPEC.contains(&format!("{FOLDER}/{digest}.png \"output image\")")));
}

#[test]
fn the_version_line_in_the_spec_is_the_one_the_code_writes() {
    assert!(SPEC.contains(&format!("```text\n{}\n```", tritlab_workbook::VERSION_LINE)));
    assert!(Workbook::new()
        .render("x")
        .text
        .starts_with(tritlab_workbook::VERSION_LINE));
}
