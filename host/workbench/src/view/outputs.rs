//! Drawing a cell's typed outputs: text, coloured token traces, zoomable images, plots, tables
//! and errors, plus what a running cell has streamed so far.

use eframe::egui::{
    self, text::LayoutJob, Align2, Color32, CornerRadius, FontId, Frame, Id, Margin, Pos2, Rect,
    RichText, Role, Sense, Stroke, StrokeKind, TextFormat, Ui, Vec2, WidgetInfo,
};
use egui_plot::{Legend, Line, Plot as PlotWidget};
use tritlab_workbook::{Image, Output, Plot, Table, TraceToken};

use crate::engine::LiveOutput;
use crate::textures::Textures;
use crate::view::{colour, error_colour, text_on};

/// Rows of a table drawn before the rest are summarised.
const MAX_TABLE_ROWS: usize = 400;

/// Draws one output. `id` must be unique to this output and change when its contents can have
/// changed (it names the image's texture).
pub fn show(ui: &mut Ui, output: &Output, id: Id, textures: &mut Textures) {
    match output {
        Output::Text(text) => show_text(ui, text),
        Output::Error(message) => show_error(ui, message),
        Output::Trace(trace) => show_trace(ui, trace.title.as_deref(), &trace.tokens),
        Output::Image(image) => show_image(ui, image, id, 420.0, textures),
        Output::Plot(plot) => show_plot(ui, plot, id),
        Output::Table(table) => show_table(ui, table, id),
    }
}

/// What a running cell has produced so far: its token stream and its lines of text.
pub fn show_live(ui: &mut Ui, live: &LiveOutput) {
    if !live.tokens.is_empty() {
        show_trace(ui, None, &live.tokens);
    }
    if !live.lines.is_empty() {
        // The latest lines only: a long training run streams one per step.
        const SHOWN: usize = 12;
        let skipped = live.lines.len().saturating_sub(SHOWN);
        let mut text = String::new();
        if skipped > 0 {
            text.push_str(&format!("… {skipped} earlier lines\n"));
        }
        text.push_str(&live.lines[skipped..].join("\n"));
        show_text(ui, &text);
    }
}

pub fn show_text(ui: &mut Ui, text: &str) {
    output_frame(ui, None).show(ui, |ui| {
        ui.add(egui::Label::new(RichText::new(text.trim_end_matches('\n')).monospace()).wrap());
    });
}

pub fn show_error(ui: &mut Ui, message: &str) {
    let red = error_colour(ui.visuals());
    output_frame(ui, Some(red)).show(ui, |ui| {
        ui.add(
            egui::Label::new(
                RichText::new(message.trim_end_matches('\n'))
                    .monospace()
                    .color(red),
            )
            .wrap(),
        );
    });
}

fn output_frame(ui: &Ui, accent: Option<Color32>) -> Frame {
    let visuals = ui.visuals();
    Frame::new()
        .fill(visuals.extreme_bg_color)
        .stroke(Stroke::new(
            1.0,
            accent.unwrap_or(visuals.widgets.noninteractive.bg_stroke.color),
        ))
        .corner_radius(CornerRadius::same(4))
        .inner_margin(Margin::symmetric(8, 6))
}

fn title(ui: &mut Ui, title: Option<&str>) {
    if let Some(title) = title.filter(|t| !t.is_empty()) {
        ui.label(RichText::new(title).strong());
    }
}

