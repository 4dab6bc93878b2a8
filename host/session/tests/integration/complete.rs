//! Completion of commands, subcommands, options, choices, session names and paths.

use std::fs;
use std::path::{Path, PathBuf};

use tritlab_session::lang::*;

/// A session with a model, plugins of each kind and an open run, and its own working and home
/// directories.
#[derive(Default)]
struct Session {
    cwd: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl CompletionSource for Session {
    fn tensor_names(&self) -> Vec<String> {
        vec![
            "model.layers.0.mlp.down_proj.weight".into(),
            "model.norm.weight".into(),
        ]
    }
    fn layer_names(&self) -> Vec<String> {
        vec!["model.layers.0".into()]
    }
    fn plugin_names(&self, role: Option<PluginRole>) -> Vec<String> {
        let all = [
            ("gay-tracer", PluginRole::Tracer),
            ("triad-checker", PluginRole::Checker),
            ("trit-visualiser", PluginRole::Visualiser),
        ];
        all.iter()
            .filter(|(_, r)| role.is_none_or(|role| role == *r))
            .map(|(n, _)| n.to_string())
            .collect()
    }
    fn run_steps(&self) -> Vec<u64> {
        vec![0, 1, 2, 10, 11, 120]
    }
    fn current_dir(&self) -> Option<PathBuf> {
        self.cwd.clone()
    }
    fn home_dir(&self) -> Option<PathBuf> {
        self.home.clone()
    }
}

fn replacements(line: &str, source: &dyn CompletionSource) -> (usize, Vec<String>) {
    let completion = complete(line, line.len(), source);
    (
        completion.start,
        completion
            .candidates
            .into_iter()
            .map(|c| c.replacement)
            .collect(),
    )
}

fn words(line: &str) -> Vec<String> {
    replacements(line, &Session::default()).1
}

#[test]
fn commands() {
    let all = words("");
    assert_eq!(
        all.len(),
        COMMANDS.len() + 2,
        "every command and the `exit` and `convert` aliases: {all:?}"
    );
    assert_eq!(
        replacements("gen", &NoSource),
        (0, vec!["generate".to_string()])
    );
    assert_eq!(words("ex"), ["exit", "export"]);
    assert_eq!(words("  pl"), ["plugin", "plugins"]);
    assert_eq!(replacements("  pl", &NoSource).0, 2);
    assert_eq!(words(":r"), [":rust"]);
    assert!(words("zz").is_empty());
    // A new line of a multi-line entry starts a new command.
    assert_eq!(
        replacements("info\nse", &NoSource),
        (5, vec!["seek".to_string()])
    );

    let completion = complete("lay", 3, &NoSource);
    assert_eq!(completion.candidates[0].display, "layers");
    assert!(completion.candidates[0].description.contains("trit counts"));
}

#[test]
fn subcommands() {
    assert_eq!(words("replay "), ["open", "verify", "export"]);
    assert_eq!(words("replay v"), ["verify"]);
    assert_eq!(words("plugin "), ["load", "enable", "disable", "set"]);
    assert_eq!(
        replacements("log p", &NoSource),
        (4, vec!["plot".to_string()])
    );
    assert_eq!(words("log plot "), ["loss", "flips", "trits"]);
    assert_eq!(words("log plot f"), ["flips"]);
    assert!(words("replay bogus ").is_empty());
}

#[test]
fn options() {
    assert_eq!(
        words("generate \"x\" --t"),
        ["--temperature", "--top-k", "--top-p", "--tracer"]
    );
    assert_eq!(
        replacements("generate \"x\" --max", &NoSource),
        (13, vec!["--max-tokens".to_string()])
    );
    // Given options and those they exclude are not offered again.
    let after = words("generate \"x\" --seed 3 --greedy --");
    assert_eq!(after, ["--max-tokens", "--tracer", "--stop"]);
    assert_eq!(words("train --resume runs/a --"), ["--steps", "--devices"]);
    assert!(!words("train --data a --").contains(&"--resume".to_string()));
    // An empty word after the arguments offers the options.
    assert_eq!(words("check c ").first().map(String::as_str), Some("--on"));
    assert!(words("info ").is_empty());
    assert_eq!(words("generate \"x\" -"), words("generate \"x\" --"));

    let completion = complete("generate x --max", 16, &NoSource);
    assert!(completion.candidates[0].description.contains("default 64"));
}

#[test]
fn option_values() {
    assert_eq!(words("train --preset "), ["tiny", "small", "bitnet-2b4t"]);
    assert_eq!(words("train --quant g"), ["group"]);
    assert_eq!(words("train --kernels "), ["auto", "f32", "ternary"]);
    assert_eq!(words("train --kernels t"), ["ternary"]);
    assert_eq!(
        replacements("check c --on=w", &NoSource),
        (13, vec!["weights".to_string()])
    );
    assert_eq!(words("check c --on "), ["trace", "weights", "step"]);
    // Numbers and free text have nothing to offer.
    assert!(words("generate \"x\" --seed ").is_empty());
    // An argument still owed comes before the options.
    assert!(words("generate ").is_empty());
}

#[test]
fn session_names() {
    assert_eq!(
        words("show model."),
        [
            "model.layers.0.mlp.down_proj.weight",
            "model.norm.weight",
            "model.layers.0"
        ]
    );
    assert_eq!(words("generate \"x\" --tracer "), ["gay-tracer"]);
    assert_eq!(words("show w --with "), ["trit-visualiser"]);
    assert_eq!(words("check "), ["triad-checker"]);
    assert_eq!(
        words("plugin enable t"),
        ["triad-checker", "trit-visualiser"]
    );
    assert_eq!(words("plugin set gay-tracer "), Vec::<String>::new());
    assert_eq!(words("seek 1"), ["1", "10", "11", "120"]);
    assert_eq!(words("replay verify --from 12"), ["120"]);
    assert_eq!(words("help se"), ["seek"]);
    assert!(words("show w --step ").contains(&"0".to_string()));
}

/// `alpha.txt`, `alpine/`, `beta dir/`, `.hidden`, `notes/` with `a.md` inside.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("alpha.txt"), "").unwrap();
    fs::create_dir(dir.path().join("alpine")).unwrap();
    fs::create_dir(dir.path().join("beta dir")).unwrap();
    fs::write(dir.path().join(".hidden"), "").unwrap();
    fs::create_dir(dir.path().join("notes")).unwrap();
    fs::write(dir.path().join("notes/a.md"), "").unwrap();
    dir
}

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

