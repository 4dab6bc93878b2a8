//! From text to typed commands.
//!
//! Parsing goes: lexer → analysis (which token is what, from the table) → `collect` (every token
//! checked in order, so the error reported is always the leftmost one, then what is missing) →
//! `build` (defaults from the table, values into typed fields). This module holds the entry
//! points and what can go wrong before any argument is looked at: lexical problems and unknown
//! commands or subcommands.

use std::ops::Range;

use super::analyze::{analyze, Analysis, Role};
use super::ast::Command;
use super::build::build;
use super::collect::collect;
use super::error::{line_column, ParseError, ParseErrorKind};
use super::lexer::{lex, Item, TokKind, Token};
use super::spec::CommandSpec;
use super::suggest::closest;
use super::table::command_names;

/// A command with where it came from in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub command: Command,
    /// Byte range of the command's text in the input (continuation lines included).
    pub span: Range<usize>,
    /// 1-based line the command starts on.
    pub line: usize,
}

/// Parses exactly one command (which may span lines: continuations, multi-line strings, a
/// `:rust` block). Blank input, or a second command after the first, is an error.
pub fn parse(input: &str) -> Result<Command, ParseError> {
    let items = lex(input);
    let mut commands = items.iter().filter(|item| !is_blank(item));
    let first = commands.next();
    if let Some(second) = commands.next() {
        let span = item_span(second);
        return Err(ParseError::new(
            input,
            ParseErrorKind::TrailingInput,
            span,
            "expected one command, found a second one",
        ));
    }
    match first
        .map(|item| parse_item(input, item))
        .transpose()?
        .flatten()
    {
        Some(statement) => Ok(statement.command),
        None => Err(ParseError::new(
            input,
            ParseErrorKind::Empty,
            input.len()..input.len(),
            "expected a command",
        )),
    }
}

/// Parses any number of commands, one per line; blank and comment-only lines are skipped. Stops
/// at the first error.
pub fn parse_script(input: &str) -> Result<Vec<Statement>, ParseError> {
    let mut statements = Vec::new();
    for item in lex(input) {
        if let Some(statement) = parse_item(input, &item)? {
            statements.push(statement);
        }
    }
    Ok(statements)
}

fn is_blank(item: &Item) -> bool {
    match item {
        Item::Line {
            tokens,
            dangling_backslash,
            ..
        } => dangling_backslash.is_none() && tokens.iter().all(Token::is_comment),
        Item::Rust { .. } => false,
    }
}

fn item_span(item: &Item) -> Range<usize> {
    match item {
        Item::Line { tokens, span, .. } => {
            let start = tokens.first().map_or(span.start, |t| t.span.start);
            start..span.end
        }
        Item::Rust {
            keyword,
            code_span,
            end,
            ..
        } => {
            keyword.start
                ..end
                    .as_ref()
                    .map_or(code_span.end, |e| e.end)
                    .max(keyword.end)
        }
    }
}

fn parse_item(src: &str, item: &Item) -> Result<Option<Statement>, ParseError> {
    let command = match item {
        Item::Rust {
            keyword,
            code,
            block,
            end,
            ..
        } => {
            if *block && end.is_none() {
                return Err(ParseError::new(
                    src,
                    ParseErrorKind::UnterminatedRust,
                    keyword.clone(),
                    "this `:rust` block has no `:end` line",
                ));
            }
            Command::Rust(code.clone())
        }
        Item::Line {
            tokens,
            dangling_backslash,
            ..
        } => {
            lexical_problems(src, tokens, *dangling_backslash)?;
            match parse_line(src, tokens)? {
                Some(command) => command,
                None => return Ok(None),
            }
        }
    };
    let span = item_span(item);
    let line = line_column(src, span.start).0;
    Ok(Some(Statement {
        command,
        span,
        line,
    }))
}

