//! Splits input into commands and tokens.
//!
//! The lexer never fails: problems (an unterminated string, an unknown escape, a `\` with no
//! line after it) are recorded on the tokens and items they belong to. The parser turns the
//! first problem into a [`ParseError`](super::ParseError); the highlighter, completer and hinter
//! keep working on the same half-typed input the user is looking at.
//!
//! All spans are byte ranges into the whole input, so a command continued over several lines
//! still points at the right place.

use std::ops::Range;

/// One token of a command line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokKind {
    /// A bare word exactly as written: a name, a number, a comma list or a path. What it means
    /// depends on where it stands, so classification is left to the parser.
    Bare(String),
    /// A double-quoted string with its escapes resolved.
    Str {
        value: String,
        /// False when the input ended before the closing quote.
        closed: bool,
        /// The first escape that is not one of `\" \\ \n \t`, if any.
        bad_escape: Option<Range<usize>>,
    },
    /// `--name` or `--name=value`.
    Opt {
        name: String,
        /// `--name` itself, without `=` and the value.
        name_span: Range<usize>,
        /// The value after `=`: a `Bare` (possibly empty) or a `Str` token.
        value: Option<Box<Token>>,
    },
    /// `#` to the end of the line.
    Comment,
}

impl Token {
    /// The text a token stands for as an argument, and whether it was quoted. Options and
    /// comments stand for no text.
    pub fn text(&self) -> Option<(&str, bool)> {
        match &self.kind {
            TokKind::Bare(text) => Some((text, false)),
            TokKind::Str { value, .. } => Some((value, true)),
            TokKind::Opt { .. } | TokKind::Comment => None,
        }
    }

    pub fn is_comment(&self) -> bool {
        matches!(self.kind, TokKind::Comment)
    }
}

/// One command's worth of input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// A logical line: physical lines joined by trailing `\` and by strings that span lines.
    /// Blank and comment-only lines are items with no argument tokens.
    Line {
        tokens: Vec<Token>,
        span: Range<usize>,
        /// Offset of a `\` that asks for a line after the end of the input.
        dangling_backslash: Option<usize>,
        /// Offsets of the `\`s that joined physical lines, for highlighting.
        continuations: Vec<usize>,
    },
    /// `:rust CODE` on one line, or a `:rust` line, code lines and an `:end` line.
    Rust {
        keyword: Range<usize>,
        code: String,
        code_span: Range<usize>,
        block: bool,
        /// The `:end` line of a block; `None` for one-line snippets and unterminated blocks.
        end: Option<Range<usize>>,
    },
}

impl Item {
    /// Whether the input stopped in the middle of this item: inside a string, after a
    /// continuation backslash, or inside a `:rust` block.
    pub fn is_open(&self) -> bool {
        match self {
            Item::Line {
                tokens,
                dangling_backslash,
                ..
            } => dangling_backslash.is_some() || tokens.iter().any(Token::is_unclosed_string),
            Item::Rust { block, end, .. } => *block && end.is_none(),
        }
    }
}

impl Token {
    fn is_unclosed_string(&self) -> bool {
        match &self.kind {
            TokKind::Str { closed, .. } => !closed,
            TokKind::Opt {
                value: Some(value), ..
            } => value.is_unclosed_string(),
            _ => false,
        }
    }
}

/// The keyword that introduces a Rust snippet.
pub(crate) const RUST_KEYWORD: &str = ":rust";
/// The line that closes a multi-line Rust snippet.
pub(crate) const RUST_END: &str = ":end";

/// Splits `src` into items, one per command (or blank line).
pub(crate) fn lex(src: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut pos = 0;
    while pos < src.len() {
        if let Some((item, next)) = rust_item(src, pos) {
            items.push(item);
            pos = next;
            continue;
        }
        let mut lexer = LineLexer { src, pos };
        items.push(lexer.logical_line());
        pos = lexer.pos;
    }
    items
}

/// End of the physical line starting at `pos` (the offset of its `\n`, or the input's end).
fn line_end(src: &str, pos: usize) -> usize {
    src[pos..].find('\n').map_or(src.len(), |i| pos + i)
}

