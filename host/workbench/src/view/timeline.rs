//! The timeline of the open training run: a scrubber over its steps, step and play buttons, the
//! current step's record, the tracer's colour for every step, loss and flips per step, each
//! layer's 3×3 trit transitions, and a weight image that follows the timeline.
//!
//! Every move is a `seek N` command; while one is on its way the scrubber shows where it is
//! going, and the snapshot after it moves everything else.

use std::time::{Duration, Instant};

use eframe::egui::{
    self, Align2, Color32, FontId, Id, Rect, RichText, Sense, Slider, Stroke, StrokeKind, Ui, Vec2,
};
use egui_plot::{Legend, Line, Plot, VLine};
use tritlab_session::snapshot::{LayerStep, RunSummary, StepSummary};

use crate::app::Action;
use crate::textures::Textures;
use crate::view::outputs::{self, series_colour};
use crate::view::{count, trit_colour};

/// Time between steps while playing.
pub const PLAY_INTERVAL: Duration = Duration::from_millis(150);

/// What the timeline remembers between frames.
#[derive(Debug, Default)]
pub struct TimelineState {
    /// The step asked for and not reached yet.
    pub target: Option<u64>,
    pub playing: bool,
    last_play: Option<Instant>,
    /// The tensor whose weight image is shown.
    pub tensor: Option<String>,
}

impl TimelineState {
    /// Forgets a target the run has reached (or that a failed move will never reach).
    pub fn settle(&mut self, run: Option<&RunSummary>, timeline_busy: bool) {
        match run {
            Some(run) if self.target == Some(run.position) || !timeline_busy => {
                self.target = None;
            }
            None => {
                self.target = None;
                self.playing = false;
            }
            _ => {}
        }
    }

    /// While playing: the next step to go to, when it is time. Stops at the last step.
    pub fn next_play_step(&mut self, run: &RunSummary, timeline_busy: bool) -> Option<u64> {
        if !self.playing || timeline_busy {
            return None;
        }
        if run.position >= run.last {
            self.playing = false;
            return None;
        }
        let now = Instant::now();
        if self
            .last_play
            .is_some_and(|last| now.duration_since(last) < PLAY_INTERVAL)
        {
            return None;
        }
        self.last_play = Some(now);
        Some(run.position + 1)
    }
}

/// The label that says where the run is; tests look for it.
pub fn position_label(run: &RunSummary) -> String {
    format!("step {} of {}–{}", run.position, run.first, run.last)
}

pub fn show(
    ui: &mut Ui,
    run: &RunSummary,
    serial: u64,
    state: &mut TimelineState,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    let shown = state.target.unwrap_or(run.position);
    let mut seek = |state: &mut TimelineState, step: u64| {
        let step = step.clamp(run.first, run.last);
        if step != shown {
            state.target = Some(step);
            actions.push(Action::Seek(step));
        }
    };

    ui.horizontal(|ui| {
        ui.label(RichText::new("Timeline").heading());
        ui.label(RichText::new(run.dir.display().to_string()).small().weak());
    });
    ui.horizontal(|ui| {
        if ui.button("⏮").on_hover_text("First step").clicked() {
            seek(state, run.first);
        }
        if ui.button("⏴").on_hover_text("One step back").clicked() {
            seek(state, shown.saturating_sub(1));
        }
        let play = if state.playing { "⏸" } else { "▶" };
        if ui
            .button(play)
            .on_hover_text(if state.playing { "Pause" } else { "Play" })
            .clicked()
        {
            state.playing = !state.playing;
            if state.playing && run.position >= run.last {
                seek(state, run.first);
            }
        }
        if ui.button("⏵").on_hover_text("One step forward").clicked() {
            seek(state, shown + 1);
        }
        if ui.button("⏭").on_hover_text("Last step").clicked() {
            seek(state, run.last);
        }
        let mut scrub = shown;
        let width = (ui.available_width() - 170.0).max(120.0);
        ui.spacing_mut().slider_width = width;
        let slider = ui.add(Slider::new(&mut scrub, run.first..=run.last).show_value(false));
        if slider.changed() {
            seek(state, scrub);
        }
        ui.label(RichText::new(position_label(run)).monospace());
        if state.target.is_some() {
            ui.spinner();
        }
    });

    colour_strip(ui, run, shown, &mut |step| seek(state, step));
    ui.add_space(4.0);

    // The rest scrolls, so the panel keeps the height it was given.
    egui::ScrollArea::vertical()
        .id_salt("timeline-details")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.columns(3, |columns| {
                step_record(&mut columns[0], run);
                step_plots(&mut columns[1], run);
                weight_image(&mut columns[2], run, serial, state, textures);
            });
            ui.add_space(4.0);
            transitions(ui, run);
        });
}

