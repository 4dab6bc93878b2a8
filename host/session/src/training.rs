//! Session commands about training: `train`, `log`, `replay`, and moving through a run's
//! timeline (`seek`, `step`, `back`), each step handed to the tracer plugins.

use crate::convert;
use crate::error::SessionError;
use crate::lang::{self, PlotSeries};
use crate::session::{CmdResult, Context, LiveEvent, Move, OpenRun, Session};
use std::path::{Path, PathBuf};
use tritlab_morphism::StepRecord;
use tritlab_plugin_host::PluginKind;
use tritlab_train::replay::Verification;
use tritlab_train::{
    replay, DeviceSpec, Kernels, NewRun, Preset, ShapeOverrides, Timeline, TokenizerSource,
    TrainOptions, Trainer, WeightQuant,
};
use tritlab_workbook::{Output, Plot, Series, Table, Trace, TraceToken};

impl Session {
    pub(crate) fn train(&mut self, t: &lang::Train, ctx: &mut Context<'_>) -> CmdResult {
        let mut trainer = match t {
            lang::Train::Start(s) => Trainer::create(&self.new_run(s)?)?,
            lang::Train::Resume(r) => {
                self.check_threads(&r.run)?;
                let devices = (!r.devices.is_empty()).then_some(r.devices.as_slice());
                let (trainer, info) = Trainer::resume_on(&r.run, devices)?;
                if let Some(steps) = r.steps {
                    if steps != trainer.total_steps() {
                        return Err(SessionError::Usage(format!(
                            "the run was started for {} steps; its schedule depends on that, so it resumes to {} (not {steps})",
                            trainer.total_steps(),
                            trainer.total_steps()
                        )));
                    }
                }
                (ctx.events)(LiveEvent::Line(format!(
                    "resuming from the checkpoint of step {} ({} steps logged)",
                    info.checkpoint_step, info.logged_steps
                )));
                trainer
            }
        };
        let total = trainer.total_steps();
        let dir = trainer.run().dir.clone();
        let started = std::time::Instant::now();
        let first = trainer.step_count();
        let mut losses = Vec::new();
        let mut twin_losses = Vec::new();
        let mut stopped = false;
        while !trainer.is_done() {
            if ctx.cancelled() {
                trainer.checkpoint()?;
                stopped = true;
                break;
            }
            let report = trainer.step()?;
            let r = &report.record;
            losses.push([r.step as f64, r.loss]);
            if let Some(l) = report.twin_loss {
                twin_losses.push([r.step as f64, l as f64]);
            }
            ctx.progress("training", r.step, Some(total));
            (ctx.events)(LiveEvent::Line(format!(
                "step {}/{total}: loss {:.4}, {} trits flipped",
                r.step,
                r.loss,
                r.flipped_trits()
            )));
        }
        let trained = trainer.step_count() - first;
        let secs = started.elapsed().as_secs_f64();
        let o = trainer.run().options().clone();
        let mut out = Vec::new();
        let mut series = vec![Series {
            name: "ternary".into(),
            points: losses,
        }];
        if !twin_losses.is_empty() {
            series.push(Series {
                name: "full precision".into(),
                points: twin_losses,
            });
        }
        out.push(Output::Plot(Plot {
            title: Some(format!("training loss, {}", dir.display())),
            x_label: "step".into(),
            y_label: "loss".into(),
            series,
        }));
        if stopped {
            out.push(Output::Text(format!(
                "cancelled at step {}; the run is checkpointed: `train --resume {}` continues it",
                trainer.step_count(),
                dir.display()
            )));
        } else {
            let e = trainer.evaluate(None)?;
            let model_dir = trainer.export(None)?;
            out.push(Output::Text(format!(
                "{trained} steps in {secs:.1} s ({:.0} tokens/s); validation loss {:.4}, perplexity {:.2}{}\nworld {} · model {}",
                trained as f64 * (o.batch_size * o.seq_len) as f64 / secs.max(1e-9),
                e.loss,
                e.perplexity,
                e.twin_perplexity
                    .map(|p| format!("; full-precision twin perplexity {p:.2}"))
                    .unwrap_or_default(),
                trainer.world_hash(),
                model_dir.display()
            )));
            // The trained model becomes the session's model.
            let shown = crate::session::shown_path(&model_dir);
            self.load_model(
                &model_dir,
                shown,
                lang::HeadPrecision::DEFAULT,
                lang::Packing::DEFAULT,
            )?;
        }
        drop(trainer);
        self.open_run(&dir)?;
        out.push(Output::Text(format!(
            "opened the run's timeline at step {}: `step`, `back`, `seek N`, `log`",
            self.run.as_ref().map_or(0, |r| r.timeline.position())
        )));
        Ok(out)
    }

