//! The workbook pane: prose, cells with their editors and run buttons, and outputs, in order.

use std::collections::HashSet;

use eframe::egui::{
    self, text::LayoutJob, Align, CornerRadius, FontId, Frame, Id, Key, Layout, Margin, Modifiers,
    RichText, Stroke, TextBuffer, TextEdit, TextFormat, Ui,
};
use tritlab_workbook::{Block, Cell, CellKind};

use crate::app::Action;
use crate::document::{BlockKey, Document, Entry};
use crate::engine::EngineLink;
use crate::textures::Textures;
use crate::view::{outputs, syntax};

/// What the workbook pane remembers between frames.
#[derive(Debug, Default)]
pub struct NotebookState {
    /// Prose blocks shown as editors rather than rendered.
    pub editing_prose: HashSet<BlockKey>,
    /// A block to bring into view on the next frame (e.g. the cell the REPL just added).
    pub scroll_to: Option<BlockKey>,
    /// A cell whose editor should take the keyboard focus.
    pub focus: Option<BlockKey>,
}

/// Draws the whole workbook.
pub fn show(
    ui: &mut Ui,
    doc: &Document,
    engine: &EngineLink,
    state: &mut NotebookState,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    egui::ScrollArea::vertical()
        .id_salt("notebook")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.add_space(8.0);
            if doc.entries().is_empty() {
                ui.vertical_centered(|ui| {
                    ui.add_space(40.0);
                    ui.heading("An empty workbook");
                    ui.label("Type a command in the line below, or add a cell.");
                    ui.add_space(8.0);
                });
            }
            // Cells are numbered as the workbook format counts them: prose is not counted.
            let mut number = 0;
            for entry in doc.entries() {
                let response = ui
                    .push_id(entry.key, |ui| match &entry.block {
                        Block::Prose(text) => show_prose(ui, entry.key, text, state, actions),
                        Block::Cell(cell) => {
                            number += 1;
                            let shown = Shown {
                                number,
                                entry,
                                cell,
                            };
                            show_cell(ui, shown, engine, state, textures, actions)
                        }
                    })
                    .response;
                if state.scroll_to == Some(entry.key) {
                    response.scroll_to_me(Some(Align::BOTTOM));
                    state.scroll_to = None;
                }
                ui.add_space(6.0);
            }
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                let last = doc.entries().last().map(|e| e.key);
                if ui.button("+ Command cell").clicked() {
                    actions.push(Action::InsertCell {
                        after: last,
                        kind: CellKind::Command,
                    });
                }
                if ui.button("+ Rust cell").clicked() {
                    actions.push(Action::InsertCell {
                        after: last,
                        kind: CellKind::Rust,
                    });
                }
                if ui.button("+ Prose").clicked() {
                    actions.push(Action::InsertProse { after: last });
                }
            });
            ui.add_space(24.0);
        });
}

fn block_frame(ui: &Ui, highlighted: bool) -> Frame {
    let visuals = ui.visuals();
    let stroke = if highlighted {
        Stroke::new(1.5, visuals.selection.stroke.color)
    } else {
        visuals.widgets.noninteractive.bg_stroke
    };
    Frame::new()
        .fill(visuals.faint_bg_color)
        .stroke(stroke)
        .corner_radius(CornerRadius::same(6))
        .inner_margin(Margin::same(8))
}

/// A cell as it is drawn: its number in the book, its entry and its contents.
struct Shown<'a> {
    number: usize,
    entry: &'a Entry,
    cell: &'a Cell,
}

