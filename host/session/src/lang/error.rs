//! Parse errors that point at the offending token.

use std::fmt::Write as _;
use std::ops::Range;

/// What went wrong, for callers that react to the kind of mistake rather than its wording
/// (the workbench underlines unknown names differently from bad values, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// The input holds no command (only blanks and comments).
    Empty,
    /// The input holds more than one command where one was expected.
    TrailingInput,
    UnknownCommand,
    UnknownSubcommand,
    MissingSubcommand,
    UnknownOption,
    /// A single-dash word such as `-seed` where an option (`--seed`) was probably meant.
    SingleDash,
    RepeatedOption,
    ConflictingOptions,
    MissingArgument,
    MissingOption,
    MissingValue,
    /// A flag given a value (`--greedy=yes`).
    UnexpectedValue,
    UnexpectedArgument,
    /// A value of the wrong type (`--steps ten`).
    InvalidValue,
    /// A value of the right type outside its range (`--top-p 1.5`).
    OutOfRange,
    UnterminatedString,
    BadEscape,
    /// A `\` continuing a line past the end of the input.
    DanglingBackslash,
    /// A `:rust` block without its closing `:end` line.
    UnterminatedRust,
}

/// A syntax error, with where it is and, when one is close enough, what was probably meant.
///
/// `Display` gives a one-line message with the position; [`ParseError::render`] prints the
/// source line with a caret under the offending token, which is what a REPL shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}{}", did_you_mean(.suggestion))]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// 1-based line of the offending token in the input.
    pub line: usize,
    /// 1-based column, in characters, of the offending token within its line.
    pub column: usize,
    /// Byte range of the offending token in the input (empty for something missing at the end).
    pub span: Range<usize>,
    pub message: String,
    /// What was probably meant (a command, subcommand, option or value), ready to type.
    pub suggestion: Option<String>,
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

impl ParseError {
    /// An error at `span` of `source`, with line and column worked out from the span.
    pub(crate) fn new(
        source: &str,
        kind: ParseErrorKind,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(source, span.start);
        ParseError {
            kind,
            line,
            column,
            span,
            message: message.into(),
            suggestion: None,
        }
    }

    pub(crate) fn with_suggestion(mut self, suggestion: Option<String>) -> Self {
        self.suggestion = suggestion;
        self
    }

    /// The message with its suggestion, without the position.
    pub fn full_message(&self) -> String {
        format!("{}{}", self.message, did_you_mean(&self.suggestion))
    }

    /// The offending line of `source` with carets under the offending token and the message
    /// after them:
    ///
    /// ```text
    /// generte "hi"
    /// ^^^^^^^ unknown command `generte`; did you mean `generate`?
    /// ```
    ///
    /// Input of several lines gets a gutter with the line number. `source` should be the text
    /// that was parsed; any other text gives a best-effort picture, never a panic.
    pub fn render(&self, source: &str) -> String {
        let lines: Vec<&str> = source.split('\n').collect();
        let text = lines
            .get(self.line.saturating_sub(1))
            .copied()
            .unwrap_or("");
        let text = text.strip_suffix('\r').unwrap_or(text);
        // Indent with the line's own tabs so the caret lines up however tabs are shown.
        let indent: String = text
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let line_start = line_offset(source, self.line);
        let on_line = self
            .span
            .end
            .min(line_start + text.len())
            .saturating_sub(self.span.start);
        let width = source
            .get(self.span.start..self.span.start + on_line)
            .map_or(0, |s| s.chars().count())
            .max(1);
        let carets = "^".repeat(width);
        let mut out = String::new();
        if lines.len() > 1 && !(lines.len() == 2 && lines[1].is_empty()) {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let _ = writeln!(out, "{gutter} | {text}");
            let _ = write!(out, "{pad} | {indent}{carets} {}", self.full_message());
        } else {
            let _ = writeln!(out, "{text}");
            let _ = write!(out, "{indent}{carets} {}", self.full_message());
        }
        out
    }
}

/// 1-based line and character column of byte `offset` in `source` (clamped to the input).
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Byte offset where 1-based `line` starts (the input's end past the last line).
fn line_offset(source: &str, line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    source
        .match_indices('\n')
        .nth(line - 2)
        .map_or(source.len(), |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("ab\ncdé f", 7), (2, 4));
        assert_eq!(line_column("é", 1), (1, 1));
        assert_eq!(line_column("x", 99), (1, 2));
    }

    #[test]
    fn render_single_line() {
        let src = "generte \"hi\"";
        let err = ParseError::new(
            src,
            ParseErrorKind::UnknownCommand,
            0..7,
            "unknown command `generte`",
        )
        .with_suggestion(Some("generate".into()));
        assert_eq!(
            err.render(src),
            "generte \"hi\"\n^^^^^^^ unknown command `generte`; did you mean `generate`?"
        );
        assert_eq!(
            err.to_string(),
            "line 1, column 1: unknown command `generte`; did you mean `generate`?"
        );
    }

    #[test]
    fn render_multi_line_has_a_gutter_and_keeps_tabs() {
        let src = "info\n\tseek x";
        let err = ParseError::new(src, ParseErrorKind::InvalidValue, 11..12, "bad");
        assert_eq!(err.render(src), "2 | \tseek x\n  | \t     ^ bad");
    }

    #[test]
    fn render_of_a_missing_token_points_past_the_end() {
        let src = "seek";
        let err = ParseError::new(src, ParseErrorKind::MissingArgument, 4..4, "missing STEP");
        assert_eq!(err.render(src), "seek\n    ^ missing STEP");
    }
}
