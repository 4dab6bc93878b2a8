//! `docs/ARCHITECTURE.md` draws the crate graph; this keeps it true. Every edge the document
//! lists must be a dependency in the manifests, and every dependency between workspace crates
//! must be in the document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

type Graph = BTreeMap<String, BTreeSet<String>>;

const MARKER: &str = "<!-- crate graph: checked by host/app/tests/integration/architecture.rs -->";

fn documented(doc: &str) -> Graph {
    let start = doc
        .find(MARKER)
        .expect("docs/ARCHITECTURE.md marks its crate graph");
    let block = &doc[start + MARKER.len()..];
    let block = block
        .split_once("```text\n")
        .expect("a ```text block follows the marker")
        .1;
    let block = block.split_once("```").expect("the block ends").0;
    let mut graph = Graph::new();
    for line in block.lines().filter(|l| l.contains("->")) {
        let (from, to) = line.split_once("->").unwrap();
        let deps = to
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "(none)")
            .map(String::from)
            .collect();
        graph.insert(from.trim().to_string(), deps);
    }
    graph
}

fn manifests(root: &Path) -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(d))
                .map(String::from)
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_documented_crate_graph_is_the_real_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let documented = documented(&doc);
    let real = manifests(&root);
    let show = |g: &Graph| {
        g.iter()
            .map(|(k, v)| {
                let deps: Vec<&str> = v.iter().map(String::as_str).collect();
                let deps = if deps.is_empty() {
                    "(none)".to_string()
                } else {
                    deps.join(", ")
                };
                format!("{k} -> {deps}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        documented,
        real,
        "docs/ARCHITECTURE.md's crate graph is out of date; the manifests say:\n{}",
        show(&real)
    );
}
