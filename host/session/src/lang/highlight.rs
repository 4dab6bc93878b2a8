//! Syntax colouring: what each part of the input is, by byte range.

use std::ops::Range;

use super::analyze::{analyze, Role};
use super::lexer::{lex, Item, TokKind, Token};
use super::spec::{OptionSpec, ValueKind};
use super::value::{check, is_number};

/// What a highlighted range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A command name, `:rust` and `:end`, and command names given to `help`.
    Command,
    Subcommand,
    /// `--name` (with its `=` when the value is attached).
    Option,
    /// Quoted strings and free text.
    String,
    Number,
    /// File and directory arguments.
    Path,
    Comment,
    /// Something the parser will refuse: an unknown name, a value of the wrong type or out of
    /// range, an argument too many, a bad escape.
    Error,
    /// Words with no colour of their own: names, choices, line-continuation backslashes.
    Plain,
    /// The code of a Rust snippet.
    Rust,
}

/// Ranges of `input` with their kinds, in order, never overlapping and never empty. Every
/// character that is not a blank lies in one. Works on any input, finished or not, and on
/// several lines.
pub fn highlight(input: &str) -> Vec<(Range<usize>, TokenKind)> {
    let mut out = Vec::new();
    for item in lex(input) {
        match item {
            Item::Rust {
                keyword,
                code_span,
                end,
                ..
            } => {
                out.push((keyword, TokenKind::Command));
                out.push((code_span, TokenKind::Rust));
                if let Some(end) = end {
                    out.push((end, TokenKind::Command));
                }
            }
            Item::Line {
                tokens,
                continuations,
                dangling_backslash,
                ..
            } => {
                line(&tokens, &mut out);
                let backslashes = continuations.into_iter().chain(dangling_backslash);
                out.extend(backslashes.map(|at| (at..at + 1, TokenKind::Plain)));
            }
        }
    }
    out.retain(|(range, _)| !range.is_empty());
    out.sort_by_key(|(range, _)| range.start);
    out
}

fn line(tokens: &[Token], out: &mut Vec<(Range<usize>, TokenKind)>) {
    out.extend(
        tokens
            .iter()
            .filter(|t| t.is_comment())
            .map(|t| (t.span.clone(), TokenKind::Comment)),
    );
    let analysis = analyze(tokens);
    let mut seen: Vec<&OptionSpec> = Vec::new();
    for &(token, role) in &analysis.tokens {
        match role {
            Role::Command(spec) => {
                let kind = if spec.is_some() {
                    TokenKind::Command
                } else {
                    TokenKind::Error
                };
                out.push((token.span.clone(), kind));
            }
            Role::Subcommand(_) => out.push((token.span.clone(), TokenKind::Subcommand)),
            Role::UnknownSubcommand | Role::Extra => {
                out.push((token.span.clone(), TokenKind::Error))
            }
            Role::Unknown => out.push((token.span.clone(), untyped(token))),
            Role::Option(None) => out.push((token.span.clone(), TokenKind::Error)),
            Role::Option(Some(option)) => {
                let refused = seen
                    .iter()
                    .any(|s| std::ptr::eq(*s, option) || s.conflicts_with(option));
                seen.push(option);
                let TokKind::Opt { value, .. } = &token.kind else {
                    continue;
                };
                let name_kind = if refused {
                    TokenKind::Error
                } else {
                    TokenKind::Option
                };
                match value {
                    None => out.push((token.span.clone(), name_kind)),
                    Some(value) => {
                        out.push((token.span.start..value.span.start, name_kind));
                        let kind = if option.takes_value() {
                            value_kind(value, &option.kind)
                        } else {
                            TokenKind::Error
                        };
                        out.push((value.span.clone(), kind));
                    }
                }
            }
            Role::OptionValue(option) => {
                out.push((token.span.clone(), value_kind(token, &option.kind)))
            }
            Role::Positional(arg) => out.push((token.span.clone(), value_kind(token, &arg.kind))),
        }
    }
}

/// The colour of a value token, by what the command expects there.
fn value_kind(token: &Token, kind: &ValueKind) -> TokenKind {
    let (text, quoted) = match &token.kind {
        TokKind::Str {
            bad_escape: Some(_),
            ..
        } => return TokenKind::Error,
        // Still being typed: colour it as what it will be.
        TokKind::Str { closed: false, .. } if kind.is_path() => return TokenKind::Path,
        TokKind::Str { closed: false, .. } => return TokenKind::String,
        TokKind::Bare(text) if text.starts_with('-') && !is_number(text) => {
            return TokenKind::Error
        }
        _ => match token.text() {
            Some(text) => text,
            None => return TokenKind::Error,
        },
    };
    if check(kind, text, quoted).is_err() {
        return TokenKind::Error;
    }
    match kind {
        k if k.is_path() && !(text == "default" && !quoted && *k == ValueKind::Model) => {
            TokenKind::Path
        }
        k if k.is_numeric() => TokenKind::Number,
        ValueKind::Command => TokenKind::Command,
        ValueKind::Text => TokenKind::String,
        _ if quoted => TokenKind::String,
        _ => TokenKind::Plain,
    }
}

/// The colour of a token whose role is unknown (after an unknown command).
fn untyped(token: &Token) -> TokenKind {
    match &token.kind {
        TokKind::Str { .. } => TokenKind::String,
        TokKind::Bare(text) if is_number(text) => TokenKind::Number,
        TokKind::Opt { .. } => TokenKind::Option,
        TokKind::Comment => TokenKind::Comment,
        TokKind::Bare(_) => TokenKind::Plain,
    }
}