fn show_cell(
    ui: &mut Ui,
    shown: Shown<'_>,
    engine: &EngineLink,
    state: &mut NotebookState,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    let Shown {
        number,
        entry,
        cell,
    } = shown;
    let key = entry.key;
    let running = engine.live_output(key);
    let queued = engine.is_queued(key);
    let editor_id = Id::unique(("cell-editor", key));
    block_frame(ui, running.is_some()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        // Header: number, language, id, and the cell's buttons.
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("[{number}]")).monospace().weak());
            ui.label(RichText::new(cell.kind.info_word()).small().strong());
            if let Some(id) = &cell.id {
                ui.label(RichText::new(format!("id={id}")).small().weak());
            }
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                cell_menu(ui, key, actions);
                if running.is_some() {
                    if ui
                        .button("⏹ Stop")
                        .on_hover_text("Cancel this cell")
                        .clicked()
                    {
                        actions.push(Action::Cancel);
                    }
                    ui.spinner();
                } else if queued {
                    ui.weak("queued");
                } else if ui
                    .button("▶ Run")
                    .on_hover_text("Run this cell (Ctrl+Enter in its editor)")
                    .clicked()
                {
                    actions.push(Action::RunCell(key));
                }
            });
        });

        // Ctrl+Enter runs the cell whose editor has the focus; take the key before the editor
        // turns it into a newline.
        let focused = ui.memory(|m| m.has_focus(editor_id));
        if focused && ui.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::Enter)) {
            actions.push(Action::RunCell(key));
        }
        let mut source = cell.source.clone();
        let font = FontId::monospace(13.5);
        let kind = cell.kind;
        let mut layouter = |ui: &Ui, buffer: &dyn TextBuffer, wrap_width: f32| {
            let mut job = match kind {
                CellKind::Command => {
                    syntax::command_job(buffer.as_str(), font.clone(), ui.visuals())
                }
                CellKind::Rust => syntax::plain_job(buffer.as_str(), font.clone(), ui.visuals()),
            };
            job.wrap.max_width = wrap_width;
            ui.fonts_mut(|fonts| fonts.layout_job(job))
        };
        let editor = TextEdit::multiline(&mut source)
            .id(editor_id)
            .code_editor()
            .desired_rows(1)
            .desired_width(f32::INFINITY)
            .hint_text(match kind {
                CellKind::Command => "commands, one per line",
                CellKind::Rust => "Rust",
            })
            .layouter(&mut layouter)
            .show(ui);
        if editor.response.response.changed() {
            actions.push(Action::EditSource(key, source));
        }
        if state.focus == Some(key) {
            editor.response.response.request_focus();
            state.focus = None;
        }

        if let Some(running) = running {
            if let Some(progress) = &running.progress {
                let text = match progress.total {
                    Some(total) => format!("{} {}/{}", progress.label, progress.done, total),
                    None => format!("{} {}", progress.label, progress.done),
                };
                let bar = egui::ProgressBar::new(progress.fraction().unwrap_or(0.0))
                    .text(text)
                    .animate(progress.total.is_none());
                ui.add(bar);
            }
            outputs::show_live(ui, &running.live);
        }
        for (index, output) in cell.outputs.iter().enumerate() {
            let id = Id::unique(("output", key, entry.outputs_revision, index));
            outputs::show(ui, output, id, textures);
        }
    });
}

fn cell_menu(ui: &mut Ui, key: BlockKey, actions: &mut Vec<Action>) {
    ui.menu_button("☰", |ui| {
        if ui.button("Move up").clicked() {
            actions.push(Action::Shift(key, -1));
        }
        if ui.button("Move down").clicked() {
            actions.push(Action::Shift(key, 1));
        }
        ui.separator();
        if ui.button("Add command cell below").clicked() {
            actions.push(Action::InsertCell {
                after: Some(key),
                kind: CellKind::Command,
            });
        }
        if ui.button("Add Rust cell below").clicked() {
            actions.push(Action::InsertCell {
                after: Some(key),
                kind: CellKind::Rust,
            });
        }
        if ui.button("Add prose below").clicked() {
            actions.push(Action::InsertProse { after: Some(key) });
        }
        ui.separator();
        if ui.button("Clear outputs").clicked() {
            actions.push(Action::ClearOutputs(Some(key)));
        }
        if ui.button("Delete").clicked() {
            actions.push(Action::Remove(key));
        }
    });
}

fn show_prose(
    ui: &mut Ui,
    key: BlockKey,
    text: &str,
    state: &mut NotebookState,
    actions: &mut Vec<Action>,
) {
    if state.editing_prose.contains(&key) {
        block_frame(ui, true).show(ui, |ui| {
            ui.set_width(ui.available_width());
            let mut draft = text.to_owned();
            let editor = TextEdit::multiline(&mut draft)
                .id(Id::unique(("prose-editor", key)))
                .desired_rows(3)
                .desired_width(f32::INFINITY)
                .hint_text("Markdown")
                .show(ui);
            if editor.response.response.changed() {
                actions.push(Action::EditProse(key, draft));
            }
            if state.focus == Some(key) {
                editor.response.response.request_focus();
                state.focus = None;
            }
            ui.horizontal(|ui| {
                if ui.button("Done").clicked() {
                    state.editing_prose.remove(&key);
                }
                if ui.button("Delete").clicked() {
                    actions.push(Action::Remove(key));
                }
            });
        });
        return;
    }
    let response = ui
        .scope(|ui| {
            ui.set_width(ui.available_width());
            render_markdown(ui, text);
        })
        .response
        .interact(egui::Sense::click());
    if response.double_clicked() {
        state.editing_prose.insert(key);
        state.focus = Some(key);
    }
    response.on_hover_text("Double-click to edit");
}

