//! Reading workbook text: one pass over the lines, strict about everything tritlab owns (the
//! version line, cell and output blocks, image lines) and verbatim about everything else.

use std::collections::HashMap;

use crate::assets::{self, AssetSource};
use crate::book::{is_blank, trim_blank_lines, Block, Cell, CellId, CellKind, Workbook};
use crate::error::{ParseError, ParseErrorKind};
use crate::format::fence::{self, Fence};
use crate::format::{body, VERSION_LINE, VERSION_PREFIX};
use crate::output::{Output, OutputKind};

/// What a fenced block's info string makes of it.
enum Role {
    Cell {
        kind: CellKind,
        id: Option<CellId>,
    },
    Output(OutputKind),
    /// Any other fenced block: part of the prose.
    Prose,
}

pub(crate) fn parse(text: &str, assets: &dyn AssetSource) -> Result<Workbook, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = split_lines(text);
    check_version(lines.first().copied().unwrap_or(""))?;
    let mut parser = Parser {
        lines: &lines,
        assets,
        book: Workbook::new(),
        prose: Vec::new(),
        attached: false,
        ids: HashMap::new(),
    };
    // Indexes into `lines`: line number `i + 1`. Line 1 is the version line.
    let mut i = 1;
    while i < lines.len() {
        i = parser.step(i)?;
    }
    parser.flush_prose();
    Ok(parser.book)
}

struct Parser<'t, 'a> {
    lines: &'a [&'t str],
    assets: &'a dyn AssetSource,
    book: Workbook,
    /// Prose lines since the last cell, verbatim.
    prose: Vec<&'t str>,
    /// Whether the lines since the last cell were only outputs and blank lines, so an output may
    /// still attach to it.
    attached: bool,
    /// Cell ids seen so far, with the line that declared each.
    ids: HashMap<String, usize>,
}

impl<'t> Parser<'t, '_> {
    /// Reads what starts at `lines[i]` and returns the index of the next unread line.
    fn step(&mut self, i: usize) -> Result<usize, ParseError> {
        let line = self.lines[i];
        let number = i + 1;
        if let Some((opening, info)) = fence::open(line) {
            return self.fenced_block(i, opening, info);
        }
        if assets::is_image_line(line) {
            self.image_line(line, number)?;
        } else if !(is_blank(line) && self.attached) {
            self.prose_lines(i, i);
        }
        Ok(i + 1)
    }

    /// A fenced block opening at `lines[i]`: a cell, an output, or part of the prose.
    fn fenced_block(&mut self, i: usize, opening: Fence, info: &str) -> Result<usize, ParseError> {
        let number = i + 1;
        let close = self.lines[i + 1..]
            .iter()
            .position(|candidate| opening.is_closed_by(candidate))
            .map(|offset| i + 1 + offset)
            .ok_or_else(|| {
                ParseError::new(
                    number,
                    ParseErrorKind::UnterminatedFence {
                        fence: opening.marker(),
                    },
                )
            })?;
        let body = &self.lines[i + 1..close];
        let role = if opening.indent == 0 {
            role(info, number)?
        } else {
            Role::Prose
        };
        match role {
            Role::Cell { kind, id } => self.cell(kind, id, body.join("\n"), number)?,
            Role::Output(kind) => {
                let output = body::decode(kind, number + 1, body)?;
                self.attach(number, output)?;
            }
            Role::Prose => self.prose_lines(i, close),
        }
        Ok(close + 1)
    }

    fn cell(
        &mut self,
        kind: CellKind,
        id: Option<CellId>,
        source: String,
        number: usize,
    ) -> Result<(), ParseError> {
        self.flush_prose();
        let mut cell = Cell::new(kind, source);
        if let Some(id) = id {
            if let Some(&first_line) = self.ids.get(id.as_str()) {
                return Err(ParseError::new(
                    number,
                    ParseErrorKind::DuplicateCellId {
                        id: id.to_string(),
                        first_line,
                    },
                ));
            }
            self.ids.insert(id.to_string(), number);
            cell.id = Some(id);
        }
        cell.set_source_line(number);
        self.book.push_cell(cell);
        self.attached = true;
        Ok(())
    }

    fn image_line(&mut self, line: &str, number: usize) -> Result<(), ParseError> {
        let image_line = assets::parse_image_line(line)
            .map_err(|message| ParseError::new(number, ParseErrorKind::BadImageLine { message }))?;
        // Check placement before touching the asset: the position error is the useful one.
        if !self.attached {
            return Err(ParseError::new(
                number,
                ParseErrorKind::OutputWithoutCell {
                    kind: OutputKind::Image,
                },
            ));
        }
        let image = assets::load_image(self.assets, &image_line).map_err(|message| {
            ParseError::new(
                number,
                ParseErrorKind::Asset {
                    path: image_line.path.clone(),
                    message,
                },
            )
        })?;
        self.attach(number, Output::Image(image))
    }

    /// Adds `lines[first..=last]` to the prose.
    fn prose_lines(&mut self, first: usize, last: usize) {
        self.attached = false;
        self.prose.extend_from_slice(&self.lines[first..=last]);
    }

    fn flush_prose(&mut self) {
        let joined = self.prose.join("\n");
        let text = trim_blank_lines(&joined);
        if !text.is_empty() {
            self.book.blocks.push(Block::Prose(text.to_owned()));
        }
        self.prose.clear();
    }

    fn attach(&mut self, line: usize, output: Output) -> Result<(), ParseError> {
        match self.book.blocks.last_mut() {
            Some(Block::Cell(cell)) if self.attached => {
                cell.outputs.push(output);
                Ok(())
            }
            _ => Err(ParseError::new(
                line,
                ParseErrorKind::OutputWithoutCell {
                    kind: output.kind(),
                },
            )),
        }
    }
}

