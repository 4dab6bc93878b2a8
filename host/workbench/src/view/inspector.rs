//! The inspector: the loaded model's ternary tensors (trit counts, GF(3) sums, a thumbnail of
//! each) and the plugins, with switches, options and their last errors.

use std::collections::HashMap;

use eframe::egui::{self, Align, CollapsingHeader, Id, Layout, RichText, TextEdit, Ui, Vec2};
use tritlab_session::lang::{self, Command};
use tritlab_session::snapshot::{PluginRow, Snapshot, TensorRow};

use crate::app::Action;
use crate::textures::Textures;
use crate::view::{count, error_colour, trit_colour};

/// What the inspector remembers between frames.
#[derive(Debug, Default)]
pub struct InspectorState {
    /// Shows only tensors whose name contains this.
    pub filter: String,
    /// Option values being typed, by (plugin, option).
    pub option_drafts: HashMap<(String, String), String>,
}

pub fn show(
    ui: &mut Ui,
    snapshot: &Snapshot,
    serial: u64,
    ready: bool,
    state: &mut InspectorState,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    egui::ScrollArea::vertical()
        .id_salt("inspector")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if !ready {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Starting the session: loading the model and plugins…");
                });
                return;
            }
            CollapsingHeader::new(RichText::new("Model").heading())
                .default_open(true)
                .show(ui, |ui| {
                    model_section(ui, snapshot, serial, state, textures, actions)
                });
            ui.add_space(6.0);
            CollapsingHeader::new(RichText::new("Plugins").heading())
                .default_open(true)
                .show(ui, |ui| plugin_section(ui, snapshot, state, actions));
            if !snapshot.notes.is_empty() {
                ui.add_space(6.0);
                CollapsingHeader::new("Notes")
                    .default_open(true)
                    .show(ui, |ui| {
                        for note in &snapshot.notes {
                            ui.label(RichText::new(note).small());
                        }
                    });
            }
        });
}

fn model_section(
    ui: &mut Ui,
    snapshot: &Snapshot,
    serial: u64,
    state: &mut InspectorState,
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    let Some(model) = &snapshot.model else {
        ui.label("No model is loaded.");
        if ui.button("Load the default model").clicked() {
            actions.push(Action::RunLine(
                Command::Load(lang::Load::new(lang::ModelRef::Default)).to_string(),
            ));
        }
        return;
    };
    ui.label(RichText::new(&model.name).strong());
    ui.label(
        RichText::new(model.path.display().to_string())
            .small()
            .weak(),
    );
    ui.label(format!(
        "{} layers · d_model {} · vocabulary {}",
        model.layers, model.hidden, model.vocab
    ));
    let total = model.total_trits();
    let (neg, zero, pos) = (total.neg, total.zero, total.pos);
    let gf3 = total.gf3_sum();
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("{} ternary weights:", count(neg + zero + pos)));
        trit_count(ui, -1, neg);
        trit_count(ui, 0, zero);
        trit_count(ui, 1, pos);
        ui.label(format!("Σ mod 3 = {gf3}"));
    });
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label("Filter");
        ui.add(
            TextEdit::singleline(&mut state.filter)
                .hint_text("tensor name")
                .desired_width(160.0),
        );
    });
    tensor_table(
        ui,
        "model-tensors",
        &model.tensors,
        &state.filter,
        ("model", serial),
        textures,
        actions,
    );
}

fn trit_count(ui: &mut Ui, trit: i8, n: u64) {
    let name = match trit {
        -1 => "−1",
        0 => "0",
        _ => "+1",
    };
    ui.label(RichText::new(format!("{name} {}", count(n))).color(trit_colour(trit)));
}

