//! Hints, highlighting and multi-line entry.

use tritlab_session::lang::*;
use TokenKind as T;

#[test]
fn hints_show_what_is_left_of_the_synopsis() {
    assert_eq!(
        hint("generate ").as_deref(),
        Some("PROMPT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--tracer PLUGIN] [--stop TEXT] [--greedy]")
    );
    // Given options drop out, and so do those they exclude.
    assert_eq!(
        hint("generate \"x\" --greedy --seed 3 ").as_deref(),
        Some("[--max-tokens N] [--tracer PLUGIN] [--stop TEXT]")
    );
    // Right after a word, the hint starts with the space it needs.
    assert_eq!(hint("seek").as_deref(), Some(" STEP"));
    assert_eq!(hint("seek 3"), None);
    assert_eq!(hint("step").as_deref(), Some(" [N]"));
    // A command or option being typed is finished first.
    assert_eq!(hint("lay").as_deref(), Some("ers"));
    assert_eq!(
        hint("repl").as_deref(),
        Some("ay open RUN_DIR | verify [--from A] [--to B] [--device DEVICE] | export STEP DIR")
    );
    assert_eq!(hint("generate \"x\" --max").as_deref(), Some("-tokens N"));
    assert_eq!(hint("generate \"x\" --gr").as_deref(), Some("eedy"));
    assert_eq!(hint("replay op").as_deref(), Some("en RUN_DIR"));
    assert_eq!(hint("log sh").as_deref(), Some("ow STEP"));
    assert_eq!(
        hint("replay v").as_deref(),
        Some("erify [--from A] [--to B] [--device DEVICE]")
    );
    assert_eq!(
        hint("replay verify").as_deref(),
        Some(" [--from A] [--to B] [--device DEVICE]")
    );
    assert_eq!(
        hint("generate \"x\" --t"),
        None,
        "several options start with --t"
    );
    assert_eq!(hint("s"), None, "several commands start with s");
    // An option waiting for its value shows the value first.
    assert!(hint("generate \"x\" --seed ")
        .unwrap()
        .starts_with("S [--max-tokens N]"));
    // Required options are unbracketed; `--resume` narrows `train` to its other form.
    let train = hint("train ").unwrap();
    assert!(
        train.starts_with("--data PATH [--val PATH]") && train.contains(" --out DIR "),
        "{train}"
    );
    assert_eq!(
        hint("train --resume runs/a ").as_deref(),
        Some("[--steps N] [--devices LIST]")
    );
    assert_eq!(
        hint("log ").as_deref(),
        Some("[RUN_DIR] | show STEP | plot SERIES")
    );
    assert_eq!(hint("log show ").as_deref(), Some("STEP"));
    assert_eq!(hint("plugin set gay-tracer ").as_deref(), Some("KEY VALUE"));
}

#[test]
fn no_hint_where_it_would_be_noise() {
    for line in [
        "",
        "   ",
        "info",
        "info ",
        "generte ",
        "generate \"unfinished",
        "info # comment",
        ":rust x",
        "info \\",
        "info\n",
    ] {
        assert_eq!(hint(line), None, "{line:?}");
    }
}

fn kinds(input: &str) -> Vec<(&str, TokenKind)> {
    highlight(input)
        .into_iter()
        .map(|(range, kind)| (&input[range], kind))
        .collect()
}

