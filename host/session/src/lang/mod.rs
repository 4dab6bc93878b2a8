//! The tritlab command language: syntax only.
//!
//! One command per line, the same in the REPL, the workbench and workbooks:
//!
//! ```
//! use tritlab_session::lang::{parse, Command};
//!
//! let command = parse("generate \"To be\" --max-tokens 16 --seed 7").unwrap();
//! let Command::Generate(generate) = &command else { unreachable!() };
//! assert_eq!((generate.max_tokens, generate.seed), (16, 7));
//! assert_eq!(generate.temperature, 0.8); // the default, filled in
//! assert_eq!(command.to_string(), "generate \"To be\" --max-tokens 16 --seed 7");
//!
//! let error = parse("generte \"hi\"").unwrap_err();
//! assert_eq!(error.suggestion.as_deref(), Some("generate"));
//! assert_eq!(
//!     error.render("generte \"hi\""),
//!     "generte \"hi\"\n^^^^^^^ unknown command `generte`; did you mean `generate`?"
//! );
//! ```
//!
//! Everything about the commands (names, arguments, options, types, ranges, defaults, help
//! text, examples) lives in one table, [`COMMANDS`]. The parser validates against it, `help`
//! and `docs/COMMANDS.md` are written from it, and completion, hints and highlighting read it,
//! so none of them can disagree. Running commands is not this module's business: it turns text
//! into [`Command`] values and helps people type that text.
//!
//! The pieces:
//! - lexer: words, numbers, strings, options, lists, comments, continuations, `:rust` snippets;
//! - analyze: which token is the command, a subcommand, an option, its value or an argument;
//! - parser, collect, build: [`parse`] and [`parse_script`], the checks, the typed commands;
//! - render: `Display` for [`Command`], the canonical text that parses back to the same value;
//! - help, complete, hint, highlight: the front ends' helpers.

mod analyze;
mod ast;
mod build;
mod collect;
mod complete;
mod error;
mod help;
mod highlight;
mod hint;
mod lexer;
mod parser;
mod paths;
mod render;
mod spec;
mod suggest;
mod table;
mod value;

pub use ast::{
    Back, Bench, Chat, Check, CheckTarget, Command, EmbedType, Eval, EvalPpl, Export, ExportFormat,
    Generate, GenerationOptions, HeadPrecision, Help, Load, Log, Logits, LogitsInput, ModelRef,
    Packing, PlotSeries, Plugin, Preset, ProductKernels, Replay, ScaleGranularity, Seek, Show,
    Step, Synth, SynthShape, TokenizerSource, Train, TrainResume, TrainShape, TrainStart, Verify,
    DEFAULT_TOKENIZER_VOCAB,
};
pub use complete::{complete, Candidate, Completion, CompletionSource, NoSource};
pub use error::{ParseError, ParseErrorKind};
pub use help::{help_command, help_index, reference_markdown};
pub use highlight::{highlight, TokenKind};
pub use hint::hint;
pub use parser::{parse, parse_script, Statement};
pub use paths::expand_tilde;
pub use render::line_from_words;
pub use spec::{
    ArgSpec, CommandId, CommandSpec, Example, OptionSpec, PluginRole, Presence, Topic, ValueKind,
};
pub use suggest::{closest, edit_distance};
pub use table::{find_command, spec_of, COMMANDS};

/// Whether `input` is a whole entry, or the front end should read another line first: `false`
/// inside an unterminated string, after a line-continuation `\` and inside a `:rust` block that
/// has no `:end` yet. Input with errors is complete: parsing it reports them.
pub fn is_complete(input: &str) -> bool {
    lexer::lex(input).last().is_none_or(|item| !item.is_open())
}