/// Lines without their terminators; a final newline does not start another line, and every `\r`
/// at the end of a line is dropped so files saved with CRLF read the same. Dropping all of them,
/// not just one, keeps parse → write → parse the identity: the writer ends lines with `\n` alone,
/// so a line that kept a trailing `\r` would lose it on the next read.
fn split_lines(text: &str) -> Vec<&str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .collect()
}

fn check_version(first: &str) -> Result<(), ParseError> {
    let first = first.trim_end();
    if first == VERSION_LINE {
        return Ok(());
    }
    let version = first
        .strip_prefix(VERSION_PREFIX)
        .and_then(|rest| rest.strip_suffix("-->"))
        .map(str::trim)
        .filter(|version| !version.is_empty());
    Err(ParseError::new(
        1,
        match version {
            Some(version) => ParseErrorKind::UnsupportedVersion {
                version: version.trim_start_matches('v').to_owned(),
            },
            None => ParseErrorKind::MissingVersion,
        },
    ))
}

/// The role of an unindented fenced block with info string `info`, opened on line `line`.
fn role(info: &str, line: usize) -> Result<Role, ParseError> {
    let mut words = info.split_whitespace();
    let Some(first) = words.next() else {
        return Ok(Role::Prose);
    };
    if let Some(kind) = CellKind::from_info_word(first) {
        let mut id = None;
        for attribute in words {
            match attribute.strip_prefix("id=") {
                Some(value) if id.is_none() => {
                    id = Some(CellId::new(value).map_err(|e| ParseError::new(line, e.into()))?);
                }
                _ => {
                    return Err(ParseError::new(
                        line,
                        ParseErrorKind::UnknownCellAttribute {
                            attribute: attribute.to_owned(),
                        },
                    ))
                }
            }
        }
        return Ok(Role::Cell { kind, id });
    }
    if first != "output" {
        return Ok(Role::Prose);
    }
    let error = |kind| Err(ParseError::new(line, kind));
    let Some(name) = words.next() else {
        return error(ParseErrorKind::MissingOutputKind);
    };
    let kind = match name.parse::<OutputKind>() {
        Ok(OutputKind::Image) => return error(ParseErrorKind::FencedImage),
        Ok(kind) => kind,
        Err(_) => {
            return error(ParseErrorKind::UnknownOutputKind {
                kind: name.to_owned(),
            })
        }
    };
    match words.next() {
        Some(word) => error(ParseErrorKind::ExtraOutputWords {
            kind,
            word: word.to_owned(),
        }),
        None => Ok(Role::Output(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::NoAssets;

    fn parse_err(text: &str) -> ParseError {
        parse(text, &NoAssets).unwrap_err()
    }

    #[test]
    fn reads_cells_outputs_and_prose() {
        let text = "<!-- tritlab-workbook v1 -->\n\n# Title\n\n```tritlab id=info\ninfo default\n```\n\n```output text\nlayers: 30\n```\nAfter.\n\n```rust\nlet x = 1;\n```\n";
        let book = parse(text, &NoAssets).unwrap();
        let cells: Vec<&Cell> = book.cells().collect();
        assert_eq!(book.blocks.len(), 4);
        assert_eq!(book.blocks[0], Block::Prose("# Title".into()));
        assert_eq!(cells[0].id.as_ref().map(CellId::as_str), Some("info"));
        assert_eq!(cells[0].source, "info default");
        assert_eq!(cells[0].outputs, [Output::Text("layers: 30".into())]);
        assert_eq!(cells[0].source_line(), Some(5));
        assert_eq!(book.blocks[2], Block::Prose("After.".into()));
        assert_eq!(cells[1].kind, CellKind::Rust);
        assert_eq!(cells[1].source_line(), Some(14));
    }

    #[test]
    fn foreign_and_indented_fences_are_prose() {
        let text = "<!-- tritlab-workbook v1 -->\n~~~markdown\n```tritlab\nnot a cell\n```\n~~~\n  ```tritlab\n  indented\n  ```\n```sh\nls\n```";
        let book = parse(text, &NoAssets).unwrap();
        assert_eq!(book.blocks.len(), 1);
        assert_eq!(book.cells().count(), 0);
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let text = "\u{feff}<!-- tritlab-workbook v1 -->\r\n```tritlab\r\nhelp\r\n```\r\n";
        let book = parse(text, &NoAssets).unwrap();
        assert_eq!(book.cells().next().unwrap().source, "help");
    }

    #[test]
    fn version_line_is_required_and_checked() {
        assert_eq!(
            parse_err("# hello\n"),
            ParseError::new(1, ParseErrorKind::MissingVersion)
        );
        assert_eq!(
            parse_err(""),
            ParseError::new(1, ParseErrorKind::MissingVersion)
        );
        let error = parse_err("<!-- tritlab-workbook v2 -->\n");
        assert_eq!(
            error,
            ParseError::new(
                1,
                ParseErrorKind::UnsupportedVersion {
                    version: "2".into()
                }
            )
        );
        assert!(error.to_string().contains("version 2"), "{error}");
    }

    #[test]
    fn malformed_blocks_name_their_line() {
        let head = "<!-- tritlab-workbook v1 -->\n\n";
        let cases: [(&str, usize, &str); 9] = [
            ("```tritlab\ninfo", 3, "never closed"),
            (
                "```tritlab\nx\n```\n```output picture\n```",
                6,
                "unknown output kind `picture`",
            ),
            ("```tritlab\nx\n```\n```output\n```", 6, "needs a kind"),
            (
                "```tritlab\nx\n```\n```output text extra\n```",
                6,
                "unexpected `extra`",
            ),
            (
                "```tritlab\nx\n```\n```output image\n```",
                6,
                "not as a fenced block",
            ),
            (
                "Prose.\n\n```output text\nhi\n```",
                5,
                "does not follow a cell",
            ),
            (
                "```tritlab\nx\n```\ntext\n```output text\n```",
                7,
                "does not follow a cell",
            ),
            ("```tritlab id=a b\n```", 3, "unknown cell attribute `b`"),
            ("```tritlab id=a.b\n```", 3, "not a cell id"),
        ];
        for (body, line, needle) in cases {
            let error = parse_err(&format!("{head}{body}"));
            assert_eq!(error.line, line, "{body}: {error}");
            assert!(error.to_string().contains(needle), "{body}: {error}");
        }
    }

    #[test]
    fn duplicate_ids_point_at_both_cells() {
        let error =
            parse_err("<!-- tritlab-workbook v1 -->\n```rust id=x\n```\n```tritlab id=x\n```\n");
        assert_eq!(
            error,
            ParseError::new(
                4,
                ParseErrorKind::DuplicateCellId {
                    id: "x".into(),
                    first_line: 2
                }
            )
        );
    }

    #[test]
    fn image_lines_need_a_cell_and_an_asset() {
        let hash = "0123456789abcdef0123456789abcdef";
        let image = format!("![t](b.assets/{hash}.png \"output image\")");
        let error = parse_err(&format!("<!-- tritlab-workbook v1 -->\n{image}\n"));
        assert_eq!(error.line, 2);
        assert!(matches!(
            error.kind,
            ParseErrorKind::OutputWithoutCell { .. }
        ));
        let error = parse_err(&format!(
            "<!-- tritlab-workbook v1 -->\n```tritlab\n```\n\n{image}\n"
        ));
        assert_eq!(error.line, 5);
        assert!(
            matches!(error.kind, ParseErrorKind::Asset { .. }),
            "{error}"
        );
    }
}