/// Generated tokens as one wrapped run of text, each token on its tracer's colour with black or
/// white text by luminance; hovering a token shows its trit and note.
pub fn show_trace(ui: &mut Ui, heading: Option<&str>, tokens: &[TraceToken]) {
    title(ui, heading);
    output_frame(ui, None).show(ui, |ui| {
        ui.set_width(ui.available_width());
        let font = FontId::monospace(14.0);
        let plain = ui.visuals().text_color();
        let mut job = LayoutJob::default();
        job.wrap.max_width = ui.available_width();
        // Char offset where each token ends, to find the token under the pointer.
        let mut ends = Vec::with_capacity(tokens.len());
        let mut chars = 0;
        for token in tokens {
            let shown = visible_token_text(&token.text);
            let (background, color) = match token.rgb {
                Some(rgb) => (colour(rgb), text_on(rgb)),
                None => (Color32::TRANSPARENT, plain),
            };
            job.append(
                &shown,
                0.0,
                TextFormat {
                    font_id: font.clone(),
                    color,
                    background,
                    ..TextFormat::default()
                },
            );
            chars += shown.chars().count();
            ends.push(chars);
        }
        let galley = ui.fonts_mut(|fonts| fonts.layout_job(job));
        let (rect, response) = ui.allocate_exact_size(galley.size(), Sense::hover());
        let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
        response.widget_info(|| WidgetInfo::labeled(Role::Label, true, &text));
        ui.painter().galley(rect.min, galley.clone(), plain);

        let Some(pointer) = response.hover_pos() else {
            return;
        };
        // The caret nearest the pointer sits between two glyphs: the glyph under the pointer is
        // the one after the caret when the pointer is right of it, else the one before.
        let caret = galley.cursor_from_pos(pointer - rect.min);
        let caret_x = galley.pos_from_cursor(caret).min.x;
        let glyph = if pointer.x - rect.min.x < caret_x {
            caret.index.0.saturating_sub(1)
        } else {
            caret.index.0
        };
        let index = ends.partition_point(|&end| end <= glyph);
        if let Some(token) = tokens.get(index) {
            response.on_hover_ui_at_pointer(|ui| token_tooltip(ui, index, token));
        }
    });
}

fn token_tooltip(ui: &mut Ui, index: usize, token: &TraceToken) {
    ui.label(
        RichText::new(format!("{:?}", token.text))
            .monospace()
            .strong(),
    );
    egui::Grid::new("token-tooltip")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("token");
            ui.label(format!("#{}", index + 1));
            ui.end_row();
            if let Some(trit) = token.trit {
                ui.label("trit");
                ui.label(trit.to_string());
                ui.end_row();
            }
            if let Some(rgb) = token.rgb {
                ui.label("colour");
                ui.label(
                    RichText::new(rgb.to_string())
                        .background_color(colour(rgb))
                        .color(text_on(rgb)),
                );
                ui.end_row();
            }
        });
    if let Some(note) = token.note.as_deref().filter(|n| !n.is_empty()) {
        ui.label(note);
    }
}

/// A token's text with invisible characters made visible: a newline shows as ↵ and breaks the
/// line, a tab as →.
fn visible_token_text(text: &str) -> String {
    if text.is_empty() {
        return "∅".to_owned();
    }
    text.replace('\n', "↵\n").replace('\t', "→")
}

/// How an image view is zoomed and panned; kept in egui's memory per image.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ImageView {
    /// 1 shows the whole image; 2 shows half of it in each direction.
    zoom: f32,
    /// The image point at the centre of the view, in texture coordinates (0..1).
    centre: Pos2,
}

impl Default for ImageView {
    fn default() -> Self {
        ImageView {
            zoom: 1.0,
            centre: Pos2::new(0.5, 0.5),
        }
    }
}

impl ImageView {
    const MAX_ZOOM: f32 = 64.0;

    /// The part of the texture shown.
    fn uv(&self) -> Rect {
        Rect::from_center_size(self.centre, Vec2::splat(1.0 / self.zoom))
    }

    fn clamp(&mut self) {
        self.zoom = self.zoom.clamp(1.0, Self::MAX_ZOOM);
        let half = 0.5 / self.zoom;
        self.centre.x = self.centre.x.clamp(half, 1.0 - half);
        self.centre.y = self.centre.y.clamp(half, 1.0 - half);
    }

    /// Zooms by `factor` keeping the texture point under `at` (0..1 within the view) in place.
    fn zoom_at(&mut self, factor: f32, at: Vec2) {
        let uv = self.uv();
        let fixed = uv.min + at * uv.size();
        self.zoom = (self.zoom * factor).clamp(1.0, Self::MAX_ZOOM);
        let span = 1.0 / self.zoom;
        self.centre = fixed - at * span + Vec2::splat(span / 2.0);
        self.clamp();
    }
}

