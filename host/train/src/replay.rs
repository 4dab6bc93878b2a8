//! Replay: recompute logged steps from the nearest checkpoint and prove they reproduce the
//! logged worlds bit for bit; rebuild the model as it was at any step.

use crate::error::{Result, TrainError};
use crate::export::{self, Provenance};
use crate::model::World;
use crate::run::Run;
use crate::timeline::Timeline;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tritlab_morphism::StepRecord;

/// What `replay --verify` checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub from: u64,
    pub to: u64,
    /// The checkpoint recomputation started from.
    pub checkpoint: u64,
    /// Steps recomputed (from the checkpoint to `to`).
    pub recomputed: u64,
    /// Steps whose world hash, loss and batch were compared with the log.
    pub verified: u64,
}

/// Progress of a long replay: `(steps done, steps to do)`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

fn compare(run: &Run, logged: &StepRecord, recomputed: &StepRecord) -> Result<()> {
    if logged.batch_hash != recomputed.batch_hash {
        return Err(TrainError::Record {
            step: logged.step,
            message: "the recomputed batch differs from the logged one (the data changed)".into(),
        });
    }
    if logged.world_after != recomputed.world_after || logged.loss != recomputed.loss {
        return Err(TrainError::Divergence {
            step: logged.step,
            logged: logged.world_after.to_string(),
            recomputed: recomputed.world_after.to_string(),
            hint: format!(
                " (logged loss {}, recomputed {}; the run used {} threads, this process {}; products on the {} path, layers on the {} graph)",
                logged.loss,
                recomputed.loss,
                run.config.threads,
                rayon::current_num_threads(),
                run.options().kernels,
                run.options().graph
            ),
        });
    }
    if logged.layers != recomputed.layers {
        return Err(TrainError::Record {
            step: logged.step,
            message: "the recomputed trit flips differ from the logged ones".into(),
        });
    }
    Ok(())
}

fn range(records: &[StepRecord], from: Option<u64>, to: Option<u64>) -> Result<(u64, u64)> {
    let last = records.last().map_or(0, |r| r.step);
    if last == 0 {
        return Err(TrainError::Invalid(
            "the run has no logged steps yet".into(),
        ));
    }
    let from = from.unwrap_or(1);
    let to = to.unwrap_or(last);
    if from == 0 || from > to || to > last {
        return Err(TrainError::Invalid(format!(
            "steps {from}..={to} are not within the logged steps 1..={last}"
        )));
    }
    Ok((from, to))
}

/// What [`recompute`] did.
struct Recomputed {
    world: World,
    /// The checkpoint it started from.
    checkpoint: u64,
    /// Steps fully compared with the log (world hash, loss, batch and flips).
    verified: u64,
}

/// Recomputes the world at step `target` from the nearest checkpoint before `check_from`,
/// checking every step on the way against `records` (and every step in `check_from..=target`
/// fully: world hash, loss, batch and flips).
fn recompute(
    run: &Run,
    records: &[StepRecord],
    target: u64,
    check_from: u64,
    cancel: Option<&AtomicBool>,
    progress: Progress,
) -> Result<Recomputed> {
    // Start before the first step to check, so that step is recomputed rather than loaded.
    let loaded = run
        .load_checkpoint(check_from.saturating_sub(1).min(target), false)?
        .world;
    let ck = loaded.step;
    if ck > target {
        return Err(TrainError::Invalid(format!(
            "the checkpoint loaded for step {target} holds step {ck}: the run's checkpoints are inconsistent"
        )));
    }
    let mut verified = 0u64;
    let mut world = run.live(loaded)?;
    let (mut layers, mut hash) = run.view(&mut world)?;
    if let Some(first) = records.iter().find(|r| r.step == ck + 1) {
        if first.world_before != hash {
            return Err(TrainError::Record {
                step: first.step,
                message: format!(
                    "starts from world {}, but checkpoint {ck} is world {hash}",
                    first.world_before
                ),
            });
        }
    }
    let total = target - ck;
    for step in ck + 1..=target {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(TrainError::Invalid(format!(
                "cancelled at step {}",
                step - 1
            )));
        }
        let out = run.step_live(&mut world, &mut [], run.precision())?;
        let (after_layers, after) = run.view(&mut world)?;
        let logged = records
            .iter()
            .find(|r| r.step == step)
            .ok_or_else(|| TrainError::Invalid(format!("step {step} is not in the log")))?;
        if step >= check_from {
            let rec = run.record(&out, hash, after, &layers, &after_layers)?;
            compare(run, logged, &rec)?;
            verified += 1;
        } else if logged.world_after != after {
            return Err(TrainError::Divergence {
                step,
                logged: logged.world_after.to_string(),
                recomputed: after.to_string(),
                hint: String::new(),
            });
        }
        layers = after_layers;
        hash = after;
        progress(step - ck, total);
    }
    Ok(Recomputed {
        world: world.into_host()?,
        checkpoint: ck,
        verified,
    })
}

