//! Drawing: each panel is a function of the state it shows, returning the [`Action`]s a person
//! asked for. Nothing here changes the document or talks to the engine.
//!
//! [`Action`]: crate::app::Action

pub mod dialogs;
pub mod inspector;
pub mod notebook;
pub mod outputs;
pub mod syntax;
pub mod timeline;

use eframe::egui::{Color32, Visuals};
use tritlab_workbook::Rgb;

/// An sRGB colour from a tracer or visualiser.
pub fn colour(rgb: Rgb) -> Color32 {
    let [r, g, b] = rgb.0;
    Color32::from_rgb(r, g, b)
}

/// Black or white text on a tracer's colour, whichever reads better.
pub fn text_on(rgb: Rgb) -> Color32 {
    colour(rgb.contrasting_text())
}

/// The colour of error messages.
pub fn error_colour(visuals: &Visuals) -> Color32 {
    if visuals.dark_mode {
        Color32::from_rgb(0xff, 0x6b, 0x6b)
    } else {
        Color32::from_rgb(0xc0, 0x1c, 0x28)
    }
}

/// Colours of −1, 0 and +1 in tables and matrices (the trit visualiser's palette).
pub fn trit_colour(trit: i8) -> Color32 {
    match trit {
        -1 => Color32::from_rgb(0xd6, 0x27, 0x28),
        0 => Color32::from_rgb(0x9a, 0x9a, 0x9a),
        _ => Color32::from_rgb(0x1f, 0x77, 0xb4),
    }
}

/// A count with thousands separators: 1,234,567.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_group_thousands() {
        assert_eq!(super::count(0), "0");
        assert_eq!(super::count(999), "999");
        assert_eq!(super::count(1234567), "1,234,567");
    }
}
