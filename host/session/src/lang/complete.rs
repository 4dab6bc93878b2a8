//! Tab completion for the REPL and the workbench.
//!
//! Commands, subcommands, options and choices come from the command table; paths from the file
//! system; everything that only the running session knows (tensors, plugins, steps) from a
//! [`CompletionSource`] it implements. The token under the cursor is found with the same lexer
//! and analysis as the parser uses, so completion offers exactly what the parser accepts there.

use std::path::PathBuf;

use super::analyze::{analyze, Analysis};
use super::lexer::{lex, quote, word_or_quoted, Item, TokKind, Token};
use super::paths::complete_path;
use super::spec::{CommandSpec, OptionSpec, PluginRole, ValueKind};
use super::table::COMMANDS;
use super::value::is_number;

/// Names only the running session knows. Every method has an empty default, so a front end
/// implements what it has.
pub trait CompletionSource {
    /// Tensor names of the loaded model.
    fn tensor_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// Layer names of the loaded model (a layer name stands for that layer's weight).
    fn layer_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// Loaded plugins, all of them or those of one kind.
    fn plugin_names(&self, _role: Option<PluginRole>) -> Vec<String> {
        Vec::new()
    }
    /// Steps of the open run.
    fn run_steps(&self) -> Vec<u64> {
        Vec::new()
    }
    /// The directory relative paths are completed against; the process's own if `None`.
    fn current_dir(&self) -> Option<PathBuf> {
        None
    }
    /// The directory `~` stands for; `$HOME` by default.
    fn home_dir(&self) -> Option<PathBuf> {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    }
}

/// A source that knows nothing beyond the command table and the file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSource;

impl CompletionSource for NoSource {}

/// One way to complete the word under the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The text that replaces `line[start..cursor]`, quoted where needed.
    pub replacement: String,
    /// What a menu shows (a directory's name rather than its whole path, for instance).
    pub display: String,
    /// A short description for the menu; may be empty.
    pub description: String,
}

/// The candidates for the word under the cursor, which starts at byte `start` of the line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    pub start: usize,
    pub candidates: Vec<Candidate>,
}

/// Completes the word that ends at byte `cursor` of `line` (clamped to the line and to a
/// character boundary). `line` may hold earlier lines of a multi-line entry.
pub fn complete(line: &str, cursor: usize, source: &dyn CompletionSource) -> Completion {
    let mut cursor = cursor.min(line.len());
    while !line.is_char_boundary(cursor) {
        cursor -= 1;
    }
    let before = &line[..cursor];
    let nothing = Completion {
        start: cursor,
        candidates: Vec::new(),
    };

    let items = lex(before);
    let starts_fresh = |item: &Item| before.ends_with('\n') && !item.is_open();
    let tokens = match items.last() {
        None => &[][..],
        Some(item) if starts_fresh(item) => &[][..],
        Some(Item::Rust { .. }) => return nothing,
        Some(Item::Line {
            dangling_backslash: Some(_),
            ..
        }) => return nothing,
        Some(Item::Line { tokens, .. }) => &tokens[..],
    };

    // The token being typed, if the cursor touches one; otherwise a new, empty word.
    let (current, preceding) = match tokens.split_last() {
        Some((last, rest)) if last.span.end == cursor => match &last.kind {
            TokKind::Comment => return nothing,
            TokKind::Str { closed: true, .. } => return nothing,
            TokKind::Opt {
                value: Some(value), ..
            } if matches!(value.kind, TokKind::Str { closed: true, .. }) => return nothing,
            _ => (Some(last), rest),
        },
        _ => (None, tokens),
    };
    let analysis = analyze(preceding);
    let word = Word::of(current, cursor);

    if analysis.tokens.is_empty() {
        return match current.map(|t| &t.kind) {
            None | Some(TokKind::Bare(_)) => word.finish(command_candidates(&word.typed)),
            _ => nothing,
        };
    }

    // `--name=value`: the value after the `=`.
    if let Some(TokKind::Opt {
        name,
        value: Some(value),
        ..
    }) = current.map(|t| &t.kind)
    {
        let option = analysis.spec.and_then(|spec| spec.option(name));
        let Some(option) = option else { return nothing };
        let word = Word::of(Some(value), cursor);
        return word.finish(value_candidates(&option.kind, &word, source));
    }

    if let Some(option) = analysis.pending {
        return word.finish(value_candidates(&option.kind, &word, source));
    }
    let Some(spec) = analysis.spec else {
        // Unknown command, or `replay <TAB>`-style subcommand still to come.
        return match analysis.top {
            Some(top) if analysis.awaiting_subcommand() => {
                word.finish(subcommand_candidates(top, &word.typed))
            }
            _ => nothing,
        };
    };

    // `--na`, or a lone `-` on its way to becoming an option (not a negative number).
    let typing_option =
        word.is_option || (word.typed.starts_with('-') && !word.quoted && !is_number(&word.typed));
    if typing_option {
        return word.finish(option_candidates(spec, &analysis, &word.typed));
    }

    let mut candidates = Vec::new();
    if analysis.awaiting_subcommand() {
        if let Some(top) = analysis.top {
            candidates.extend(subcommand_candidates(top, &word.typed));
        }
    }
    let next = analysis.next_positional();
    if let Some(arg) = next {
        candidates.extend(value_candidates(&arg.kind, &word, source));
    }
    // Options only once no argument is owed, so `check <TAB>` lists checkers alone.
    if word.typed.is_empty() && !word.quoted && next.is_none_or(|arg| !arg.required) {
        candidates.extend(option_candidates(spec, &analysis, ""));
    }
    word.finish(candidates)
}

