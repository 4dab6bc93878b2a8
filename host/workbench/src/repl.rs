//! The REPL line at the bottom of the window: one line of the command language with history
//! (↑/↓), Tab completion from the command table and the session's names, the rest of the
//! command's synopsis as a greyed hint, and syntax colouring. Enter hands the line to the app,
//! which appends it to the workbook as a cell and runs it.
//!
//! The editing logic ([`Repl::complete`], [`Repl::history_up`], …) is plain code on plain
//! state, tested without a window; [`Repl::show`] only maps keys onto it.

use eframe::egui::{
    self, text::CCursor, text::CCursorRange, Color32, EventFilter, FontId, Id, Key, Modifiers,
    PopupKind, RectAlign, TextBuffer, TextEdit, Ui,
};
use tritlab_session::lang::{self, Candidate, CompletionSource};

use crate::view::syntax;

/// How many lines of history are kept (and persisted).
pub const HISTORY_LIMIT: usize = 200;

/// The REPL line's state.
#[derive(Debug, Clone, Default)]
pub struct Repl {
    /// What is typed.
    pub text: String,
    history: Vec<String>,
    /// While browsing history: the index of the shown entry.
    browsing: Option<usize>,
    /// What was typed before browsing started, restored when browsing past the newest entry.
    draft: String,
    menu: Option<CompletionMenu>,
}

/// Candidates offered for the word before the cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionMenu {
    /// Byte range of the line the chosen candidate replaces.
    pub start: usize,
    pub end: usize,
    pub candidates: Vec<Candidate>,
    pub selected: usize,
}

impl Repl {
    pub fn new(history: Vec<String>) -> Self {
        let mut history = history;
        let excess = history.len().saturating_sub(HISTORY_LIMIT);
        history.drain(..excess);
        Repl {
            history,
            ..Repl::default()
        }
    }

