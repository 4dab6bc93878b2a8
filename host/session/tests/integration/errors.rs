//! Every kind of mistake is reported at the right place, with the right suggestion.

use tritlab_session::lang::{parse, parse_script, ParseErrorKind as K};

/// `(input, kind, line, column, suggestion, words the message must contain)`.
type Case = (
    &'static str,
    K,
    usize,
    usize,
    Option<&'static str>,
    &'static str,
);

const CASES: &[Case] = &[
    // names
    (
        "generte \"hi\"",
        K::UnknownCommand,
        1,
        1,
        Some("generate"),
        "unknown command `generte`",
    ),
    (
        "gnereate \"hi\"",
        K::UnknownCommand,
        1,
        1,
        Some("generate"),
        "gnereate",
    ),
    ("Info", K::UnknownCommand, 1, 1, Some("info"), "Info"),
    ("xyzzy", K::UnknownCommand, 1, 1, None, "xyzzy"),
    ("\"info\"", K::UnknownCommand, 1, 1, None, "found a string"),
    (
        "--seed 3",
        K::UnknownCommand,
        1,
        1,
        None,
        "found the option `--seed`",
    ),
    (
        "  plugns",
        K::UnknownCommand,
        1,
        3,
        Some("plugins"),
        "plugns",
    ),
    (":rst x", K::UnknownCommand, 1, 1, Some(":rust"), ":rst"),
    (
        "help generte",
        K::UnknownCommand,
        1,
        6,
        Some("generate"),
        "generte",
    ),
    (
        "replay opn runs/a",
        K::UnknownSubcommand,
        1,
        8,
        Some("open"),
        "open, verify, export",
    ),
    (
        "plugin enabel gay-tracer",
        K::UnknownSubcommand,
        1,
        8,
        Some("enable"),
        "enabel",
    ),
    (
        "replay --from 3",
        K::UnknownSubcommand,
        1,
        8,
        None,
        "needs a subcommand",
    ),
    (
        "log shw 5",
        K::UnknownSubcommand,
        1,
        5,
        Some("show"),
        "./shw",
    ),
    (
        "log plt loss",
        K::UnknownSubcommand,
        1,
        5,
        Some("plot"),
        "plt",
    ),
    (
        "replay",
        K::MissingSubcommand,
        1,
        7,
        None,
        "open, verify, export",
    ),
    (
        "plugin   # what now",
        K::MissingSubcommand,
        1,
        7,
        None,
        "load, enable, disable, set",
    ),
    // options
    (
        "generate \"x\" --max-token 5",
        K::UnknownOption,
        1,
        14,
        Some("--max-tokens"),
        "--max-token",
    ),
    (
        "generate \"x\" --temprature 1",
        K::UnknownOption,
        1,
        14,
        Some("--temperature"),
        "has no option",
    ),
    (
        "generate \"x\" --bogus",
        K::UnknownOption,
        1,
        14,
        None,
        "--bogus",
    ),
    (
        "info --json",
        K::UnknownOption,
        1,
        6,
        None,
        "takes no options",
    ),
    (
        "generate \"x\" -- 3",
        K::UnknownOption,
        1,
        14,
        None,
        "option name",
    ),
    (
        "generate \"x\" -seed 3",
        K::SingleDash,
        1,
        14,
        Some("--seed"),
        "start with `--`",
    ),
    (
        "generate \"x\" --seed 1 --seed 2",
        K::RepeatedOption,
        1,
        23,
        None,
        "already given (line 1, column 14)",
    ),
    (
        "generate \"x\" --seed=1 --seed=1",
        K::RepeatedOption,
        1,
        23,
        None,
        "--seed",
    ),
    (
        "generate \"x\" --greedy --temperature 0.1",
        K::ConflictingOptions,
        1,
        23,
        None,
        "`--temperature` cannot be used with `--greedy`",
    ),
    (
        "generate \"x\" --top-p 0.5 --greedy",
        K::ConflictingOptions,
        1,
        26,
        None,
        "--greedy",
    ),
    (
        "train --resume r --data x",
        K::ConflictingOptions,
        1,
        18,
        None,
        "--resume",
    ),
    (
        "train --data d --tokenizer t.json --train-tokenizer 100 --out o",
        K::ConflictingOptions,
        1,
        35,
        None,
        "--train-tokenizer",
    ),
    (
        "logits \"a\" --ids 1",
        K::ConflictingOptions,
        1,
        18,
        None,
        "either a PROMPT or `--ids`",
    ),
    (
        "generate \"x\" --greedy=yes",
        K::UnexpectedValue,
        1,
        14,
        None,
        "takes no value",
    ),
    (
        "generate \"x\" --stop",
        K::MissingValue,
        1,
        14,
        None,
        "TEXT",
    ),
    (
        "generate \"x\" --seed --greedy",
        K::MissingValue,
        1,
        14,
        None,
        "--seed",
    ),
    (
        "generate \"x\" --seed=",
        K::MissingValue,
        1,
        14,
        None,
        "--seed",
    ),
    // missing things
    ("generate", K::MissingArgument, 1, 9, None, "PROMPT"),
    (
        "generate --seed 3",
        K::MissingArgument,
        1,
        18,
        None,
        "PROMPT",
    ),
    ("seek", K::MissingArgument, 1, 5, None, "STEP"),
    (
        "replay export 3",
        K::MissingArgument,
        1,
        16,
        None,
        "`replay export` needs DIR",
    ),
    (
        "plugin set gay-tracer seed",
        K::MissingArgument,
        1,
        27,
        None,
        "VALUE",
    ),
    (
        "logits --top 3",
        K::MissingArgument,
        1,
        15,
        None,
        "PROMPT or `--ids",
    ),
    (
        "train --data d",
        K::MissingOption,
        1,
        15,
        None,
        "`--out DIR` (or `--resume`)",
    ),
    ("train --out o", K::MissingOption, 1, 14, None, "--data"),
    ("train", K::MissingOption, 1, 6, None, "--data"),
    // extra arguments
    (
        "info extra",
        K::UnexpectedArgument,
        1,
        6,
        None,
        "takes no arguments",
    ),
    (
        "generate hello world",
        K::UnexpectedArgument,
        1,
        16,
        None,
        "quotes",
    ),
    (
        "seek 1 2",
        K::UnexpectedArgument,
        1,
        8,
        None,
        "takes one argument, STEP",
    ),
    (
        "plugin set a b c d",
        K::UnexpectedArgument,
        1,
        18,
        None,
        "NAME KEY VALUE",
    ),
    ("clear -x", K::SingleDash, 1, 7, None, "-x"),
    // types and ranges
    (
        "train --data d --out o --steps ten",
        K::InvalidValue,
        1,
        32,
        None,
        "`--steps` expects an integer, found `ten`",
    ),
    (
        "train --data d --out o --steps 1.5",
        K::InvalidValue,
        1,
        32,
        None,
        "integer",
    ),
    (
        "train --data d --out o --steps -3",
        K::OutOfRange,
        1,
        32,
        None,
        "at least 1",
    ),
    (
        "train --data d --out o --steps 0",
        K::OutOfRange,
        1,
        32,
        None,
        "at least 1",
    ),
    (
        "train --data d --out o --seq 4294967296",
        K::OutOfRange,
        1,
        30,
        None,
        "--seq",
    ),
    (
        "train --data d --out o --steps 99999999999999999999999",
        K::OutOfRange,
        1,
        32,
        None,
        "--steps",
    ),
    (
        "train --data d --out o --lr 0",
        K::OutOfRange,
        1,
        29,
        None,
        "greater than 0",
    ),
    (
        "train --data d --out o --lr fast",
        K::InvalidValue,
        1,
        29,
        None,
        "a number",
    ),
    (
        "train --data d --out o --lr inf",
        K::InvalidValue,
        1,
        29,
        None,
        "a number",
    ),
    (
        "train --data d --out o --lr 1e99",
        K::OutOfRange,
        1,
        29,
        None,
        "greater than 0",
    ),
    (
        "train --preset smal --data d --out o",
        K::InvalidValue,
        1,
        16,
        Some("small"),
        "one of tiny, small",
    ),
    (
        "train --data d --out o --quant=grop",
        K::InvalidValue,
        1,
        32,
        Some("group"),
        "--quant",
    ),
    (
        "train --data d --out o --train-tokenizer 1",
        K::OutOfRange,
        1,
        42,
        None,
        "at least 2",
    ),
    (
        "train --data \"\" --out o",
        K::InvalidValue,
        1,
        14,
        None,
        "cannot be empty",
    ),
    (
        "generate \"x\" --top-p 1.5",
        K::OutOfRange,
        1,
        22,
        None,
        "in (0, 1]",
    ),
    (
        "generate \"x\" --top-p 0",
        K::OutOfRange,
        1,
        22,
        None,
        "in (0, 1]",
    ),
    (
        "generate \"x\" --temperature -0.5",
        K::OutOfRange,
        1,
        28,
        None,
        "at least 0",
    ),
    (
        "generate \"x\" --top-k 0",
        K::OutOfRange,
        1,
        22,
        None,
        "--top-k",
    ),
    (
        "generate \"x\" --max-tokens many",
        K::InvalidValue,
        1,
        27,
        None,
        "--max-tokens",
    ),
    ("seek -1", K::OutOfRange, 1, 6, None, "at least 0"),
    ("step 0", K::OutOfRange, 1, 6, None, "at least 1"),
    ("back two", K::InvalidValue, 1, 6, None, "integer"),
    (
        "log plot los",
        K::InvalidValue,
        1,
        10,
        Some("loss"),
        "loss, flips, trits",
    ),
    (
        "check triad-checker --on wieghts",
        K::InvalidValue,
        1,
        26,
        Some("weights"),
        "trace, weights, step",
    ),
    (
        "logits --ids 1,,3",
        K::InvalidValue,
        1,
        16,
        None,
        "empty item",
    ),
    ("logits --ids 1,x,3", K::InvalidValue, 1, 16, None, "`x`"),
    (
        "logits --ids 1,2,",
        K::InvalidValue,
        1,
        18,
        None,
        "empty item",
    ),
    (
        "logits --ids=5,4294967296",
        K::OutOfRange,
        1,
        16,
        None,
        "4294967296",
    ),
    (
        "replay verify --from 5 --to 2",
        K::OutOfRange,
        1,
        29,
        None,
        "comes before",
    ),
    ("show \"\"", K::InvalidValue, 1, 6, None, "cannot be empty"),
    // lexical
    (
        "generate \"abc",
        K::UnterminatedString,
        1,
        10,
        None,
        "closing",
    ),
    ("generate \"a\\qb\"", K::BadEscape, 1, 12, None, "\\q"),
    (
        "generate \"x\" --stop=\"a\\zb\"",
        K::BadEscape,
        1,
        23,
        None,
        "\\z",
    ),
    ("info \\", K::DanglingBackslash, 1, 6, None, "continues"),
    (":rust\nlet x = 1;", K::UnterminatedRust, 1, 1, None, ":end"),
    // input shape
    ("", K::Empty, 1, 1, None, "expected a command"),
    (
        "  # only a comment\n\n",
        K::Empty,
        3,
        1,
        None,
        "expected a command",
    ),
    ("info\nlayers", K::TrailingInput, 2, 1, None, "second"),
    // positions on later lines and after multi-byte characters
    (
        "generate \"héllo wörld\" \\\n  --seed x",
        K::InvalidValue,
        2,
        10,
        None,
        "--seed",
    ),
    (
        "generate \"line one\nline two\" --sed 1",
        K::UnknownOption,
        2,
        11,
        Some("--seed"),
        "--sed",
    ),
    (
        "generate \"é\" --top-k -1",
        K::OutOfRange,
        1,
        22,
        None,
        "--top-k",
    ),
    ("\tinfo x", K::UnexpectedArgument, 1, 7, None, "`x`"),
];

