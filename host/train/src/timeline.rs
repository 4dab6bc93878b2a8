//! Moving through a run's ternary worlds without recomputing anything.
//!
//! Every logged step stores its exact trit flips, each with the trit before and after, so from
//! one known ternary world (a checkpoint's, or an exported model's) the timeline reaches any
//! logged step by applying records forward or backward. This is what `step`, `back` and `seek`
//! in the REPL, workbooks and the GUI's timeline drive; it is cheap enough to scrub.

use crate::checkpoint;
use crate::config::{RunConfig, WeightQuant};
use crate::error::{Result, TrainError};
use crate::export;
use crate::model::{param_specs, ParamKind};
use crate::run::{self, LOG_FILE};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tritlab_engine::weights::WeightSet;
use tritlab_engine::BitNetConfig;
use tritlab_kernels::{quantize_absmean, ScaleGranularity};
use tritlab_morphism::StepRecord;

/// One ternary layer at the timeline's current step.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineLayer {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major trits.
    pub trits: Vec<i8>,
    /// The layer's scale at this step (mean of group scales for per-group models).
    pub scale: f32,
}

pub struct Timeline {
    records: Vec<StepRecord>,
    layers: Vec<TimelineLayer>,
    index: HashMap<String, usize>,
    position: u64,
    origin: PathBuf,
}

impl Timeline {
    /// A timeline whose ternary world at `anchor_step` is `layers`.
    pub fn new(
        origin: PathBuf,
        anchor_step: u64,
        layers: Vec<TimelineLayer>,
        records: Vec<StepRecord>,
    ) -> Result<Self> {
        run::check_consecutive(&origin, &records)?;
        let index: HashMap<String, usize> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        for r in &records {
            for l in &r.layers {
                let Some(&i) = index.get(&l.name) else {
                    return Err(TrainError::Record {
                        step: r.step,
                        message: format!("names layer `{}`, which the model does not have", l.name),
                    });
                };
                let len = (layers[i].rows * layers[i].cols) as u64;
                if l.flips.transitions().total() != len {
                    return Err(TrainError::Record {
                        step: r.step,
                        message: format!(
                            "layer `{}` has {} trits in the log but {len} in the model",
                            l.name,
                            l.flips.transitions().total()
                        ),
                    });
                }
            }
        }
        let t = Timeline {
            records,
            layers,
            index,
            position: anchor_step,
            origin,
        };
        if anchor_step < t.first_step() || anchor_step > t.last_step() {
            return Err(TrainError::Invalid(format!(
                "the anchor world is step {anchor_step}, outside the logged steps {}..={}",
                t.first_step(),
                t.last_step()
            )));
        }
        Ok(t)
    }

    /// A run's timeline, anchored at step 0 (or its earliest checkpoint). Needs neither the data
    /// nor a recomputation.
    pub fn open_run(dir: &Path) -> Result<Self> {
        let config = RunConfig::read(dir)?;
        let (records, _) = run::read_log(&dir.join(LOG_FILE))?;
        let specs = param_specs(&config.model);
        // Step 0 is a function of the seed; later checkpoints only if step 0's file is gone.
        let (first, world) = match checkpoint::checkpoint_steps(dir)?.first() {
            Some(&s) if s > 0 => (
                s,
                checkpoint::load(&checkpoint::checkpoint_path(dir, s), &specs, false)?.world,
            ),
            _ => (0, crate::model::World::init(&specs, config.options.seed)),
        };
        let layers = export::ternary_layers_as(&world, config.options.weight_quant, config.world)?
            .into_iter()
            .map(|l| TimelineLayer {
                scale: l.scale(),
                name: l.name,
                rows: l.rows,
                cols: l.cols,
                trits: l.weights.trits,
            })
            .collect();
        let records = records.into_iter().filter(|r| r.step > first).collect();
        Self::new(dir.to_path_buf(), first, layers, records)
    }