    fn new_run(&self, s: &lang::TrainStart) -> Result<NewRun, SessionError> {
        let preset = match s.preset {
            lang::Preset::Tiny => Preset::Tiny,
            lang::Preset::Small => Preset::Small,
            lang::Preset::Bitnet2b4t => Preset::Bitnet2b4t,
        };
        let mut o = TrainOptions::new(preset);
        o.steps = s.steps;
        o.seq_len = s.seq as usize;
        o.batch_size = s.batch as usize;
        o.learning_rate = s.lr as f64;
        o.warmup_steps = s.warmup;
        o.seed = s.seed;
        o.twin = s.twin;
        o.weight_quant = match s.quant {
            lang::ScaleGranularity::Tensor => WeightQuant::Tensor,
            lang::ScaleGranularity::Group => WeightQuant::Group128,
        };
        o.checkpoint_every = s.checkpoint_every.max(1);
        o.min_lr_ratio = f64::from(s.min_lr_ratio);
        o.weight_decay = f64::from(s.weight_decay);
        o.grad_clip = f64::from(s.clip);
        o.projection = s.projection;
        o.keep_checkpoints = usize::try_from(s.keep_checkpoints).unwrap_or(usize::MAX);
        o.eval_every = s.eval_every;
        o.eval_sequences = s.eval_sequences as usize;
        o.matmul = s.matmul;
        o.micro_batches = s.micro_batches as usize;
        o.kernels = match s.kernels {
            // The ternary path runs on the CPU only: a GPU run computes in f32.
            lang::ProductKernels::Auto if s.device.is_cpu() => Kernels::preferred(),
            lang::ProductKernels::Auto | lang::ProductKernels::F32 => Kernels::F32,
            lang::ProductKernels::Ternary => Kernels::Ternary,
        };
        let tokenizer = match &s.tokenizer {
            lang::TokenizerSource::File(p) => TokenizerSource::File(p.clone()),
            lang::TokenizerSource::Train { vocab } => TokenizerSource::Train(*vocab as usize),
            lang::TokenizerSource::Default => {
                TokenizerSource::Train(lang::DEFAULT_TOKENIZER_VOCAB as usize)
            }
        };
        Ok(NewRun {
            out: s.out.clone(),
            data: s.data.clone(),
            val: s.val.clone(),
            val_fraction: f64::from(s.val_fraction),
            tokenizer,
            options: o,
            shape: ShapeOverrides {
                layers: s.shape.layers.map(|v| v as usize),
                hidden: s.shape.hidden.map(|v| v as usize),
                intermediate: s.shape.intermediate.map(|v| v as usize),
                heads: s.shape.heads.map(|v| v as usize),
                kv_heads: s.shape.kv_heads.map(|v| v as usize),
            },
            threads: rayon::current_num_threads(),
            device: s.device,
            devices: s.devices.clone(),
        })
    }

    /// Refuses to recompute the run in `dir` with a thread count other than the one it was
    /// computed with. Float sums depend on how work is split between threads, so resuming or
    /// replaying with another count would diverge from the log some steps later, with a far
    /// more confusing error. The count asked for explicitly (`--threads`) is checked first, for
    /// the clearest message; then the count this session's thread pool really has.
    pub(crate) fn check_threads(&self, dir: &Path) -> Result<(), SessionError> {
        // A model directory opened for its excerpt log has no run.json and nothing to recompute.
        if !dir.join(tritlab_train::RunConfig::FILE).is_file() {
            return Ok(());
        }
        let recorded = tritlab_train::RunConfig::read(dir)?.threads;
        let refuse = |have: usize, how: &str| {
            Err(SessionError::Usage(format!(
                "the run in {} was computed with {recorded} threads and {how} {have}; float sums \
                 depend on the thread count, so it must continue with --threads {recorded}",
                dir.display()
            )))
        };
        if let Some(asked) = self.config.threads.filter(|&n| n != recorded) {
            return refuse(asked, "--threads asks for");
        }
        let current = rayon::current_num_threads();
        if current != recorded {
            return refuse(current, "this session computes with");
        }
        Ok(())
    }