/// One row per ternary tensor: a thumbnail, its name and shape, trit counts, Σ mod 3, scale.
/// Clicking a name draws the tensor in a new cell (`show NAME`).
pub fn tensor_table(
    ui: &mut Ui,
    id: &str,
    tensors: &[TensorRow],
    filter: &str,
    texture_salt: (&str, u64),
    textures: &mut Textures,
    actions: &mut Vec<Action>,
) {
    egui::Grid::new(id)
        .striped(true)
        .num_columns(7)
        .spacing([10.0, 3.0])
        .show(ui, |ui| {
            ui.label("");
            ui.label(RichText::new("tensor").strong());
            for (trit, name) in [(-1, "−1"), (0, "0"), (1, "+1")] {
                ui.label(RichText::new(name).strong().color(trit_colour(trit)));
            }
            ui.label(RichText::new("Σ mod 3").strong());
            ui.label(RichText::new("scale").strong());
            ui.end_row();
            for tensor in tensors.iter().filter(|t| t.name.contains(filter)) {
                match &tensor.thumbnail {
                    Some(image) => {
                        let texture = textures.get(
                            ui.ctx(),
                            Id::unique(("thumbnail", texture_salt, &tensor.name)),
                            image,
                        );
                        let size = Vec2::new(image.width() as f32, image.height() as f32);
                        let small = size * (28.0 / size.max_elem());
                        ui.add(egui::Image::from_texture((texture.id(), small)))
                            .on_hover_ui(|ui| {
                                ui.label(format!("{}×{}", tensor.rows, tensor.cols));
                                let big = size * (192.0 / size.max_elem());
                                ui.add(egui::Image::from_texture((texture.id(), big)));
                            });
                    }
                    None => {
                        ui.label("");
                    }
                }
                let name = ui
                    .link(RichText::new(&tensor.name).monospace().small())
                    .on_hover_text(format!(
                        "{}×{} — click to draw it in a new cell",
                        tensor.rows, tensor.cols
                    ));
                if name.clicked() {
                    let show = Command::Show(lang::Show {
                        tensor: tensor.name.clone(),
                        with: None,
                        step: None,
                    });
                    actions.push(Action::RunLine(show.to_string()));
                }
                for n in [tensor.neg, tensor.zero, tensor.pos] {
                    ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                        ui.label(RichText::new(count(n)).small());
                    });
                }
                ui.label(tensor.gf3.to_string());
                ui.label(RichText::new(format!("{:.3e}", tensor.scale)).small());
                ui.end_row();
            }
        });
}

fn plugin_section(
    ui: &mut Ui,
    snapshot: &Snapshot,
    state: &mut InspectorState,
    actions: &mut Vec<Action>,
) {
    if let Some(problem) = &snapshot.plugin_problem {
        ui.label(RichText::new(problem).color(error_colour(ui.visuals())));
    }
    if snapshot.plugins.is_empty() {
        ui.label("No plugins are loaded.");
        ui.label(
            RichText::new("scripts/build-plugins.sh builds the bundled ones; `plugin load PATH` loads another.")
                .small()
                .weak(),
        );
        return;
    }
    for plugin in &snapshot.plugins {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            plugin_card(ui, plugin, state, actions);
        });
    }
}

fn plugin_card(
    ui: &mut Ui,
    plugin: &PluginRow,
    state: &mut InspectorState,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        let mut enabled = plugin.enabled;
        let toggle = ui
            .checkbox(&mut enabled, RichText::new(&plugin.name).strong())
            .on_hover_text(if plugin.enabled { "Disable" } else { "Enable" });
        if toggle.changed() {
            let name = plugin.name.clone();
            actions.push(Action::PluginCommand(if enabled {
                lang::Plugin::Enable { name }
            } else {
                lang::Plugin::Disable { name }
            }));
        }
        ui.label(RichText::new(&plugin.kind).small());
        ui.label(RichText::new(format!("v{}", plugin.version)).small().weak());
    });
    if !plugin.description.is_empty() {
        ui.label(RichText::new(&plugin.description).small().weak());
    }
    if !plugin.options.is_empty() {
        egui::Grid::new(("plugin-options", &plugin.name))
            .num_columns(3)
            .spacing([6.0, 2.0])
            .show(ui, |ui| {
                for (name, description, default) in &plugin.options {
                    let label = ui
                        .label(RichText::new(name).monospace().small())
                        .on_hover_text(description);
                    let draft = state
                        .option_drafts
                        .entry((plugin.name.clone(), name.clone()))
                        .or_insert_with(|| default.clone());
                    let edit = ui
                        .add(TextEdit::singleline(draft).desired_width(90.0))
                        .labelled_by(label.id);
                    let submit = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    if ui.small_button("Set").clicked() || submit {
                        actions.push(Action::PluginCommand(lang::Plugin::Set {
                            name: plugin.name.clone(),
                            key: name.clone(),
                            value: draft.clone(),
                        }));
                    }
                    ui.end_row();
                }
            });
    }
    if plugin.failures > 0 || plugin.last_error.is_some() {
        let red = error_colour(ui.visuals());
        if let Some(error) = &plugin.last_error {
            ui.label(
                RichText::new(format!("last error: {error}"))
                    .small()
                    .color(red),
            );
        }
        if plugin.failures > 0 {
            ui.label(
                RichText::new(format!("{} failed calls", plugin.failures))
                    .small()
                    .color(red),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use tritlab_session::lang::{parse, Command, Plugin};

    /// Plugin option values of any text reach the plugin unchanged: the command is rendered
    /// canonically and parses back to the same value.
    #[test]
    fn plugin_values_parse_back() {
        for value in ["42", "a b", "-3", "", "say \"hi\"\n", "#fff", "x\\y"] {
            let command = Command::Plugin(Plugin::Set {
                name: "gay-tracer".into(),
                key: "seed".into(),
                value: value.into(),
            });
            let line = command.to_string();
            assert_eq!(parse(&line).as_ref(), Ok(&command), "{line}");
        }
    }
}