/// One cell per step in the tracer's colour; the current step is outlined. Clicking or dragging
/// on it moves the timeline.
fn colour_strip(ui: &mut Ui, run: &RunSummary, shown: u64, seek: &mut dyn FnMut(u64)) {
    if run.steps.is_empty() {
        return;
    }
    let height = 16.0;
    let (rect, response) = ui.allocate_exact_size(
        Vec2::new(ui.available_width(), height),
        Sense::click_and_drag(),
    );
    let painter = ui.painter_at(rect);
    let n = run.steps.len() as f32;
    let width = rect.width() / n;
    let neutral = ui.visuals().widgets.inactive.bg_fill;
    for (i, step) in run.steps.iter().enumerate() {
        let x = rect.left() + i as f32 * width;
        let cell =
            Rect::from_min_size(egui::pos2(x, rect.top()), Vec2::new(width.max(1.0), height));
        let fill = step
            .colour
            .map_or(neutral, |[r, g, b]| Color32::from_rgb(r, g, b));
        painter.rect_filled(cell, 0.0, fill);
        if step.step == shown {
            painter.rect_stroke(
                cell.expand(1.0),
                1.0,
                Stroke::new(2.0, ui.visuals().strong_text_color()),
                StrokeKind::Outside,
            );
        }
    }
    let step_at = |x: f32| {
        let i = (((x - rect.left()) / width).floor().max(0.0) as usize).min(run.steps.len() - 1);
        &run.steps[i]
    };
    if let Some(pointer) = response.interact_pointer_pos() {
        if response.clicked() || response.dragged() {
            seek(step_at(pointer.x).step);
        }
    }
    if let Some(pointer) = response.hover_pos() {
        let step = step_at(pointer.x);
        response.on_hover_ui_at_pointer(|ui| step_tooltip(ui, step));
    }
}

fn step_tooltip(ui: &mut Ui, step: &StepSummary) {
    ui.label(RichText::new(format!("step {}", step.step)).strong());
    ui.label(format!("loss {:.4}", step.loss));
    ui.label(format!("{} trits flipped", count(step.flips)));
    if let Some([r, g, b]) = step.colour {
        ui.label(format!("tracer colour #{r:02x}{g:02x}{b:02x}"));
    }
}

fn step_record(ui: &mut Ui, run: &RunSummary) {
    ui.label(RichText::new("This step").strong());
    let Some(step) = run.steps.iter().find(|s| s.step == run.position) else {
        ui.label("The initial weights: no step has been applied.");
        return;
    };
    egui::Grid::new("step-record")
        .num_columns(2)
        .spacing([12.0, 2.0])
        .show(ui, |ui| {
            let row = |ui: &mut Ui, name: &str, value: String| {
                ui.label(name);
                ui.label(RichText::new(value).monospace());
                ui.end_row();
            };
            row(ui, "loss", format!("{:.4}", step.loss));
            row(ui, "learning rate", format!("{:.3e}", step.learning_rate));
            row(ui, "gradient norm", format!("{:.4}", step.grad_norm));
            row(ui, "trits flipped", count(step.flips));
            row(ui, "Σ mod 3 after", step.gf3.to_string());
            if let Some([r, g, b]) = step.colour {
                ui.label("tracer colour");
                let colour = Color32::from_rgb(r, g, b);
                let (rect, _) = ui.allocate_exact_size(Vec2::new(48.0, 14.0), Sense::hover());
                ui.painter().rect_filled(rect, 2.0, colour);
                ui.end_row();
            }
        });
}

fn step_plots(ui: &mut Ui, run: &RunSummary) {
    let loss: Vec<[f64; 2]> = run.steps.iter().map(|s| [s.step as f64, s.loss]).collect();
    let flips: Vec<[f64; 2]> = run
        .steps
        .iter()
        .map(|s| [s.step as f64, s.flips as f64])
        .collect();
    let link = Id::unique("timeline-plots");
    for (name, points, colour) in [("loss", loss, 0), ("flips per step", flips, 1)] {
        Plot::new(("timeline-plot", name))
            .height(90.0)
            .legend(Legend::default())
            .allow_scroll(false)
            .link_axis(link, [true, false])
            .show(ui, |plot_ui| {
                for segment in outputs::segments(&points) {
                    plot_ui.line(Line::new(name, segment).color(series_colour(colour)));
                }
                plot_ui.vline(
                    VLine::new("", run.position as f64)
                        .color(Color32::from_gray(140))
                        .width(1.0),
                );
            });
    }
}

fn weight_image(
    ui: &mut Ui,
    run: &RunSummary,
    serial: u64,
    state: &mut TimelineState,
    textures: &mut Textures,
) {
    if run.tensors.is_empty() {
        return;
    }
    let selected = state
        .tensor
        .clone()
        .filter(|name| run.tensors.iter().any(|t| &t.name == name))
        .unwrap_or_else(|| run.tensors[0].name.clone());
    egui::ComboBox::from_id_salt("timeline-tensor")
        .selected_text(RichText::new(&selected).monospace().small())
        .width(ui.available_width())
        .show_ui(ui, |ui| {
            for tensor in &run.tensors {
                let label = RichText::new(&tensor.name).monospace().small();
                if ui
                    .selectable_label(tensor.name == selected, label)
                    .clicked()
                {
                    state.tensor = Some(tensor.name.clone());
                }
            }
        });
    let Some(tensor) = run.tensors.iter().find(|t| t.name == selected) else {
        return;
    };
    ui.label(
        RichText::new(format!(
            "−1 {} · 0 {} · +1 {} · Σ mod 3 = {}",
            count(tensor.neg),
            count(tensor.zero),
            count(tensor.pos),
            tensor.gf3
        ))
        .small(),
    );
    if let Some(image) = &tensor.thumbnail {
        let id = Id::unique(("timeline-weights", serial, &tensor.name));
        outputs::show_image(ui, image, id, 180.0, textures);
    }
}