/// An image that zooms with the scroll wheel (around the pointer), pans by dragging and resets
/// on a double click; hovering shows the pixel's row and column. It fits the width available
/// and at most `max_height` points.
pub fn show_image(ui: &mut Ui, image: &Image, id: Id, max_height: f32, textures: &mut Textures) {
    title(ui, image.title());
    let texture = textures.get(ui.ctx(), id, image);
    let (width, height) = (image.width() as f32, image.height() as f32);
    // Small images are magnified up to 32×: trit maps are often a few dozen cells wide.
    let scale = (ui.available_width() / width)
        .min(max_height / height)
        .min(32.0);
    let size = Vec2::new(width, height) * scale.max(f32::MIN_POSITIVE);
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    response.widget_info(|| {
        WidgetInfo::labeled(
            Role::Image,
            true,
            format!(
                "{} {}×{}",
                image.title().unwrap_or("image"),
                image.width(),
                image.height()
            ),
        )
    });

    let view_id = id.with("view");
    let mut view: ImageView = ui.data(|d| d.get_temp(view_id)).unwrap_or_default();
    if response.double_clicked() {
        view = ImageView::default();
    }
    if response.dragged() {
        let delta = response.drag_delta() / rect.size() / view.zoom;
        view.centre -= delta;
        view.clamp();
    }
    if let Some(pointer) = response.hover_pos() {
        let at = (pointer - rect.min) / rect.size();
        // Wheel zooms the image instead of scrolling the page; pinch (ctrl+wheel) does too.
        let wheel = ui.input_mut(|input| {
            let wheel = input.smooth_scroll_delta.y;
            input.smooth_scroll_delta = Vec2::ZERO;
            wheel
        });
        let factor = ui.input(|input| input.zoom_delta()) * (wheel / 200.0).exp();
        if factor != 1.0 {
            view.zoom_at(factor, at);
        }
    }
    ui.data_mut(|d| d.insert_temp(view_id, view));

    let painter = ui.painter_at(rect);
    painter.image(texture.id(), rect, view.uv(), Color32::WHITE);
    painter.rect_stroke(
        rect,
        0.0,
        ui.visuals().widgets.noninteractive.bg_stroke,
        StrokeKind::Outside,
    );
    if view.zoom > 1.0 {
        painter.text(
            rect.right_bottom() - Vec2::splat(4.0),
            Align2::RIGHT_BOTTOM,
            format!("{:.0}%", view.zoom * 100.0),
            FontId::proportional(11.0),
            Color32::WHITE,
        );
    }
    if let Some(pointer) = response.hover_pos() {
        let uv = view.uv();
        let texel = uv.min + (pointer - rect.min) / rect.size() * uv.size();
        let col = ((texel.x * width) as u32).min(image.width() - 1);
        let row = ((texel.y * height) as u32).min(image.height() - 1);
        response.on_hover_text_at_pointer(format!(
            "row {row}, column {col}\nwheel zooms, drag pans, double-click resets"
        ));
    }
}

/// Colours the plot's series are drawn in, in order.
const SERIES_COLOURS: [Color32; 6] = [
    Color32::from_rgb(0x1f, 0x77, 0xb4),
    Color32::from_rgb(0xff, 0x7f, 0x0e),
    Color32::from_rgb(0x2c, 0xa0, 0x2c),
    Color32::from_rgb(0xd6, 0x27, 0x28),
    Color32::from_rgb(0x94, 0x67, 0xbd),
    Color32::from_rgb(0x8c, 0x56, 0x4b),
];

pub fn series_colour(index: usize) -> Color32 {
    SERIES_COLOURS[index % SERIES_COLOURS.len()]
}