#[test]
fn absolute_paths() {
    let dir = tree();
    let root = text(dir.path());
    let (start, got) = replacements(&format!("load {root}/al"), &NoSource);
    assert_eq!(start, 5);
    assert_eq!(
        got,
        [format!("{root}/alpha.txt"), format!("{root}/alpine/")]
    );

    let completion = complete(&format!("verify {root}/al"), 999, &NoSource);
    let shown: Vec<(&str, &str)> = completion
        .candidates
        .iter()
        .map(|c| (c.display.as_str(), c.description.as_str()))
        .collect();
    assert_eq!(shown, [("alpha.txt", "file"), ("alpine/", "directory")]);

    // Directories only where a directory is expected.
    let (_, got) = replacements(&format!("synth --out {root}/"), &NoSource);
    assert_eq!(
        got,
        [
            format!("{root}/alpine/"),
            format!("\"{root}/beta dir/"),
            format!("{root}/notes/")
        ]
    );
    let (_, got) = replacements(&format!("train --data x --out {root}/n"), &NoSource);
    assert_eq!(got, [format!("{root}/notes/")]);
    let (_, got) = replacements(&format!("plugin load {root}/notes/"), &NoSource);
    assert_eq!(got, [format!("{root}/notes/a.md")]);
}

#[test]
fn relative_hidden_quoted_and_home_paths() {
    let dir = tree();
    let session = Session {
        cwd: Some(dir.path().to_path_buf()),
        home: Some(dir.path().to_path_buf()),
    };
    assert_eq!(
        replacements("load al", &session).1,
        ["alpha.txt", "alpine/"]
    );
    assert_eq!(
        replacements("load ", &session).1,
        ["default", "alpha.txt", "alpine/", "\"beta dir/", "notes/"]
    );
    assert_eq!(replacements("load .", &session).1, [".hidden"]);
    assert_eq!(
        replacements("replay open notes/", &session).1,
        Vec::<String>::new()
    );
    assert_eq!(replacements("log n", &session).1, ["notes/"]);

    // Inside a string the replacement is quoted; a directory leaves the string open.
    let (start, got) = replacements("load \"beta", &session);
    assert_eq!((start, got), (5, vec!["\"beta dir/".to_string()]));
    assert_eq!(replacements("load \"alpha", &session).1, ["\"alpha.txt\""]);

    // `~` is the source's home directory, and stays `~` in what is typed.
    assert_eq!(
        replacements("load ~/al", &session).1,
        ["~/alpha.txt", "~/alpine/"]
    );
    assert_eq!(replacements("load ~", &session).1, ["~/"]);
    assert_eq!(
        replacements("load ~", &Session::default()).1,
        Vec::<String>::new()
    );

    // `--name=value` completes the value from after the `=`.
    let (start, got) = replacements("train --data=al", &session);
    assert_eq!(
        (start, got),
        (13, vec!["alpha.txt".to_string(), "alpine/".to_string()])
    );
}

#[test]
fn where_there_is_nothing_to_complete() {
    for line in [
        "info # a comm",
        "generate \"done\"",
        ":rust let x",
        "info \\",
        "generate \"x\" --stop=\"y\"",
    ] {
        assert!(words(line).is_empty(), "{line}");
    }
}

#[test]
fn cursor_in_the_middle_or_out_of_range() {
    let line = "generate \"x\" --se --greedy";
    let completion = complete(line, 17, &NoSource);
    assert_eq!(completion.start, 13);
    assert_eq!(
        completion
            .candidates
            .iter()
            .map(|c| c.replacement.as_str())
            .collect::<Vec<_>>(),
        ["--seed"]
    );
    // Past the end and inside a multi-byte character: clamped, no panic.
    let _ = complete("seek é", 100, &NoSource);
    let _ = complete("seek é", 6, &NoSource);
}