/// A small Markdown renderer for prose: headings, paragraphs, lists, quotes, fenced code, and
/// inline `code`, **bold**, *emphasis* and [links](…).
pub fn render_markdown(ui: &mut Ui, text: &str) {
    let mut lines = text.lines().peekable();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |ui: &mut Ui, paragraph: &mut Vec<&str>| {
        if !paragraph.is_empty() {
            let joined = paragraph.join(" ");
            ui.label(inline_job(ui, &joined, 14.0, false));
            paragraph.clear();
        }
    };
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(fence) = ["```", "~~~"].iter().find(|f| trimmed.starts_with(**f)) {
            flush(ui, &mut paragraph);
            let mut code = Vec::new();
            for inner in lines.by_ref() {
                if inner.trim_start().starts_with(fence) {
                    break;
                }
                code.push(inner);
            }
            Frame::new()
                .fill(ui.visuals().extreme_bg_color)
                .corner_radius(CornerRadius::same(4))
                .inner_margin(Margin::same(6))
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.monospace(code.join("\n"));
                });
            continue;
        }
        if trimmed.is_empty() {
            flush(ui, &mut paragraph);
            ui.add_space(4.0);
            continue;
        }
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&level) && trimmed[level..].starts_with(' ') {
            flush(ui, &mut paragraph);
            let size = [24.0, 20.0, 17.0, 15.0, 14.0, 13.0][level - 1];
            ui.add_space(if level == 1 { 6.0 } else { 4.0 });
            ui.label(inline_job(ui, trimmed[level..].trim(), size, true));
            continue;
        }
        let bullet = ["- ", "* ", "+ "].iter().find(|b| trimmed.starts_with(**b));
        let numbered = trimmed
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if bullet.is_some() || numbered.is_some() {
            flush(ui, &mut paragraph);
            let indent = (line.len() - trimmed.len()) as f32 * 6.0;
            let (marker, rest) = match (bullet, numbered) {
                (Some(b), _) => ("•".to_owned(), &trimmed[b.len()..]),
                (None, Some((n, rest))) => (format!("{n}."), rest),
                (None, None) => unreachable!(),
            };
            ui.horizontal_wrapped(|ui| {
                ui.add_space(8.0 + indent);
                ui.label(marker);
                ui.label(inline_job(ui, rest, 14.0, false));
            });
            continue;
        }
        if let Some(quote) = trimmed.strip_prefix('>') {
            flush(ui, &mut paragraph);
            ui.horizontal_wrapped(|ui| {
                ui.add_space(8.0);
                ui.label(RichText::new("▌").monospace().weak());
                ui.label(inline_job(ui, quote.trim_start(), 14.0, false));
            });
            continue;
        }
        paragraph.push(trimmed);
    }
    flush(ui, &mut paragraph);
}

/// One line of Markdown inline markup as rich text.
fn inline_job(ui: &Ui, text: &str, size: f32, heading: bool) -> egui::WidgetText {
    let visuals = ui.visuals();
    let plain = if heading {
        visuals.strong_text_color()
    } else {
        visuals.text_color()
    };
    let body = FontId::proportional(size);
    let mut job = LayoutJob::default();
    let base = TextFormat {
        font_id: body.clone(),
        color: plain,
        ..TextFormat::default()
    };
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`') {
            if let Some(end) = after.find('`') {
                job.append(
                    &after[..end],
                    0.0,
                    TextFormat {
                        font_id: FontId::monospace(size * 0.92),
                        color: plain,
                        background: visuals.extreme_bg_color,
                        ..TextFormat::default()
                    },
                );
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix("**") {
            if let Some(end) = after.find("**") {
                job.append(
                    &after[..end],
                    0.0,
                    TextFormat {
                        color: visuals.strong_text_color(),
                        ..base.clone()
                    },
                );
                rest = &after[end + 2..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix('*').or_else(|| rest.strip_prefix('_')) {
            let marker = &rest[..1];
            if let Some(end) = after.find(marker).filter(|&end| end > 0) {
                job.append(
                    &after[..end],
                    0.0,
                    TextFormat {
                        italics: true,
                        ..base.clone()
                    },
                );
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix('[') {
            if let Some((label, tail)) = after.split_once("](") {
                if let Some(close) = tail.find(')') {
                    job.append(
                        label,
                        0.0,
                        TextFormat {
                            color: visuals.hyperlink_color,
                            underline: Stroke::new(1.0, visuals.hyperlink_color),
                            ..base.clone()
                        },
                    );
                    rest = &tail[close + 1..];
                    continue;
                }
            }
        }
        // Plain text up to the next character that may start markup.
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let next = rest[first..]
            .find(['`', '*', '_', '['])
            .map_or(rest.len(), |i| i + first);
        job.append(&rest[..next], 0.0, base.clone());
        rest = &rest[next..];
    }
    job.into()
}