    /// Entered lines, oldest first.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    pub fn menu(&self) -> Option<&CompletionMenu> {
        self.menu.as_ref()
    }

    /// Takes the line for running: remembers it and empties the input. `None` for a blank line.
    pub fn take_line(&mut self) -> Option<String> {
        let line = std::mem::take(&mut self.text);
        self.browsing = None;
        self.menu = None;
        if line.trim().is_empty() {
            return None;
        }
        if self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > HISTORY_LIMIT {
                self.history.remove(0);
            }
        }
        Some(line)
    }

    /// Shows the previous history entry; returns whether the text changed.
    pub fn history_up(&mut self) -> bool {
        let index = match self.browsing {
            None if self.history.is_empty() => return false,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return false,
            Some(i) => i - 1,
        };
        self.browsing = Some(index);
        self.text = self.history[index].clone();
        true
    }

    /// Shows the next history entry, or what was typed before browsing.
    pub fn history_down(&mut self) -> bool {
        let Some(index) = self.browsing else {
            return false;
        };
        if index + 1 < self.history.len() {
            self.browsing = Some(index + 1);
            self.text = self.history[index + 1].clone();
        } else {
            self.browsing = None;
            self.text = std::mem::take(&mut self.draft);
        }
        true
    }

    /// Completes the word before byte `cursor`: a single candidate is inserted (with a space
    /// after a finished word), several insert their common prefix and open the menu. Returns the
    /// new cursor position (bytes) if the text changed.
    pub fn complete(&mut self, cursor: usize, source: &dyn CompletionSource) -> Option<usize> {
        let cursor = floor_char_boundary(&self.text, cursor);
        let completion = lang::complete(&self.text, cursor, source);
        let start = completion.start.min(cursor);
        let candidates = completion.candidates;
        match candidates.len() {
            0 => {
                self.menu = None;
                None
            }
            1 => {
                self.menu = None;
                let mut replacement = candidates[0].replacement.clone();
                if is_finished_word(&replacement) && !self.text[cursor..].starts_with(' ') {
                    replacement.push(' ');
                }
                Some(self.replace(start, cursor, &replacement))
            }
            _ => {
                let prefix = common_prefix(candidates.iter().map(|c| c.replacement.as_str()));
                let typed = &self.text[start..cursor];
                let new_cursor = (prefix.len() > typed.len() && prefix.starts_with(typed))
                    .then(|| self.replace(start, cursor, &prefix));
                self.menu = Some(CompletionMenu {
                    start,
                    end: new_cursor.unwrap_or(cursor),
                    candidates,
                    selected: 0,
                });
                new_cursor
            }
        }
    }

    /// Moves the menu's selection by `by` (wrapping).
    pub fn select(&mut self, by: isize) {
        if let Some(menu) = &mut self.menu {
            let len = menu.candidates.len() as isize;
            menu.selected = (menu.selected as isize + by).rem_euclid(len) as usize;
        }
    }

    /// Inserts the menu's candidate `index` (the selected one if `None`); returns the new cursor.
    pub fn accept(&mut self, index: Option<usize>) -> Option<usize> {
        let menu = self.menu.take()?;
        let candidate = menu.candidates.get(index.unwrap_or(menu.selected))?;
        let mut replacement = candidate.replacement.clone();
        let end = menu.end.min(self.text.len());
        if is_finished_word(&replacement) && !self.text[end..].starts_with(' ') {
            replacement.push(' ');
        }
        Some(self.replace(menu.start, end, &replacement))
    }

    pub fn close_menu(&mut self) {
        self.menu = None;
    }

    fn replace(&mut self, start: usize, end: usize, with: &str) -> usize {
        self.text.replace_range(start..end, with);
        start + with.len()
    }

    /// Draws the line and handles its keys. Returns a line to run when Enter was pressed.
    pub fn show(&mut self, ui: &mut Ui, source: &dyn CompletionSource) -> Option<String> {
        let id = Id::unique("tritlab-repl-line");
        let focused = ui.memory(|m| m.has_focus(id));
        let keys = if focused {
            ui.input_mut(|input| Keys {
                enter: input.consume_key(Modifiers::NONE, Key::Enter),
                tab: input.consume_key(Modifiers::NONE, Key::Tab),
                up: input.consume_key(Modifiers::NONE, Key::ArrowUp),
                down: input.consume_key(Modifiers::NONE, Key::ArrowDown),
                escape: input.consume_key(Modifiers::NONE, Key::Escape),
            })
        } else {
            Keys::default()
        };
        if keys.tab || keys.up || keys.down {
            // These keys also move the keyboard focus between widgets; here they belong to the
            // line. (egui learns that from the line itself only from its second focused frame.)
            ui.memory_mut(|m| m.move_focus(egui::FocusDirection::None));
        }

        let font = FontId::monospace(14.0);
        let mut layouter = |ui: &Ui, buffer: &dyn TextBuffer, _wrap_width: f32| {
            let job = syntax::command_job(buffer.as_str(), font.clone(), ui.visuals());
            ui.fonts_mut(|fonts| fonts.layout_job(job))
        };
        let before = self.text.clone();
        let output = TextEdit::singleline(&mut self.text)
            .id(id)
            .font(FontId::monospace(14.0))
            .desired_width(f32::INFINITY)
            .hint_text("a command, e.g. generate \"To be\" --max-tokens 16   (Tab completes, Up/Down for history)")
            .event_filter(EventFilter {
                tab: true,
                horizontal_arrows: true,
                vertical_arrows: true,
                escape: true,
            })
            .layouter(&mut layouter)
            .show(ui);
        let response = output.response.response.clone();
        if self.text != before {
            self.menu = None;
            self.browsing = None;
        }
        let cursor_chars = output
            .cursor_range
            .map_or_else(|| self.text.chars().count(), |r| r.primary.index.0);
        let cursor = byte_of_char(&self.text, cursor_chars);

        let mut new_cursor = None;
        let mut submitted = None;
        if self.menu.is_some() {
            if keys.up {
                self.select(-1);
            }
            if keys.down {
                self.select(1);
            }
            if keys.enter || keys.tab {
                new_cursor = self.accept(None);
            }
            if keys.escape {
                self.close_menu();
            }
        } else {
            if keys.tab {
                new_cursor = self.complete(cursor, source);
            }
            if keys.up && self.history_up() || keys.down && self.history_down() {
                new_cursor = Some(self.text.len());
            }
            if keys.enter {
                submitted = self.take_line();
            }
        }

        // The rest of the synopsis, greyed, after the text when the cursor is at its end.
        if focused && self.menu.is_none() && cursor == self.text.len() {
            if let Some(hint) = lang::hint(&self.text) {
                let at = output.galley_pos + egui::vec2(output.galley.size().x, 0.0);
                let painter = ui.painter().with_clip_rect(output.text_clip_rect);
                painter.text(
                    at,
                    egui::Align2::LEFT_TOP,
                    hint,
                    FontId::monospace(14.0),
                    ui.visuals().weak_text_color(),
                );
            }
        }

        if let Some(menu) = &self.menu {
            let mut clicked = None;
            egui::Popup::from_response(&response)
                .id(id.with("completions"))
                .kind(PopupKind::Popup)
                .open(true)
                .align(RectAlign::TOP_START)
                .align_alternatives(&[RectAlign::BOTTOM_START])
                .show(|ui| {
                    egui::ScrollArea::vertical()
                        .max_height(240.0)
                        .show(ui, |ui| {
                            for (i, candidate) in menu.candidates.iter().enumerate() {
                                let text = egui::RichText::new(&candidate.display).monospace();
                                let item = ui.selectable_label(i == menu.selected, text);
                                let item = if candidate.description.is_empty() {
                                    item
                                } else {
                                    item.on_hover_text(&candidate.description)
                                };
                                if i == menu.selected && (keys.up || keys.down) {
                                    item.scroll_to_me(None);
                                }
                                if item.clicked() {
                                    clicked = Some(i);
                                }
                            }
                        });
                });
            if clicked.is_some() {
                new_cursor = self.accept(clicked);
                response.request_focus();
            }
        }

        if let Some(byte) = new_cursor {
            let chars = self.text[..byte.min(self.text.len())].chars().count();
            let mut state = output.state;
            state
                .cursor
                .set_char_range(Some(CCursorRange::one(CCursor::new(chars))));
            state.store(ui.ctx(), id);
        }
        if submitted.is_some() || keys.tab || keys.up || keys.down || keys.escape {
            response.request_focus();
        }
        submitted
    }

    /// Puts the keyboard focus on the line.
    pub fn focus(ui: &Ui) {
        ui.memory_mut(|m| m.request_focus(Id::unique("tritlab-repl-line")));
    }
}