/// What `replay --verify` checked on a device other than the run's: the trit chain exactly, the
/// floats only approximately (a GPU sums in another order than the CPU, so its worlds differ in
/// the last bits and no hash can match).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CrossDeviceReport {
    /// The device the run was computed on, and the one this process recomputed on.
    pub recorded: String,
    pub here: String,
    /// Checkpoints whose trits equal the step-0 trits plus the logged flips up to their step.
    pub checkpoints: Vec<u64>,
    /// Steps recomputed here, each from the logged world before it (a checkpoint, then the
    /// recomputed worlds until the next checkpoint).
    pub recomputed: u64,
    /// Largest and mean |logged loss − recomputed loss| over those steps.
    pub max_loss_difference: f64,
    pub mean_loss_difference: f64,
}

/// `tritlab replay RUN_DIR --verify [--from A --to B]` on the device the run was computed on.
pub fn verify(
    dir: &Path,
    from: Option<u64>,
    to: Option<u64>,
    cancel: Option<&AtomicBool>,
    progress: Progress,
) -> Result<VerifyReport> {
    let run = Run::open_alone(dir)?;
    verify_run(&run, from, to, cancel, progress)
}

/// Checks a run on `device`, which may be another device than the one it was computed on:
/// bit-exact verification there ([`verify`]), the trit chain and the loss differences elsewhere
/// ([`CrossDeviceReport`]).
pub fn verify_on(
    dir: &Path,
    device: crate::DeviceSpec,
    from: Option<u64>,
    to: Option<u64>,
    cancel: Option<&AtomicBool>,
    progress: Progress,
) -> Result<Verification> {
    let run = Run::open_on(dir, device)?;
    if run.same_device() {
        return verify_run(&run, from, to, cancel, progress).map(Verification::Exact);
    }
    cross_device(&run, from, to, cancel, progress).map(Verification::CrossDevice)
}

/// The outcome of [`verify_on`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Verification {
    Exact(VerifyReport),
    CrossDevice(CrossDeviceReport),
}

