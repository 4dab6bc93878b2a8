//! Checking a command line's tokens against the table: types, ranges, repeats, conflicts, and
//! then what is missing. The result is a bag of checked values that `build` turns into a
//! command.

use std::ops::Range;
use std::path::PathBuf;

use super::analyze::{Analysis, Role};
use super::error::{line_column, ParseError, ParseErrorKind};
use super::lexer::{TokKind, Token};
use super::spec::{CommandSpec, OptionSpec, Presence, ValueKind};
use super::suggest::closest;
use super::value::{check, is_number, Problem, Value};

/// The checked values of one command line.
pub(super) struct Matched<'s> {
    pub src: &'s str,
    /// The command as users call it: `generate`, `replay export`.
    pub title: String,
    pub spec: &'static CommandSpec,
    /// Given arguments (by placeholder) and options (by name), with the span of their token.
    pub values: Vec<(&'static str, Value, Range<usize>)>,
    /// Where something missing would go: just after the last argument.
    pub end: usize,
}

/// Checks every token against its role, left to right, then what must be present.
pub(super) fn collect<'s>(
    src: &'s str,
    analysis: &Analysis<'_>,
    top: &'static CommandSpec,
    spec: &'static CommandSpec,
) -> Result<Matched<'s>, ParseError> {
    let title = if std::ptr::eq(spec, top) {
        top.name.to_string()
    } else {
        format!("{} {}", top.name, spec.name)
    };
    let end = analysis
        .tokens
        .last()
        .map_or(src.len(), |(t, _)| t.span.end);
    let mut matched = Matched {
        src,
        title,
        spec,
        values: Vec::new(),
        end,
    };
    let mut given: Vec<(&'static OptionSpec, Range<usize>)> = Vec::new();

    for (index, &(token, role)) in analysis.tokens.iter().enumerate() {
        match role {
            Role::Command(_) | Role::Subcommand(_) | Role::UnknownSubcommand | Role::Unknown => {}
            Role::Option(None) => return Err(unknown_option(src, token, &matched)),
            Role::Option(Some(option)) => {
                repeated_or_conflicting(src, token, option, &given)?;
                given.push((option, token.span.clone()));
                let separate_value = analysis.tokens.get(index + 1).map(|(_, role)| *role)
                    == Some(Role::OptionValue(option));
                if let Some((value, span)) = option_value(src, token, option, separate_value, spec)?
                {
                    matched.values.push((option.name, value, span));
                }
            }
            Role::OptionValue(option) => {
                let who = format!("--{}", option.name);
                let checked = check_token(src, token, &option.kind, &who, spec)?;
                matched
                    .values
                    .push((option.name, checked, token.span.clone()));
            }
            Role::Positional(arg) => {
                let checked = check_token(src, token, &arg.kind, arg.name, spec)?;
                matched.values.push((arg.name, checked, token.span.clone()));
            }
            Role::Extra => {
                single_dash(src, token, spec)?;
                return Err(extra_argument(src, token, &matched, analysis));
            }
        }
    }
    missing(&matched, analysis, &given)?;
    Ok(matched)
}