/// The word being completed.
struct Word {
    /// Where its replacement starts.
    start: usize,
    /// What is typed so far, with escapes resolved inside a string.
    typed: String,
    /// Whether it is an (unclosed) string.
    quoted: bool,
    /// Whether it is an option token (`--na`).
    is_option: bool,
}

impl Word {
    fn of(token: Option<&Token>, cursor: usize) -> Word {
        match token {
            None => Word {
                start: cursor,
                typed: String::new(),
                quoted: false,
                is_option: false,
            },
            Some(token) => {
                let (typed, quoted, is_option) = match &token.kind {
                    TokKind::Bare(text) => (text.clone(), false, false),
                    TokKind::Str { value, .. } => (value.clone(), true, false),
                    TokKind::Opt { name, .. } => (format!("--{name}"), false, true),
                    TokKind::Comment => (String::new(), false, false),
                };
                Word {
                    start: token.span.start,
                    typed,
                    quoted,
                    is_option,
                }
            }
        }
    }

    fn finish(&self, proposals: Vec<Proposal>) -> Completion {
        let candidates = proposals
            .into_iter()
            .filter(|p| p.value.starts_with(&self.typed))
            .map(|p| {
                let replacement = if self.quoted || p.needs_quotes() {
                    let quoted = quote(&p.value);
                    // Leave a directory's string open, so completion can go on inside it.
                    if p.open_ended {
                        quoted[..quoted.len() - 1].to_string()
                    } else {
                        quoted
                    }
                } else {
                    p.value.clone()
                };
                Candidate {
                    replacement,
                    display: p.display,
                    description: p.description,
                }
            })
            .collect();
        Completion {
            start: self.start,
            candidates,
        }
    }
}

/// A completion before quoting.
struct Proposal {
    value: String,
    display: String,
    description: String,
    /// A directory: more can follow.
    open_ended: bool,
    /// A word from the command table (command, subcommand, option, choice), typed as is.
    verbatim: bool,
}

impl Proposal {
    fn new(value: impl Into<String>, description: impl Into<String>) -> Proposal {
        let value = value.into();
        Proposal {
            display: value.clone(),
            value,
            description: description.into(),
            open_ended: false,
            verbatim: false,
        }
    }