/// Recognises a Rust snippet starting at the physical line at `pos`; returns it and the offset
/// of the line after it.
fn rust_item(src: &str, pos: usize) -> Option<(Item, usize)> {
    let end = line_end(src, pos);
    let line = &src[pos..end];
    let trimmed = line.trim_start();
    let keyword_start = pos + (line.len() - trimmed.len());
    let rest = trimmed.strip_prefix(RUST_KEYWORD)?;
    let keyword = keyword_start..keyword_start + RUST_KEYWORD.len();
    let after_line = (end + 1).min(src.len());

    if !rest.trim().is_empty() {
        // `:rusty` is a word, not the keyword.
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let code = rest.trim();
        let code_start = keyword.end + (rest.len() - rest.trim_start().len());
        let item = Item::Rust {
            keyword,
            code: code.to_string(),
            code_span: code_start..code_start + code.len(),
            block: false,
            end: None,
        };
        return Some((item, after_line));
    }

    // A block: every line up to one that is exactly `:end`, verbatim.
    let mut lines = Vec::new();
    let code_start = after_line;
    let mut code_end = code_start;
    let mut cursor = after_line;
    let mut end_line = None;
    while cursor < src.len() {
        let e = line_end(src, cursor);
        let text = &src[cursor..e];
        if text.trim() == RUST_END {
            let lead = text.len() - text.trim_start().len();
            end_line = Some(cursor + lead..cursor + lead + RUST_END.len());
            cursor = (e + 1).min(src.len());
            break;
        }
        lines.push(text.strip_suffix('\r').unwrap_or(text));
        code_end = e;
        cursor = (e + 1).min(src.len());
    }
    let item = Item::Rust {
        keyword,
        code: lines.join("\n"),
        code_span: code_start..code_end.max(code_start),
        block: true,
        end: end_line,
    };
    Some((item, cursor))
}

/// Lexes one logical line.
struct LineLexer<'a> {
    src: &'a str,
    pos: usize,
}

impl LineLexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// If a `\` at `at` ends its physical line (only blanks after it), the offset just past the
    /// newline, or `Err(())` when no line follows: the input ends at the backslash or right after
    /// its newline.
    fn continuation_at(&self, at: usize) -> Option<Result<usize, ()>> {
        let rest = self.src.get(at..)?.strip_prefix('\\')?;
        let blanks = rest.len() - rest.trim_start_matches([' ', '\t', '\r']).len();
        let after = at + 1 + blanks;
        match self.src[after..].chars().next() {
            Some('\n') if after + 1 < self.src.len() => Some(Ok(after + 1)),
            Some('\n') | None => Some(Err(())),
            Some(_) => None,
        }
    }

    fn logical_line(&mut self) -> Item {
        let start = self.pos;
        let mut tokens = Vec::new();
        let mut dangling_backslash = None;
        let mut continuations = Vec::new();
        let end = loop {
            while matches!(self.peek(), Some(c) if c != '\n' && c.is_whitespace()) {
                self.bump();
            }
            match self.peek() {
                None => break self.pos,
                Some('\n') => {
                    self.pos += 1;
                    break self.pos - 1;
                }
                Some('\\') if self.continuation_at(self.pos).is_some() => {
                    if let Some(Ok(next)) = self.continuation_at(self.pos) {
                        continuations.push(self.pos);
                        self.pos = next;
                    } else {
                        dangling_backslash = Some(self.pos);
                        self.pos = self.src.len();
                        break self.pos;
                    }
                }
                Some('#') => tokens.push(self.comment()),
                Some('"') => tokens.push(self.string()),
                Some('-') if self.src[self.pos..].starts_with("--") => tokens.push(self.option()),
                Some(_) => tokens.push(self.bare()),
            }
        };
        Item::Line {
            tokens,
            span: start..end,
            dangling_backslash,
            continuations,
        }
    }

    fn comment(&mut self) -> Token {
        let start = self.pos;
        self.pos = line_end(self.src, self.pos);
        Token {
            kind: TokKind::Comment,
            span: start..self.pos,
        }
    }

    /// Whether a bare word or option name ends before the character at the cursor.
    fn at_word_end(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) => c.is_whitespace() || c == '"' || self.continuation_at(self.pos).is_some(),
        }
    }

    fn bare(&mut self) -> Token {
        let start = self.pos;
        while !self.at_word_end() {
            self.bump();
        }
        Token {
            kind: TokKind::Bare(self.src[start..self.pos].to_string()),
            span: start..self.pos,
        }
    }

    fn option(&mut self) -> Token {
        let start = self.pos;
        self.pos += 2;
        while !self.at_word_end() && self.peek() != Some('=') {
            self.bump();
        }
        let name_span = start..self.pos;
        let name = self.src[start + 2..self.pos].to_string();
        let value = if self.peek() == Some('=') {
            self.pos += 1;
            let value = if self.peek() == Some('"') {
                self.string()
            } else {
                self.bare()
            };
            Some(Box::new(value))
        } else {
            None
        };
        Token {
            kind: TokKind::Opt {
                name,
                name_span,
                value,
            },
            span: start..self.pos,
        }
    }

    fn string(&mut self) -> Token {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        let mut bad_escape = None;
        let closed = loop {
            let Some(c) = self.bump() else { break false };
            match c {
                '"' => break true,
                '\\' => {
                    let escape_start = self.pos - 1;
                    // A backslash ending a line inside a string joins the lines.
                    match self.continuation_at(escape_start) {
                        Some(Ok(next)) => {
                            self.pos = next;
                            continue;
                        }
                        Some(Err(())) => {
                            self.pos = self.src.len();
                            break false;
                        }
                        None => {}
                    }
                    match self.bump() {
                        None => break false,
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(other) => {
                            bad_escape.get_or_insert(escape_start..self.pos);
                            value.push('\\');
                            value.push(other);
                        }
                    }
                }
                other => value.push(other),
            }
        };
        Token {
            kind: TokKind::Str {
                value,
                closed,
                bad_escape,
            },
            span: start..self.pos,
        }
    }
}