/// An option given a second time, or beside one it excludes.
fn repeated_or_conflicting(
    src: &str,
    token: &Token,
    option: &OptionSpec,
    given: &[(&'static OptionSpec, Range<usize>)],
) -> Result<(), ParseError> {
    if let Some((_, first)) = given.iter().find(|(o, _)| std::ptr::eq(*o, option)) {
        let (line, column) = line_column(src, first.start);
        return Err(ParseError::new(
            src,
            ParseErrorKind::RepeatedOption,
            token.span.clone(),
            format!(
                "`--{}` is already given (line {line}, column {column})",
                option.name
            ),
        ));
    }
    if let Some((other, _)) = given.iter().find(|(o, _)| o.conflicts_with(option)) {
        return Err(ParseError::new(
            src,
            ParseErrorKind::ConflictingOptions,
            token.span.clone(),
            format!("`--{}` cannot be used with `--{}`", option.name, other.name),
        ));
    }
    Ok(())
}

/// What an option token itself contributes: a flag, its `=value`, or nothing when its value is
/// the next token (`separate_value`), which is checked as that token comes.
fn option_value(
    src: &str,
    token: &Token,
    option: &OptionSpec,
    separate_value: bool,
    spec: &CommandSpec,
) -> Result<Option<(Value, Range<usize>)>, ParseError> {
    let TokKind::Opt {
        value, name_span, ..
    } = &token.kind
    else {
        return Ok(None);
    };
    match (option.takes_value(), value) {
        (false, None) => Ok(Some((Value::Flag, token.span.clone()))),
        (false, Some(_)) => Err(ParseError::new(
            src,
            ParseErrorKind::UnexpectedValue,
            token.span.clone(),
            format!("`--{}` is a flag and takes no value", option.name),
        )),
        (true, Some(value)) => {
            if matches!(&value.kind, TokKind::Bare(text) if text.is_empty()) {
                return Err(missing_value(
                    src,
                    option,
                    name_span.start..value.span.start,
                ));
            }
            let who = format!("--{}", option.name);
            let checked = check_token(src, value, &option.kind, &who, spec)?;
            Ok(Some((checked, value.span.clone())))
        }
        (true, None) if separate_value => Ok(None),
        (true, None) => Err(missing_value(src, option, token.span.clone())),
    }
}

/// The first required argument or option that was not given.
fn missing(
    matched: &Matched<'_>,
    analysis: &Analysis<'_>,
    given: &[(&'static OptionSpec, Range<usize>)],
) -> Result<(), ParseError> {
    let spec = matched.spec;
    let at = matched.end..matched.end;
    let error = |kind, message| Err(ParseError::new(matched.src, kind, at.clone(), message));
    if let Some(arg) = spec
        .args
        .iter()
        .skip(analysis.positionals)
        .find(|a| a.required)
    {
        let message = format!("`{}` needs {}: {}", matched.title, arg.name, arg.summary);
        return error(ParseErrorKind::MissingArgument, message);
    }
    let is_given = |name: &str| given.iter().any(|(o, _)| o.name == name);
    for option in spec.options.iter().filter(|o| !is_given(o.name)) {
        let alternative = match option.presence {
            Presence::Optional => continue,
            Presence::Required => String::new(),
            Presence::RequiredUnless(other) if is_given(other) => continue,
            Presence::RequiredUnless(other) => format!(" (or `--{other}`)"),
        };
        let message = format!(
            "`{}` needs `{}`{alternative}: {}",
            matched.title,
            option.usage(),
            option.summary
        );
        return error(ParseErrorKind::MissingOption, message);
    }
    Ok(())
}

fn unknown_option(src: &str, token: &Token, matched: &Matched<'_>) -> ParseError {
    let TokKind::Opt {
        name, name_span, ..
    } = &token.kind
    else {
        return ParseError::new(
            src,
            ParseErrorKind::UnknownOption,
            token.span.clone(),
            "unknown option",
        );
    };
    let options = matched.spec.options.iter().map(|o| o.name);
    let suggestion = closest(name, options).map(|n| format!("--{n}"));
    let message = if matched.spec.options.is_empty() {
        format!(
            "unknown option `--{name}`: `{}` takes no options",
            matched.title
        )
    } else {
        format!("`{}` has no option `--{name}`", matched.title)
    };
    ParseError::new(
        src,
        ParseErrorKind::UnknownOption,
        name_span.clone(),
        message,
    )
    .with_suggestion(suggestion)
}

fn missing_value(src: &str, option: &OptionSpec, span: Range<usize>) -> ParseError {
    ParseError::new(
        src,
        ParseErrorKind::MissingValue,
        span,
        format!(
            "`--{}` needs a value ({}: {})",
            option.name,
            option.value_text(),
            option.kind.describe()
        ),
    )
}

fn extra_argument(
    src: &str,
    token: &Token,
    matched: &Matched<'_>,
    analysis: &Analysis<'_>,
) -> ParseError {
    let shown = match token.text() {
        Some((text, false)) => text.to_string(),
        _ => src.get(token.span.clone()).unwrap_or("").to_string(),
    };
    let spec = matched.spec;
    let takes = match spec.args {
        [] => format!("`{}` takes no arguments", matched.title),
        [arg] => format!("`{}` takes one argument, {}", matched.title, arg.name),
        args => format!(
            "`{}` takes {} arguments, {}",
            matched.title,
            args.len(),
            args.iter().map(|a| a.name).collect::<Vec<_>>().join(" ")
        ),
    };
    // Two bare words where text goes is a prompt that wanted quotes.
    let previous_is_bare_text = analysis
        .tokens
        .iter()
        .rev()
        .find_map(|(t, role)| match role {
            Role::Positional(arg) if arg.kind == ValueKind::Text => {
                Some(matches!(t.kind, TokKind::Bare(_)))
            }
            _ => None,
        });
    let hint = if previous_is_bare_text == Some(true) {
        "; put text with spaces in quotes"
    } else {
        ""
    };
    ParseError::new(
        src,
        ParseErrorKind::UnexpectedArgument,
        token.span.clone(),
        format!("unexpected argument `{shown}`: {takes}{hint}"),
    )
}

/// `-seed 3`: a bare word with one dash that is not a number is a mistyped option far more often
/// than text; text that starts with a dash can be quoted.
fn single_dash(src: &str, token: &Token, spec: &CommandSpec) -> Result<(), ParseError> {
    let TokKind::Bare(word) = &token.kind else {
        return Ok(());
    };
    if !word.starts_with('-') || is_number(word) {
        return Ok(());
    }
    let name = word.trim_start_matches('-');
    let suggestion = closest(name, spec.options.iter().map(|o| o.name)).map(|n| format!("--{n}"));
    Err(ParseError::new(
        src,
        ParseErrorKind::SingleDash,
        token.span.clone(),
        format!(
            "`{word}` is not an option: options start with `--` (quote text that starts with `-`)"
        ),
    )
    .with_suggestion(suggestion))
}

/// Checks a token against a value kind, wording any problem for `who` (an option with its dashes,
/// or an argument's placeholder).
fn check_token(
    src: &str,
    token: &Token,
    kind: &ValueKind,
    who: &str,
    spec: &CommandSpec,
) -> Result<Value, ParseError> {
    single_dash(src, token, spec)?;
    let Some((text, quoted)) = token.text() else {
        return Err(ParseError::new(
            src,
            ParseErrorKind::InvalidValue,
            token.span.clone(),
            format!("`{who}` needs a value"),
        ));
    };
    let problem = match check(kind, text, quoted) {
        Ok(value) => return Ok(value),
        Err(problem) => problem,
    };
    let span = token.span.clone();
    let at = |kind, message: String| ParseError::new(src, kind, span.clone(), message);
    Err(match problem {
        Problem::Expected(what) => at(
            ParseErrorKind::InvalidValue,
            format!("`{who}` expects {what}, found `{text}`"),
        ),
        Problem::OutOfRange(range) => at(
            ParseErrorKind::OutOfRange,
            format!("`{who}` must be {range}, found `{text}`"),
        ),
        Problem::Empty => at(
            ParseErrorKind::InvalidValue,
            format!("`{who}` cannot be empty"),
        ),
        Problem::NotOneOf(names, suggestion) => at(
            ParseErrorKind::InvalidValue,
            format!(
                "`{who}` must be one of {}, found `{text}`",
                names.join(", ")
            ),
        )
        .with_suggestion(suggestion.map(String::from)),
        Problem::UnknownCommand(suggestion) => at(
            ParseErrorKind::UnknownCommand,
            format!("unknown command `{text}`"),
        )
        .with_suggestion(suggestion.map(String::from)),
        Problem::ListItem(range, inner) => {
            // Inside a bare word, byte offsets map straight onto the input; in a string,
            // escapes break that, so point at the whole string.
            let item_span = if quoted {
                span.clone()
            } else {
                span.start + range.start..span.start + range.end
            };
            let item = text.get(range).unwrap_or("");
            let (kind, message) = match *inner {
                _ if item.is_empty() => (
                    ParseErrorKind::InvalidValue,
                    format!("`{who}` has an empty item in its list"),
                ),
                Problem::OutOfRange(range) => (
                    ParseErrorKind::OutOfRange,
                    format!("`{who}`: token ids must be {range}, found `{item}`"),
                ),
                Problem::Expected(what) => (
                    ParseErrorKind::InvalidValue,
                    format!("`{who}` expects {what}, found `{item}`"),
                ),
                _ => (
                    ParseErrorKind::InvalidValue,
                    format!("`{who}` has a bad item `{item}`"),
                ),
            };
            ParseError::new(src, kind, item_span, message)
        }
    })
}

impl Matched<'_> {
    pub fn given(&self, name: &str) -> Option<&(&'static str, Value, Range<usize>)> {
        self.values.iter().find(|(n, _, _)| *n == name)
    }

    /// The value given for `name`, else the table's default for it.
    pub fn value(&self, name: &str) -> Option<Value> {
        if let Some((_, value, _)) = self.given(name) {
            return Some(value.clone());
        }
        let (kind, default) = self
            .spec
            .args
            .iter()
            .find(|a| a.name == name)
            .map(|a| (a.kind, a.default))
            .or_else(|| self.spec.option(name).map(|o| (o.kind, o.default)))?;
        check(&kind, default?, false).ok()
    }

    pub fn text(&self, name: &str) -> Option<String> {
        match self.value(name)? {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn path(&self, name: &str) -> Option<PathBuf> {
        match self.value(name)? {
            Value::Path(path) => Some(path),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<u64> {
        match self.value(name)? {
            Value::Int(v) => Some(v),
            _ => None,
        }
    }

    pub fn u32(&self, name: &str) -> Option<u32> {
        self.int(name).and_then(|v| u32::try_from(v).ok())
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        match self.value(name)? {
            Value::Float(v) => Some(v),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.given(name).is_some()
    }

    pub fn choice<T>(&self, name: &str, from_name: fn(&str) -> Option<T>) -> Option<T> {
        match self.value(name)? {
            Value::Choice(word) => from_name(word),
            _ => None,
        }
    }

    /// A value the checks above guarantee; its absence would be a table mistake, reported as an
    /// error rather than a panic.
    pub fn need<T>(&self, value: Option<T>, name: &str) -> Result<T, ParseError> {
        value.ok_or_else(|| {
            ParseError::new(
                self.src,
                ParseErrorKind::MissingArgument,
                self.end..self.end,
                format!("`{}` needs {name}", self.title),
            )
        })
    }

    pub fn error(&self, kind: ParseErrorKind, name: &str, message: String) -> ParseError {
        let span = self
            .given(name)
            .map_or(self.end..self.end, |(_, _, span)| span.clone());
        ParseError::new(self.src, kind, span, message)
    }
}