    /// Opens a run's timeline (or a model directory with its excerpt log) and asks the first
    /// tracer for every step's colour.
    pub(crate) fn open_run(&mut self, dir: &Path) -> Result<(), SessionError> {
        let mut timeline = if dir.join(tritlab_train::RunConfig::FILE).is_file() {
            Timeline::open_run(dir)
        } else {
            Timeline::open_model(dir, &dir.join(tritlab_train::run::LOG_FILE))
        }?;
        // A run's timeline starts at its first checkpoint; `replay open` (and `train`) leave it
        // at the last step, as the command reference says.
        timeline.seek(timeline.last_step())?;
        let tracer = self.pick_plugin(PluginKind::Tracer, "gay-tracer");
        let colours = match (self.plugins.as_mut(), tracer) {
            (Some(host), Some(name)) => timeline
                .records()
                .iter()
                .map(|r| {
                    host.trace_training(&name, &convert::training_step(r))
                        .ok()
                        .map(|a| [a.colour.r, a.colour.g, a.colour.b])
                })
                .collect(),
            _ => vec![None; timeline.records().len()],
        };
        self.run = Some(OpenRun {
            dir: dir.to_path_buf(),
            timeline,
            colours,
        });
        Ok(())
    }

    fn records_of(&self, run: Option<&Path>) -> Result<(PathBuf, Vec<StepRecord>), SessionError> {
        match run {
            Some(dir) => {
                let file = if dir.is_dir() {
                    dir.join(tritlab_train::run::LOG_FILE)
                } else {
                    dir.to_path_buf()
                };
                let (records, _) = tritlab_train::run::read_log(&file)?;
                Ok((dir.to_path_buf(), records))
            }
            None => {
                let r = self.open_run_ref()?;
                Ok((r.dir.clone(), r.timeline.records().to_vec()))
            }
        }
    }

    fn open_run_ref(&self) -> Result<&OpenRun, SessionError> {
        self.run.as_ref().ok_or_else(|| {
            SessionError::Usage(
                "no training run is open: `replay open RUN_DIR` (or `train …`)".to_string(),
            )
        })
    }