/// Keys the line handles itself, taken before the text edit sees them.
#[derive(Debug, Default, Clone, Copy)]
struct Keys {
    enter: bool,
    tab: bool,
    up: bool,
    down: bool,
    escape: bool,
}

/// Whether more can follow a completed word (a directory or an open string can go on).
fn is_finished_word(replacement: &str) -> bool {
    let open_string =
        replacement.starts_with('"') && (replacement.len() == 1 || !replacement.ends_with('"'));
    !(replacement.ends_with('/') || replacement.ends_with('=') || open_string)
}

fn common_prefix<'a>(mut words: impl Iterator<Item = &'a str>) -> String {
    let Some(mut prefix) = words.next() else {
        return String::new();
    };
    for word in words {
        let shared = prefix
            .char_indices()
            .zip(word.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8());
        prefix = &prefix[..shared];
    }
    prefix.to_owned()
}

fn byte_of_char(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The colour the line's prompt is drawn in.
pub fn prompt_colour(visuals: &egui::Visuals) -> Color32 {
    if visuals.dark_mode {
        Color32::from_rgb(0x7f, 0xb4, 0xff)
    } else {
        Color32::from_rgb(0x1f, 0x5f, 0xbf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tritlab_session::lang::NoSource;

    #[test]
    fn history_browses_back_and_restores_the_draft() {
        let mut repl = Repl::default();
        for line in ["info", "layers", "layers"] {
            repl.text = line.into();
            assert_eq!(repl.take_line().as_deref(), Some(line));
        }
        assert_eq!(repl.history(), ["info", "layers"], "repeats are kept once");
        repl.text = "gen".into();
        assert!(repl.history_up());
        assert_eq!(repl.text, "layers");
        assert!(repl.history_up());
        assert_eq!(repl.text, "info");
        assert!(!repl.history_up());
        assert!(repl.history_down());
        assert!(repl.history_down());
        assert_eq!(repl.text, "gen");
        assert!(!repl.history_down());
        repl.text = "   ".into();
        assert_eq!(repl.take_line(), None);
    }

    #[test]
    fn tab_completes_a_unique_command_with_a_space() {
        let mut repl = Repl {
            text: "gener".into(),
            ..Repl::default()
        };
        assert_eq!(repl.complete(5, &NoSource), Some("generate ".len()));
        assert_eq!(repl.text, "generate ");
        assert!(repl.menu().is_none());
    }

    #[test]
    fn tab_offers_a_menu_for_several_candidates() {
        let mut repl = Repl {
            text: "generate \"x\" --t".into(),
            ..Repl::default()
        };
        let cursor = repl.text.len();
        repl.complete(cursor, &NoSource);
        let menu = repl
            .menu()
            .expect("--temperature, --top-k, --top-p, --tracer")
            .clone();
        assert!(menu.candidates.len() >= 3);
        assert!(repl.text.starts_with("generate \"x\" --t"));
        repl.select(-1);
        let last = menu.candidates.len() - 1;
        assert_eq!(repl.menu().unwrap().selected, last);
        let end = repl.accept(None).unwrap();
        assert_eq!(
            &repl.text[..end],
            format!("generate \"x\" {} ", menu.candidates[last].replacement)
        );
    }

    #[test]
    fn common_prefix_stops_at_the_first_difference() {
        assert_eq!(common_prefix(["--top-k", "--top-p"].into_iter()), "--top-");
        assert_eq!(common_prefix(["ab", "a"].into_iter()), "a");
        assert_eq!(common_prefix(std::iter::empty()), "");
        assert_eq!(byte_of_char("aé b", 2), 3);
    }
}