/// A line plot; a non-finite coordinate breaks its line.
pub fn show_plot(ui: &mut Ui, plot: &Plot, id: Id) {
    title(ui, plot.title.as_deref());
    let mut widget = PlotWidget::new(id.with("plot"))
        .height(220.0)
        .legend(Legend::default());
    if !plot.x_label.is_empty() {
        widget = widget.x_axis_label(plot.x_label.clone());
    }
    if !plot.y_label.is_empty() {
        widget = widget.y_axis_label(plot.y_label.clone());
    }
    widget.show(ui, |plot_ui| {
        for (i, series) in plot.series.iter().enumerate() {
            for segment in segments(&series.points) {
                plot_ui.line(
                    Line::new(series.name.clone(), segment)
                        .color(series_colour(i))
                        .width(1.5),
                );
            }
        }
    });
}

/// The runs of finite points between gaps.
pub fn segments(points: &[[f64; 2]]) -> Vec<Vec<[f64; 2]>> {
    points
        .split(|[x, y]| !x.is_finite() || !y.is_finite())
        .filter(|run| !run.is_empty())
        .map(<[_]>::to_vec)
        .collect()
}

/// A table of strings; ragged rows are padded.
pub fn show_table(ui: &mut Ui, table: &Table, id: Id) {
    title(ui, table.title.as_deref());
    let width = table.width();
    if width == 0 {
        ui.weak("(empty table)");
        return;
    }
    output_frame(ui, None).show(ui, |ui| {
        egui::ScrollArea::horizontal()
            .id_salt(id.with("scroll"))
            .show(ui, |ui| {
                egui::Grid::new(id.with("grid"))
                    .striped(true)
                    .num_columns(width)
                    .spacing([16.0, 2.0])
                    .show(ui, |ui| {
                        let has_header = table.columns.iter().any(|c| !c.is_empty());
                        if has_header {
                            for i in 0..width {
                                let name = table.columns.get(i).map_or("", String::as_str);
                                ui.label(RichText::new(name).strong());
                            }
                            ui.end_row();
                        }
                        for row in table.rows.iter().take(MAX_TABLE_ROWS) {
                            for i in 0..width {
                                let cell = row.get(i).map_or("", String::as_str);
                                if looks_numeric(cell) {
                                    ui.with_layout(
                                        egui::Layout::right_to_left(egui::Align::Center),
                                        |ui| ui.monospace(cell),
                                    );
                                } else {
                                    ui.monospace(cell);
                                }
                            }
                            ui.end_row();
                        }
                    });
                if table.rows.len() > MAX_TABLE_ROWS {
                    ui.weak(format!(
                        "… {} more rows (the file and exports keep all of them)",
                        table.rows.len() - MAX_TABLE_ROWS
                    ));
                }
            });
    });
}

fn looks_numeric(cell: &str) -> bool {
    !cell.is_empty()
        && cell
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E' | '×' | ' '))
        && cell.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_lines() {
        let nan = f64::NAN;
        let runs = segments(&[[0.0, 1.0], [1.0, nan], [2.0, 2.0], [3.0, 3.0], [nan, 0.0]]);
        assert_eq!(runs, vec![vec![[0.0, 1.0]], vec![[2.0, 2.0], [3.0, 3.0]]]);
    }

    #[test]
    fn zoom_keeps_the_point_under_the_pointer() {
        let mut view = ImageView::default();
        view.zoom_at(4.0, Vec2::new(0.25, 0.75));
        let uv = view.uv();
        let under = uv.min + Vec2::new(0.25, 0.75) * uv.size();
        assert!((under - Pos2::new(0.25, 0.75)).length() < 1e-5);
        view.zoom_at(0.01, Vec2::new(0.5, 0.5));
        assert_eq!(view, ImageView::default());
    }

    #[test]
    fn invisible_characters_show() {
        assert_eq!(visible_token_text("a\nb"), "a↵\nb");
        assert_eq!(visible_token_text(""), "∅");
        assert!(looks_numeric("1201") && looks_numeric("-3.5e-2") && !looks_numeric("q_proj"));
    }
}