#[test]
fn every_error_case_points_at_the_offending_token() {
    let mut failures = Vec::new();
    for &(input, kind, line, column, suggestion, words) in CASES {
        match parse(input) {
            Ok(command) => failures.push(format!("{input:?}: parsed as {command:?}")),
            Err(e) => {
                let got = (e.kind, e.line, e.column, e.suggestion.as_deref());
                if got != (kind, line, column, suggestion) || !e.message.contains(words) {
                    failures.push(format!(
                        "{input:?}: expected {:?}, got {got:?}: {}",
                        (kind, line, column, suggestion, words),
                        e.message
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn spans_agree_with_columns() {
    for &(input, ..) in CASES {
        let Err(e) = parse(input) else { continue };
        assert!(
            e.span.start <= e.span.end && e.span.end <= input.len(),
            "{input:?}: {:?}",
            e.span
        );
        let before = &input[..e.span.start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        assert_eq!(
            e.column,
            before[line_start..].chars().count() + 1,
            "{input:?}"
        );
        assert_eq!(e.line, before.matches('\n').count() + 1, "{input:?}");
    }
}

#[test]
fn render_draws_the_line_and_a_caret() {
    let input = "generte \"hi\"";
    let e = parse(input).unwrap_err();
    assert_eq!(
        e.render(input),
        "generte \"hi\"\n^^^^^^^ unknown command `generte`; did you mean `generate`?"
    );
    assert_eq!(
        e.to_string(),
        "line 1, column 1: unknown command `generte`; did you mean `generate`?"
    );

    let input = "train --data d --out o --steps ten";
    assert_eq!(
        parse(input).unwrap_err().render(input),
        "train --data d --out o --steps ten\n                               ^^^ `--steps` expects an integer, found `ten`"
    );

    let input = "info\nseek x\n";
    let e = parse_script(input).unwrap_err();
    assert_eq!(
        e.render(input),
        "2 | seek x\n  |      ^ `STEP` expects an integer, found `x`"
    );
}

#[test]
fn scripts_stop_at_the_first_error_and_say_which_line() {
    let e =
        parse_script("info\n\n# fine so far\ngenerate \"x\" --seed -1\nnot reached\n").unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (K::OutOfRange, 4, 21));
}