    /// An exported model with a (possibly excerpted) log of the steps that led to it: the model
    /// is the world after the log's last step.
    pub fn open_model(model_dir: &Path, log: &Path) -> Result<Self> {
        let (records, _) = run::read_log(log)?;
        let last = records.last().map_or(0, |r| r.step);
        let config = BitNetConfig::from_file(&model_dir.join("config.json"))?;
        let weights = WeightSet::open(model_dir)?;
        let group = config.weight_group_size(&model_dir.join("config.json"))?;
        let mut layers = Vec::new();
        for spec in param_specs(&config) {
            if spec.kind != ParamKind::Ternary {
                continue;
            }
            let (rows, cols) = spec.matrix();
            let t = weights.get(&spec.name)?;
            let (trits, scale) = if t.dtype == safetensors::Dtype::U8 {
                let trits = tritlab_kernels::pack::hf_unpack(t.bytes(), rows, cols)
                    .map_err(|e| TrainError::format(model_dir, format!("`{}`: {e}", spec.name)))?;
                let s = weights.get(&spec.tensor.hf_scale_name())?.to_f32()?;
                (trits, s.first().copied().unwrap_or(0.0))
            } else {
                let granularity = match group {
                    Some(group_size) => ScaleGranularity::PerGroup { group_size },
                    None => ScaleGranularity::PerTensor,
                };
                let q = quantize_absmean(&t.to_f32()?, rows, cols, granularity)
                    .map_err(|e| TrainError::format(model_dir, format!("`{}`: {e}", spec.name)))?;
                let layer = export::TernaryLayer {
                    name: spec.name.clone(),
                    rows,
                    cols,
                    weights: q,
                };
                (layer.weights.trits.clone(), layer.scale())
            };
            layers.push(TimelineLayer {
                name: spec.name,
                rows,
                cols,
                trits,
                scale,
            });
        }
        Self::new(log.to_path_buf(), last, layers, records)
    }

    /// Where the records came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The step whose ternary world the timeline shows.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The earliest reachable step: the world before the first record.
    pub fn first_step(&self) -> u64 {
        self.records.first().map_or(self.position, |r| r.step - 1)
    }

    pub fn last_step(&self) -> u64 {
        self.records.last().map_or(self.position, |r| r.step)
    }

    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    /// The record of `step` (the morphism from `step - 1` to `step`).
    pub fn record(&self, step: u64) -> Option<&StepRecord> {
        let first = self.records.first()?.step;
        self.records.get(step.checked_sub(first)? as usize)
    }

    /// The record that produced the current world, if it is in the log.
    pub fn current_record(&self) -> Option<&StepRecord> {
        self.record(self.position)
    }

    pub fn layers(&self) -> &[TimelineLayer] {
        &self.layers
    }

    pub fn layer(&self, name: &str) -> Option<&TimelineLayer> {
        self.index.get(name).map(|&i| &self.layers[i])
    }

    fn apply(&mut self, step: u64, forward: bool) -> Result<()> {
        let first = self.records.first().map_or(0, |r| r.step);
        let record = &self.records[(step - first) as usize];
        for l in &record.layers {
            let layer = &mut self.layers[self.index[&l.name]];
            let result = if forward {
                l.flips.apply_forward(&mut layer.trits)
            } else {
                l.flips.apply_backward(&mut layer.trits)
            };
            result.map_err(|e| TrainError::Record {
                step,
                message: format!("layer `{}`: {e}", l.name),
            })?;
            layer.scale = if forward {
                l.scale_after
            } else {
                l.scale_before
            };
        }
        Ok(())
    }

    /// Moves one step forward; `None` at the last logged step.
    pub fn step(&mut self) -> Result<Option<&StepRecord>> {
        if self.position >= self.last_step() {
            return Ok(None);
        }
        self.apply(self.position + 1, true)?;
        self.position += 1;
        Ok(self.current_record())
    }

    /// Moves one step back, returning the record that was undone; `None` at the first step.
    pub fn back(&mut self) -> Result<Option<&StepRecord>> {
        if self.position <= self.first_step() {
            return Ok(None);
        }
        let undone = self.position;
        self.apply(undone, false)?;
        self.position -= 1;
        Ok(self.record(undone))
    }

    /// Moves to `step`, forward or backward.
    pub fn seek(&mut self, step: u64) -> Result<()> {
        if step < self.first_step() || step > self.last_step() {
            return Err(TrainError::Invalid(format!(
                "step {step} is outside the logged steps {}..={}",
                self.first_step(),
                self.last_step()
            )));
        }
        while self.position < step {
            self.step()?;
        }
        while self.position > step {
            self.back()?;
        }
        Ok(())
    }
}

/// Which quantiser a timeline's anchor used (for describing it).
pub fn describe_quant(q: WeightQuant) -> &'static str {
    match q {
        WeightQuant::Tensor => "per-tensor absmean",
        WeightQuant::Group128 => "absmean per group of 128",
    }
}