/// Each layer's 3×3 matrix of trit transitions in the current step: row = before, column =
/// after, in the order −1, 0, +1. Off-diagonal cells are the flips.
fn transitions(ui: &mut Ui, run: &RunSummary) {
    if run.current.is_empty() {
        return;
    }
    egui::CollapsingHeader::new(RichText::new("Trit transitions in this step").strong())
        .default_open(true)
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for layer in &run.current {
                    matrix(ui, layer);
                }
            });
        });
}

fn matrix(ui: &mut Ui, layer: &LayerStep) {
    let cell = Vec2::new(46.0, 15.0);
    let label_width = 18.0;
    let title_height = 14.0;
    let size = Vec2::new(label_width + 3.0 * cell.x, title_height + 4.0 * cell.y);
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    let weak = ui.visuals().weak_text_color();
    let short = layer
        .name
        .trim_start_matches("layers.")
        .trim_end_matches(".weight");
    painter.text(
        rect.left_top(),
        Align2::LEFT_TOP,
        short,
        FontId::monospace(10.0),
        text,
    );
    let flips: u64 = (0..3)
        .flat_map(|i| (0..3).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| layer.transitions[i][j])
        .sum();
    let max_flip = (0..3)
        .flat_map(|i| (0..3).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| layer.transitions[i][j])
        .max()
        .unwrap_or(0)
        .max(1);
    let origin = rect.left_top() + Vec2::new(label_width, title_height);
    for (j, name) in ["−1", "0", "+1"].iter().enumerate() {
        painter.text(
            origin + Vec2::new((j as f32 + 0.5) * cell.x, cell.y * 0.5),
            Align2::CENTER_CENTER,
            name,
            FontId::monospace(9.0),
            trit_colour(j as i8 - 1),
        );
    }
    for i in 0..3 {
        let y = origin.y + (i as f32 + 1.0) * cell.y;
        painter.text(
            egui::pos2(rect.left() + label_width * 0.5, y + cell.y * 0.5),
            Align2::CENTER_CENTER,
            ["−1", "0", "+1"][i],
            FontId::monospace(9.0),
            trit_colour(i as i8 - 1),
        );
        for j in 0..3 {
            let n = layer.transitions[i][j];
            let cell_rect =
                Rect::from_min_size(egui::pos2(origin.x + j as f32 * cell.x, y), cell).shrink(0.5);
            let fill = if i == j {
                ui.visuals().faint_bg_color
            } else {
                let strength = (n as f32 / max_flip as f32).sqrt();
                Color32::from_rgba_unmultiplied(0xe4, 0x57, 0x2e, (strength * 200.0) as u8)
            };
            painter.rect_filled(cell_rect, 1.0, fill);
            painter.text(
                cell_rect.center(),
                Align2::CENTER_CENTER,
                compact(n),
                FontId::monospace(9.0),
                if i == j { weak } else { text },
            );
        }
    }
    response.on_hover_ui(|ui| {
        ui.label(RichText::new(&layer.name).monospace().strong());
        ui.label(format!(
            "{} trits flipped (row: before, column: after)",
            count(flips)
        ));
        ui.label(format!(
            "Σ mod 3: {} → {}, scale {:.4e} → {:.4e}",
            layer.gf3_before, layer.gf3_after, layer.scale_before, layer.scale_after
        ));
    });
    ui.add_space(8.0);
}

/// A count in at most five characters: 999, 12.3k, 4.5M.
fn compact(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn run(position: u64) -> RunSummary {
        RunSummary {
            dir: PathBuf::from("runs/x"),
            first: 0,
            last: 3,
            position,
            steps: Vec::new(),
            current: Vec::new(),
            tensors: Vec::new(),
        }
    }

    #[test]
    fn playing_steps_forward_and_stops_at_the_end() {
        let mut state = TimelineState {
            playing: true,
            ..TimelineState::default()
        };
        assert_eq!(state.next_play_step(&run(1), false), Some(2));
        assert_eq!(state.next_play_step(&run(2), false), None, "too soon");
        assert_eq!(
            state.next_play_step(&run(2), true),
            None,
            "a move is on its way"
        );
        assert_eq!(state.next_play_step(&run(3), false), None);
        assert!(!state.playing);
    }

    #[test]
    fn a_target_is_forgotten_once_reached() {
        let mut state = TimelineState {
            target: Some(2),
            ..TimelineState::default()
        };
        state.settle(Some(&run(1)), true);
        assert_eq!(state.target, Some(2));
        state.settle(Some(&run(2)), true);
        assert_eq!(state.target, None);
        assert_eq!(compact(12_345), "12.3k");
        assert_eq!(position_label(&run(2)), "step 2 of 0–3");
    }
}