    pub(crate) fn log(&mut self, l: &lang::Log) -> CmdResult {
        match l {
            lang::Log::Steps { run } => {
                let (dir, records) = self.records_of(run.as_deref())?;
                let position = self.run.as_ref().map(|r| r.timeline.position());
                let rows = records
                    .iter()
                    .map(|r| {
                        vec![
                            format!(
                                "{}{}",
                                r.step,
                                if Some(r.step) == position { " ◀" } else { "" }
                            ),
                            format!("{:.3e}", r.learning_rate),
                            format!("{:.4}", r.loss),
                            format!("{:.4}", r.grad_norm),
                            r.flipped_trits().to_string(),
                            r.gf3_after().to_string(),
                            r.world_after.to_string()[..16].to_string(),
                        ]
                    })
                    .collect();
                Ok(vec![Output::Table(Table {
                    title: Some(format!("morphism log of {}", dir.display())),
                    columns: [
                        "step",
                        "lr",
                        "loss",
                        "grad norm",
                        "flips",
                        "Σ mod 3",
                        "world after",
                    ]
                    .map(String::from)
                    .to_vec(),
                    rows,
                })])
            }
            lang::Log::Show { step } => {
                let run = self.open_run_ref()?;
                let r = run.timeline.record(*step).ok_or_else(|| {
                    format!(
                        "step {step} is not in the log (steps {}..={})",
                        run.timeline.first_step() + 1,
                        run.timeline.last_step()
                    )
                })?;
                Ok(step_outputs(r, colour_of(run, r.step)))
            }
            lang::Log::Plot { series } => {
                let run = self.open_run_ref()?;
                let records = run.timeline.records();
                let plot = match series {
                    PlotSeries::Loss => Plot {
                        title: Some("loss per step".into()),
                        x_label: "step".into(),
                        y_label: "loss".into(),
                        series: vec![Series {
                            name: "loss".into(),
                            points: records.iter().map(|r| [r.step as f64, r.loss]).collect(),
                        }],
                    },
                    PlotSeries::Flips => Plot {
                        title: Some("trits flipped per step".into()),
                        x_label: "step".into(),
                        y_label: "flips".into(),
                        series: vec![Series {
                            name: "flips".into(),
                            points: records
                                .iter()
                                .map(|r| [r.step as f64, r.flipped_trits() as f64])
                                .collect(),
                        }],
                    },
                    PlotSeries::Trits => {
                        let mut neg = Vec::new();
                        let mut zero = Vec::new();
                        let mut pos = Vec::new();
                        for r in records {
                            let (mut n, mut z, mut p) = (0u64, 0u64, 0u64);
                            for l in &r.layers {
                                let c = l.counts_after();
                                n += c.neg;
                                z += c.zero;
                                p += c.pos;
                            }
                            let total = (n + z + p).max(1) as f64;
                            neg.push([r.step as f64, n as f64 / total]);
                            zero.push([r.step as f64, z as f64 / total]);
                            pos.push([r.step as f64, p as f64 / total]);
                        }
                        Plot {
                            title: Some("share of each trit after each step".into()),
                            x_label: "step".into(),
                            y_label: "share".into(),
                            series: vec![
                                Series {
                                    name: "−1".into(),
                                    points: neg,
                                },
                                Series {
                                    name: "0".into(),
                                    points: zero,
                                },
                                Series {
                                    name: "+1".into(),
                                    points: pos,
                                },
                            ],
                        }
                    }
                };
                Ok(vec![Output::Plot(plot)])
            }
        }
    }

    pub(crate) fn replay(&mut self, r: &lang::Replay, ctx: &mut Context<'_>) -> CmdResult {
        match r {
            lang::Replay::Open { run } => {
                self.open_run(run)?;
                let o = self.open_run_ref()?;
                Ok(vec![Output::Text(format!(
                    "opened {}: steps {}..={}, at step {}",
                    run.display(),
                    o.timeline.first_step(),
                    o.timeline.last_step(),
                    o.timeline.position()
                ))])
            }
            lang::Replay::Verify { from, to, device } => {
                let dir = self.open_run_ref()?.dir.clone();
                // A GPU run is recomputed on its GPU when this build can; otherwise on the CPU,
                // which checks its trits exactly and its losses approximately.
                let recorded = tritlab_train::RunConfig::read(&dir)
                    .map(|c| c.device.device)
                    .unwrap_or_default();
                let here = device.unwrap_or(if recorded.is_cpu() || DeviceSpec::cuda_available() {
                    recorded
                } else {
                    DeviceSpec::Cpu
                });
                if here == recorded {
                    self.check_threads(&dir)?;
                }
                let cancel = ctx.cancel;
                let mut tick = |d: u64, t: u64| ctx.progress("recomputing", d, Some(t));
                let text = match replay::verify_on(&dir, here, *from, *to, Some(cancel), &mut tick)? {
                    Verification::Exact(report) => format!(
                        "verified steps {}..={}: recomputed {} steps from the checkpoint of step {}; every world hash, loss, batch and flip set matches the log",
                        report.from, report.to, report.recomputed, report.checkpoint
                    ),
                    Verification::CrossDevice(r) => format!(
                        "the run was computed on {}, and this check ran on {}, whose floats differ in the last bits, so no world hash can match: \
                         the trits of {} checkpoint(s) ({}) equal the step-0 trits plus the logged flips; \
                         {} steps recomputed here from the logged worlds have losses within {:.3e} of the log (mean {:.3e})",
                        r.recorded,
                        r.here,
                        r.checkpoints.len(),
                        r.checkpoints.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                        r.recomputed,
                        r.max_loss_difference,
                        r.mean_loss_difference
                    ),
                };
                Ok(vec![Output::Text(text)])
            }
            lang::Replay::Export { step, dir } => {
                let run = self.open_run_ref()?.dir.clone();
                self.check_threads(&run)?;
                let mut tick = |d: u64, t: u64| ctx.progress("recomputing", d, Some(t));
                replay::export_at(&run, *step, dir, &mut tick)?;
                Ok(vec![Output::Text(format!(
                    "the model at step {step} written to {}",
                    dir.display()
                ))])
            }
        }
    }