fn cross_device(
    run: &Run,
    from: Option<u64>,
    to: Option<u64>,
    cancel: Option<&AtomicBool>,
    progress: Progress,
) -> Result<CrossDeviceReport> {
    let (records, _) = run.read_log()?;
    let (from, to) = range(&records, from, to)?;
    let quant = run.options().weight_quant;
    let scheme = run.scheme();
    // The trit chain: every checkpoint up to `to` against the flips the log holds.
    let mut timeline = Timeline::open_run(&run.dir)?;
    let mut checkpoints = Vec::new();
    for step in crate::checkpoint::checkpoint_steps(&run.dir)?
        .into_iter()
        .filter(|&s| s <= to)
    {
        let world = run.load_checkpoint(step, false)?.world;
        if world.step != step {
            continue;
        }
        timeline.seek(step)?;
        for layer in export::ternary_layers_as(&world, quant, scheme)? {
            let chained = timeline.layer(&layer.name).ok_or_else(|| {
                TrainError::Invalid(format!("the log has no layer `{}`", layer.name))
            })?;
            if chained.trits != layer.weights.trits {
                return Err(TrainError::Record {
                    step,
                    message: format!(
                        "the trits of `{}` in the checkpoint differ from the step-0 trits plus the logged flips",
                        layer.name
                    ),
                });
            }
        }
        checkpoints.push(step);
    }
    // The floats: recompute from the checkpoint before `from`, restarting from each checkpoint
    // on the way so that the differences of one segment do not carry into the next.
    let mut world = run.live(run.load_checkpoint(from - 1, false)?.world)?;
    let start = world.step_count();
    let (mut max, mut sum, mut recomputed) = (0.0f64, 0.0f64, 0u64);
    for step in start + 1..=to {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(TrainError::Invalid(format!(
                "cancelled at step {}",
                step - 1
            )));
        }
        if step - 1 > start && checkpoints.contains(&(step - 1)) {
            world = run.live(run.load_checkpoint(step - 1, false)?.world)?;
        }
        let out = run.step_live(&mut world, &mut [], run.precision())?;
        let logged = records
            .iter()
            .find(|r| r.step == step)
            .ok_or_else(|| TrainError::Invalid(format!("step {step} is not in the log")))?;
        if step >= from {
            let d = (logged.loss - f64::from(out.loss)).abs();
            max = max.max(d);
            sum += d;
            recomputed += 1;
        }
        progress(step - start, to - start);
    }
    Ok(CrossDeviceReport {
        recorded: run.config.device.describe(),
        here: run.device().describe(),
        checkpoints,
        recomputed,
        max_loss_difference: max,
        mean_loss_difference: if recomputed == 0 {
            0.0
        } else {
            sum / recomputed as f64
        },
    })
}

fn verify_run(
    run: &Run,
    from: Option<u64>,
    to: Option<u64>,
    cancel: Option<&AtomicBool>,
    progress: Progress,
) -> Result<VerifyReport> {
    let (records, _) = run.read_log()?;
    let (from, to) = range(&records, from, to)?;
    let done = recompute(run, &records, to, from, cancel, progress)?;
    // Count what was compared rather than what was asked for: a report of success must mean
    // every requested step was recomputed and matched.
    let requested = to - from + 1;
    if done.verified != requested {
        return Err(TrainError::Invalid(format!(
            "verified {} of the {requested} requested steps {from}..={to} (recomputation started from the checkpoint of step {}); nothing was proven for the rest",
            done.verified, done.checkpoint
        )));
    }
    Ok(VerifyReport {
        from,
        to,
        checkpoint: done.checkpoint,
        recomputed: to - done.checkpoint,
        verified: done.verified,
    })
}

/// The latent world at `step`, recomputed and verified.
pub fn world_at(run: &Run, step: u64, progress: Progress) -> Result<World> {
    let (records, _) = run.read_log()?;
    if step > 0 {
        range(&records, Some(step), Some(step))?;
    }
    Ok(recompute(run, &records, step, step.max(1), None, progress)?.world)
}

/// `tritlab replay RUN_DIR --to STEP --export DIR`: the model as it was at `step`.
///
/// The latent world is recomputed; its trits are also rebuilt from the log's flips (from the
/// step-0 checkpoint), and the two must agree, which checks the log and the replay against each
/// other.
pub fn export_at(dir: &Path, step: u64, out: &Path, progress: Progress) -> Result<PathBuf> {
    let run = Run::open_alone(dir)?;
    let world = world_at(&run, step, progress)?;
    let mut timeline = Timeline::open_run(dir)?;
    timeline.seek(step)?;
    let layers = export::ternary_layers_as(&world, run.options().weight_quant, run.scheme())?;
    for layer in &layers {
        let from_flips = timeline
            .layer(&layer.name)
            .ok_or_else(|| TrainError::Invalid(format!("the log has no layer `{}`", layer.name)))?;
        if from_flips.trits != layer.weights.trits {
            return Err(TrainError::Record {
                step,
                message: format!(
                    "the trits of `{}` rebuilt from the log's flips differ from the recomputed ones",
                    layer.name
                ),
            });
        }
    }
    export::export_model_as(
        &world,
        &run.config.model,
        run.options().weight_quant,
        run.scheme(),
        &run.tokenizer_path(),
        &Provenance {
            run: Some(dir.display().to_string()),
            step,
            world_hash: run.scheme().hash(&world)?.to_string(),
            weight_quant: run.options().weight_quant,
        },
        out,
    )?;
    Ok(out.to_path_buf())
}