/// The first problem the lexer recorded, as an error.
fn lexical_problems(
    src: &str,
    tokens: &[Token],
    dangling: Option<usize>,
) -> Result<(), ParseError> {
    fn string_problem(src: &str, token: &Token) -> Option<ParseError> {
        match &token.kind {
            TokKind::Str {
                bad_escape: Some(range),
                ..
            } => Some(ParseError::new(
                src,
                ParseErrorKind::BadEscape,
                range.clone(),
                format!(
                    "unknown escape `{}` in a string; the escapes are \\\" \\\\ \\n \\t",
                    src.get(range.clone()).unwrap_or("\\")
                ),
            )),
            TokKind::Str { closed: false, .. } => Some(ParseError::new(
                src,
                ParseErrorKind::UnterminatedString,
                token.span.start..token.span.start + 1,
                "this string has no closing `\"`",
            )),
            _ => None,
        }
    }
    for token in tokens {
        let problem = match &token.kind {
            TokKind::Opt {
                name,
                name_span,
                value,
            } => {
                if name.is_empty() {
                    Some(ParseError::new(
                        src,
                        ParseErrorKind::UnknownOption,
                        name_span.clone(),
                        "expected an option name after `--`",
                    ))
                } else {
                    value.as_deref().and_then(|v| string_problem(src, v))
                }
            }
            _ => string_problem(src, token),
        };
        if let Some(problem) = problem {
            return Err(problem);
        }
    }
    match dangling {
        Some(at) => Err(ParseError::new(
            src,
            ParseErrorKind::DanglingBackslash,
            at..at + 1,
            "`\\` continues the line, but the input ends here",
        )),
        None => Ok(()),
    }
}

fn parse_line(src: &str, tokens: &[Token]) -> Result<Option<Command>, ParseError> {
    let analysis = analyze(tokens);
    let Some(&(first, _)) = analysis.tokens.first() else {
        return Ok(None);
    };
    let Some(top) = analysis.top else {
        return Err(unknown_command(src, first));
    };
    let Some(spec) = analysis.spec else {
        return Err(missing_subcommand(src, &analysis, top));
    };
    if std::ptr::eq(spec, top) && !top.subcommands.is_empty() {
        misspelt_subcommand(src, &analysis, top)?;
    }
    let matched = collect(src, &analysis, top, spec)?;
    build(&matched).map(Some)
}

fn unknown_command(src: &str, token: &Token) -> ParseError {
    let (message, suggestion) = match &token.kind {
        TokKind::Bare(word) => (
            format!("unknown command `{word}`"),
            closest(word, command_names()).map(String::from),
        ),
        TokKind::Str { .. } => ("expected a command, found a string".into(), None),
        TokKind::Opt { name, .. } => (
            format!("expected a command, found the option `--{name}`"),
            None,
        ),
        TokKind::Comment => ("expected a command".into(), None),
    };
    ParseError::new(
        src,
        ParseErrorKind::UnknownCommand,
        token.span.clone(),
        message,
    )
    .with_suggestion(suggestion)
}

fn subcommand_list(top: &CommandSpec) -> String {
    top.subcommands
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing_subcommand(src: &str, analysis: &Analysis<'_>, top: &CommandSpec) -> ParseError {
    let list = subcommand_list(top);
    match analysis
        .tokens
        .iter()
        .find(|(_, role)| *role == Role::UnknownSubcommand)
    {
        Some((token, _)) => {
            let (message, suggestion) = match &token.kind {
                TokKind::Bare(word) => (
                    format!(
                        "unknown subcommand `{word}` of `{}` (it has {list})",
                        top.name
                    ),
                    closest(word, top.subcommands.iter().map(|s| s.name)).map(String::from),
                ),
                _ => (
                    format!("`{}` needs a subcommand first: {list}", top.name),
                    None,
                ),
            };
            ParseError::new(
                src,
                ParseErrorKind::UnknownSubcommand,
                token.span.clone(),
                message,
            )
            .with_suggestion(suggestion)
        }
        None => {
            let end = analysis
                .tokens
                .last()
                .map_or(src.len(), |(t, _)| t.span.end);
            ParseError::new(
                src,
                ParseErrorKind::MissingSubcommand,
                end..end,
                format!("`{}` needs a subcommand: {list}", top.name),
            )
        }
    }
}

/// `log shw 3`: a bare word close to a subcommand's name, in a command that also has a form of
/// its own, is almost always a misspelt subcommand rather than a directory called `shw`. A
/// directory of that name can still be written `./shw`.
fn misspelt_subcommand(
    src: &str,
    analysis: &Analysis<'_>,
    top: &CommandSpec,
) -> Result<(), ParseError> {
    let Some((token, Role::Positional(_))) = analysis.tokens.get(1) else {
        return Ok(());
    };
    let TokKind::Bare(word) = &token.kind else {
        return Ok(());
    };
    if word.contains('/') {
        return Ok(());
    }
    match closest(word, top.subcommands.iter().map(|s| s.name)) {
        Some(name) => Err(ParseError::new(
            src,
            ParseErrorKind::UnknownSubcommand,
            token.span.clone(),
            format!(
                "unknown subcommand `{word}` of `{}` (write `./{word}` for a directory)",
                top.name
            ),
        )
        .with_suggestion(Some(name.to_string()))),
        None => Ok(()),
    }
}
