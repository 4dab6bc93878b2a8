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
                " (logged loss {}, recomputed {}; the run used {} threads, this process {})",
                logged.loss,
                recomputed.loss,
                run.config.threads,
                rayon::current_num_threads()
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
    let mut world = run
        .load_checkpoint(check_from.saturating_sub(1).min(target), false)?
        .world;
    let ck = world.step;
    if ck > target {
        return Err(TrainError::Invalid(format!(
            "the checkpoint loaded for step {target} holds step {ck}: the run's checkpoints are inconsistent"
        )));
    }
    let mut verified = 0u64;
    let quant = run.options().weight_quant;
    let mut layers = export::ternary_layers(&world, quant)?;
    let mut hash = world.hash();
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
        let out = run.apply_step(&mut world, run.precision())?;
        let after_layers = export::ternary_layers(&world, quant)?;
        let after = world.hash();
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
        world,
        checkpoint: ck,
        verified,
    })
}

/// `tritlab replay RUN_DIR --verify [--from A --to B]`.
pub fn verify(
    dir: &Path,
    from: Option<u64>,
    to: Option<u64>,
    cancel: Option<&AtomicBool>,
    progress: Progress,
) -> Result<VerifyReport> {
    let run = Run::open(dir)?;
    let (records, _) = run.read_log()?;
    let (from, to) = range(&records, from, to)?;
    let done = recompute(&run, &records, to, from, cancel, progress)?;
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
    let run = Run::open(dir)?;
    let world = world_at(&run, step, progress)?;
    let mut timeline = Timeline::open_run(dir)?;
    timeline.seek(step)?;
    let layers = export::ternary_layers(&world, run.options().weight_quant)?;
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
    export::export_model(
        &world,
        &run.config.model,
        run.options().weight_quant,
        &run.tokenizer_path(),
        &Provenance {
            run: Some(dir.display().to_string()),
            step,
            world_hash: world.hash().to_string(),
            weight_quant: run.options().weight_quant,
        },
        out,
    )?;
    Ok(out.to_path_buf())
}