    /// A word of the command table, which never needs quotes (`:rust` included).
    fn table_word(value: &'static str, description: impl Into<String>) -> Proposal {
        Proposal {
            verbatim: true,
            ..Proposal::new(value, description)
        }
    }

    fn needs_quotes(&self) -> bool {
        !self.verbatim && word_or_quoted(&self.value) != self.value
    }
}

fn command_candidates(typed: &str) -> Vec<Proposal> {
    let mut out: Vec<Proposal> = COMMANDS
        .iter()
        .flat_map(|c| {
            std::iter::once(Proposal::table_word(c.name, c.summary)).chain(
                c.aliases
                    .iter()
                    .map(move |a| Proposal::table_word(a, format!("same as `{}`", c.name))),
            )
        })
        .filter(|p| p.value.starts_with(typed))
        .collect();
    out.sort_by(|a, b| a.value.cmp(&b.value));
    out
}

fn subcommand_candidates(top: &CommandSpec, typed: &str) -> Vec<Proposal> {
    top.subcommands
        .iter()
        .filter(|s| s.name.starts_with(typed))
        .map(|s| Proposal::table_word(s.name, s.summary))
        .collect()
}

/// The options still allowed: not given yet and not excluded by one that was.
fn option_candidates(spec: &CommandSpec, analysis: &Analysis<'_>, typed: &str) -> Vec<Proposal> {
    spec.options
        .iter()
        .filter(|o| {
            !analysis
                .used
                .iter()
                .any(|u| std::ptr::eq(*u, *o) || u.conflicts_with(o))
        })
        .map(|o| Proposal {
            verbatim: true,
            ..Proposal::new(o.flag_text(), option_description(o))
        })
        .filter(|p| p.value.starts_with(typed))
        .collect()
}

fn option_description(option: &OptionSpec) -> String {
    match option.default {
        Some(default) => format!("{} (default {default})", option.summary),
        None => option.summary.to_string(),
    }
}

fn value_candidates(kind: &ValueKind, word: &Word, source: &dyn CompletionSource) -> Vec<Proposal> {
    let paths = |dirs_only: bool| {
        let cwd = source.current_dir();
        let home = source.home_dir();
        complete_path(&word.typed, dirs_only, cwd.as_deref(), home.as_deref())
            .into_iter()
            .map(|p| Proposal {
                value: p.text,
                display: p.name,
                description: if p.is_dir { "directory" } else { "file" }.into(),
                open_ended: p.is_dir,
                verbatim: false,
            })
            .collect::<Vec<_>>()
    };
    match kind {
        ValueKind::Choice(names) => names.iter().map(|n| Proposal::table_word(n, "")).collect(),
        ValueKind::Path => paths(false),
        ValueKind::Dir => paths(true),
        ValueKind::Model => {
            let mut out = Vec::new();
            if !word.quoted {
                out.push(Proposal::table_word("default", "the bundled default model"));
            }
            out.extend(paths(false));
            out
        }
        ValueKind::Tensor => {
            let tensors = source
                .tensor_names()
                .into_iter()
                .map(|n| Proposal::new(n, "tensor"));
            let layers = source
                .layer_names()
                .into_iter()
                .map(|n| Proposal::new(n, "layer"));
            tensors.chain(layers).collect()
        }
        ValueKind::Plugin(role) => {
            let description = match role {
                None => "plugin",
                Some(PluginRole::Tracer) => "tracer",
                Some(PluginRole::Checker) => "checker",
                Some(PluginRole::Visualiser) => "visualiser",
            };
            source
                .plugin_names(*role)
                .into_iter()
                .map(|n| Proposal::new(n, description))
                .collect()
        }
        ValueKind::Step => source
            .run_steps()
            .into_iter()
            .map(|s| Proposal::new(s.to_string(), "step"))
            .collect(),
        ValueKind::Command => command_candidates(""),
        ValueKind::Flag
        | ValueKind::Text
        | ValueKind::Name
        | ValueKind::Int { .. }
        | ValueKind::Float { .. }
        | ValueKind::TokenIds
        | ValueKind::Code => Vec::new(),
    }
}