    pub(crate) fn move_timeline(&mut self, m: Move) -> CmdResult {
        let run = self
            .run
            .as_mut()
            .ok_or("no training run is open: `replay open RUN_DIR` (or `train …`)")?;
        let tl = &mut run.timeline;
        let from = tl.position();
        let target = match m {
            Move::Seek(s) => s,
            Move::Forward(n) => from.saturating_add(n).min(tl.last_step()),
            Move::Backward(n) => from.saturating_sub(n).max(tl.first_step()),
        };
        tl.seek(target)?;
        let mut out = vec![Output::Text(format!(
            "step {from} → {target} (of {}..={})",
            tl.first_step(),
            tl.last_step()
        ))];
        // The steps crossed, coloured by the tracer: forward shows what was applied, backward what was undone.
        let (lo, hi) = (from.min(target) + 1, from.max(target));
        if hi >= lo && hi - lo < 64 {
            let run: &OpenRun = run;
            let tokens: Vec<TraceToken> = (lo..=hi)
                .filter_map(|s| run.timeline.record(s))
                .map(|r| step_token(r, colour_of(run, r.step)))
                .collect();
            if !tokens.is_empty() {
                out.push(Output::Trace(Trace {
                    title: Some(
                        if target >= from {
                            "steps applied"
                        } else {
                            "steps undone"
                        }
                        .into(),
                    ),
                    tokens,
                }));
            }
        }
        if let Some(r) = run.timeline.current_record() {
            out.extend(step_outputs(r, colour_of(run, r.step)));
        }
        Ok(out)
    }
}

fn colour_of(run: &OpenRun, step: u64) -> Option<[u8; 3]> {
    let first = run.timeline.records().first()?.step;
    run.colours
        .get(step.checked_sub(first)? as usize)
        .copied()
        .flatten()
}

fn step_token(r: &StepRecord, colour: Option<[u8; 3]>) -> TraceToken {
    TraceToken {
        text: format!(" {} ", r.step),
        rgb: colour.map(tritlab_workbook::Rgb),
        trit: None,
        note: Some(format!(
            "step {} · loss {:.4} · {} flips",
            r.step,
            r.loss,
            r.flipped_trits()
        )),
    }
}

/// A step's record as outputs: its scalars and the per-layer transitions.
pub fn step_outputs(r: &StepRecord, colour: Option<[u8; 3]>) -> Vec<Output> {
    let rows = r
        .layers
        .iter()
        .map(|l| {
            let c = &l.flips.transitions().counts;
            vec![
                l.name
                    .trim_start_matches("model.")
                    .trim_end_matches(".weight")
                    .to_string(),
                c[0][1].to_string(),
                c[0][2].to_string(),
                c[1][0].to_string(),
                c[1][2].to_string(),
                c[2][0].to_string(),
                c[2][1].to_string(),
                format!("{:+.2e}", l.scale_after - l.scale_before),
                format!("{}→{}", l.gf3_before(), l.gf3_after()),
            ]
        })
        .collect();
    vec![
        Output::Text(format!(
            "step {}: loss {:.4}, lr {:.3e}, grad norm {:.4}, {} trits flipped{}\nworld {} → {}",
            r.step,
            r.loss,
            r.learning_rate,
            r.grad_norm,
            r.flipped_trits(),
            colour
                .map(|c| format!(", tracer colour #{:02x}{:02x}{:02x}", c[0], c[1], c[2]))
                .unwrap_or_default(),
            &r.world_before.to_string()[..16],
            &r.world_after.to_string()[..16]
        )),
        Output::Table(Table {
            title: Some(format!("step {}: trit transitions per layer", r.step)),
            columns: [
                "layer",
                "−1→0",
                "−1→+1",
                "0→−1",
                "0→+1",
                "+1→−1",
                "+1→0",
                "Δscale",
                "Σ mod 3",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        }),
    ]
}