#[test]
fn highlighting_follows_the_parser() {
    assert_eq!(
        kinds("generate \"hi\" --seed=7 --max-tokens 9 --greedy # note"),
        [
            ("generate", T::Command),
            ("\"hi\"", T::String),
            ("--seed=", T::Option),
            ("7", T::Number),
            ("--max-tokens", T::Option),
            ("9", T::Number),
            ("--greedy", T::Option),
            ("# note", T::Comment),
        ]
    );
    assert_eq!(
        kinds("train --data corpus.txt --preset small --out runs/a"),
        [
            ("train", T::Command),
            ("--data", T::Option),
            ("corpus.txt", T::Path),
            ("--preset", T::Option),
            ("small", T::Plain),
            ("--out", T::Option),
            ("runs/a", T::Path),
        ]
    );
    assert_eq!(
        kinds("log show 3"),
        [
            ("log", T::Command),
            ("show", T::Subcommand),
            ("3", T::Number)
        ]
    );
    assert_eq!(
        kinds("load default"),
        [("load", T::Command), ("default", T::Plain)]
    );
    assert_eq!(
        kinds("load \"default\""),
        [("load", T::Command), ("\"default\"", T::Path)]
    );
    assert_eq!(
        kinds("help seek"),
        [("help", T::Command), ("seek", T::Command)]
    );
    assert_eq!(
        kinds("logits --ids 1,2,3"),
        [
            ("logits", T::Command),
            ("--ids", T::Option),
            ("1,2,3", T::Number)
        ]
    );
}

#[test]
fn highlighting_marks_what_the_parser_refuses() {
    assert_eq!(
        kinds("generte \"x\" 3"),
        [
            ("generte", T::Error),
            ("\"x\"", T::String),
            ("3", T::Number)
        ]
    );
    assert_eq!(
        kinds("train --steps ten --steps 3"),
        [
            ("train", T::Command),
            ("--steps", T::Option),
            ("ten", T::Error),
            ("--steps", T::Error),
            ("3", T::Number)
        ]
    );
    assert_eq!(
        kinds("info extra"),
        [("info", T::Command), ("extra", T::Error)]
    );
    assert_eq!(
        kinds("generate x --bogus"),
        [
            ("generate", T::Command),
            ("x", T::String),
            ("--bogus", T::Error)
        ]
    );
    assert_eq!(
        kinds("replay opn"),
        [("replay", T::Command), ("opn", T::Error)]
    );
    assert_eq!(
        kinds("generate \"a\\qb\""),
        [("generate", T::Command), ("\"a\\qb\"", T::Error)]
    );
    assert_eq!(
        kinds("generate x --greedy=1"),
        [
            ("generate", T::Command),
            ("x", T::String),
            ("--greedy=", T::Option),
            ("1", T::Error)
        ]
    );
    assert_eq!(
        kinds("generate -x"),
        [("generate", T::Command), ("-x", T::Error)]
    );
    // Text still being typed is coloured as what it will be.
    assert_eq!(
        kinds("load \"my mod"),
        [("load", T::Command), ("\"my mod", T::Path)]
    );
}

#[test]
fn highlighting_several_lines_and_rust() {
    let input = "seek 3 \\\n  # a comment\n:rust\nlet x = \"#\";\n:end\n:rust 1 + 1";
    assert_eq!(
        kinds(input),
        [
            ("seek", T::Command),
            ("3", T::Number),
            ("\\", T::Plain),
            ("# a comment", T::Comment),
            (":rust", T::Command),
            ("let x = \"#\";", T::Rust),
            (":end", T::Command),
            (":rust", T::Command),
            ("1 + 1", T::Rust),
        ]
    );
}

#[test]
fn multi_line_entry() {
    assert!(is_complete(""));
    assert!(is_complete("info"));
    assert!(
        is_complete("generte \"x\" --bogus"),
        "errors are complete: parsing reports them"
    );
    assert!(is_complete("generate \"a\nb\""));
    assert!(is_complete("generate \"x\" \\\n  --seed 3"));
    assert!(is_complete(":rust one line"));
    assert!(is_complete(":rust\nlet x = 1;\n:end"));
    assert!(
        is_complete("info # a comment \\"),
        "a comment does not continue"
    );

    assert!(!is_complete("generate \"a"));
    assert!(!is_complete("generate \"a\n"));
    assert!(!is_complete("generate \"a\\\""));
    assert!(!is_complete("info \\"));
    assert!(!is_complete("info \\  "));
    assert!(!is_complete("generate \"x\" \\\n  --seed 3 \\\n"));
    assert!(!is_complete(":rust"));
    assert!(!is_complete(":rust\nlet x = 1;\n"));
    assert!(!is_complete("info\n:rust\n  :en"));
}