/// Quotes `text` so that the lexer reads it back as one string token with the same value.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// Whether `text` reads back as the same single bare word in any argument position: not empty,
/// no blanks, quotes, backslashes or comment marks, and not something that lexes as an option,
/// a negative number, a Rust snippet or a keyword.
pub(crate) fn is_plain_word(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('-')
        && !text.starts_with(':')
        && !text.starts_with('#')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
}

/// `text` as a bare word when that is safe, quoted otherwise.
pub(crate) fn word_or_quoted(text: &str) -> String {
    if is_plain_word(text) {
        text.to_string()
    } else {
        quote(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(src: &str) -> Vec<TokKind> {
        match lex(src).into_iter().next() {
            Some(Item::Line { tokens, .. }) => tokens.into_iter().map(|t| t.kind).collect(),
            other => panic!("not a line: {other:?}"),
        }
    }

    fn bare(s: &str) -> TokKind {
        TokKind::Bare(s.to_string())
    }

    #[test]
    fn words_strings_options_comments() {
        let got = tokens(r#"generate "a \"b\"\n" --seed=7 --greedy 1,2 # note"#);
        assert_eq!(got[0], bare("generate"));
        assert_eq!(
            got[1],
            TokKind::Str {
                value: "a \"b\"\n".into(),
                closed: true,
                bad_escape: None
            }
        );
        match &got[2] {
            TokKind::Opt {
                name,
                value: Some(v),
                ..
            } => {
                assert_eq!(name, "seed");
                assert_eq!(v.kind, bare("7"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&got[3], TokKind::Opt { name, value: None, .. } if name == "greedy"));
        assert_eq!(got[4], bare("1,2"));
        assert_eq!(got[5], TokKind::Comment);
    }

    #[test]
    fn hash_inside_a_word_is_not_a_comment() {
        assert_eq!(tokens("load a#b"), vec![bare("load"), bare("a#b")]);
    }

    #[test]
    fn continuation_joins_lines() {
        let items = lex("generate \"x\" \\\n  --seed 3\ninfo");
        assert_eq!(items.len(), 2);
        match &items[0] {
            Item::Line { tokens, .. } => assert_eq!(tokens.len(), 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strings_span_lines_and_stay_open_at_the_end() {
        let items = lex("generate \"one\ntwo\" --seed 1");
        assert_eq!(items.len(), 1);
        let items = lex("generate \"one\ntwo");
        assert!(items[0].is_open());
    }

    #[test]
    fn dangling_backslash_is_open() {
        let items = lex("info \\");
        assert!(items[0].is_open());
        assert!(matches!(
            items[0],
            Item::Line {
                dangling_backslash: Some(5),
                ..
            }
        ));
    }

    #[test]
    fn bad_escape_is_recorded() {
        match &tokens(r#""a\qb""#)[0] {
            TokKind::Str {
                bad_escape: Some(range),
                closed: true,
                ..
            } => assert_eq!(*range, 2..4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rust_line_and_block() {
        let items = lex(":rust let x = 1;\n:rust\nfn f() {}\n\n:end\ninfo");
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Item::Rust { code, block: false, .. } if code == "let x = 1;"));
        assert!(
            matches!(&items[1], Item::Rust { code, block: true, end: Some(_), .. } if code == "fn f() {}\n")
        );
        assert!(matches!(&items[2], Item::Line { .. }));
        assert!(lex(":rust\nfn f() {}\n")[0].is_open());
        assert!(matches!(&lex(":rusty")[0], Item::Line { .. }));
    }

    #[test]
    fn quoting_round_trips() {
        for text in ["", "a b", "say \"hi\"\n", "back\\slash\t"] {
            match &tokens(&quote(text))[0] {
                TokKind::Str {
                    value,
                    closed: true,
                    bad_escape: None,
                } => assert_eq!(value, text),
                other => panic!("{other:?}"),
            }
        }
    }
}
