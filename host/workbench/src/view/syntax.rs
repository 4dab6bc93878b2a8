//! Colouring command-language text with [`tritlab_session::highlight`], for the REPL line and
//! command cells alike.

use eframe::egui::text::{LayoutJob, TextFormat};
use eframe::egui::{Color32, FontId, Stroke, Visuals};
use tritlab_session::lang::{highlight, TokenKind};

/// A layout of `text` with every token in its kind's colour. Blanks between tokens take the
/// plain text colour.
pub fn command_job(text: &str, font: FontId, visuals: &Visuals) -> LayoutJob {
    let plain = visuals.text_color();
    let mut job = LayoutJob::default();
    let mut at = 0;
    let format = |color: Color32, kind: Option<TokenKind>| TextFormat {
        font_id: font.clone(),
        color,
        underline: if kind == Some(TokenKind::Error) {
            Stroke::new(1.0, color)
        } else {
            Stroke::NONE
        },
        ..TextFormat::default()
    };
    for (range, kind) in highlight(text) {
        if range.start < at || range.end > text.len() {
            continue;
        }
        if range.start > at {
            job.append(&text[at..range.start], 0.0, format(plain, None));
        }
        job.append(
            &text[range.clone()],
            0.0,
            format(token_colour(kind, visuals), Some(kind)),
        );
        at = range.end;
    }
    if at < text.len() {
        job.append(&text[at..], 0.0, format(plain, None));
    }
    job
}

/// Plain monospace layout (Rust cells, prose being edited).
pub fn plain_job(text: &str, font: FontId, visuals: &Visuals) -> LayoutJob {
    LayoutJob::simple(text.to_owned(), font, visuals.text_color(), f32::INFINITY)
}

/// The colour of a token kind, for dark and light themes.
pub fn token_colour(kind: TokenKind, visuals: &Visuals) -> Color32 {
    let dark = visuals.dark_mode;
    let pick = |on_dark: [u8; 3], on_light: [u8; 3]| {
        let [r, g, b] = if dark { on_dark } else { on_light };
        Color32::from_rgb(r, g, b)
    };
    match kind {
        TokenKind::Command => pick([0x7f, 0xb4, 0xff], [0x1f, 0x5f, 0xbf]),
        TokenKind::Subcommand => pick([0x5f, 0xd7, 0xc8], [0x00, 0x80, 0x72]),
        TokenKind::Option => pick([0xe5, 0xa6, 0x5f], [0xa8, 0x5a, 0x00]),
        TokenKind::String => pick([0x9c, 0xcc, 0x65], [0x3b, 0x7d, 0x1f]),
        TokenKind::Number => pick([0xc7, 0x92, 0xea], [0x7a, 0x3e, 0xb0]),
        TokenKind::Path => pick([0xe6, 0xd0, 0x74], [0x8a, 0x6d, 0x00]),
        TokenKind::Comment => visuals.weak_text_color(),
        TokenKind::Error => pick([0xff, 0x6b, 0x6b], [0xc0, 0x1c, 0x28]),
        TokenKind::Rust => pick([0xf0, 0x9a, 0xb0], [0xa0, 0x30, 0x60]),
        TokenKind::Plain => visuals.text_color(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_covers_the_whole_text() {
        let visuals = Visuals::dark();
        for text in [
            "",
            "generate \"To be\" --max-tokens 16  # c",
            "bogus --x",
            "load \"unterminated",
        ] {
            let job = command_job(text, FontId::monospace(12.0), &visuals);
            assert_eq!(job.text, text);
        }
        let job = command_job("info", FontId::monospace(12.0), &visuals);
        assert_eq!(job.sections.len(), 1);
        assert_eq!(
            job.sections[0].format.color,
            token_colour(TokenKind::Command, &visuals)
        );
    }
}
