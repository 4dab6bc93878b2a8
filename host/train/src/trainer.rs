//! The training loop's state: the world, its ternary view and hash, the log being written.
//!
//! Resuming loads the newest checkpoint and recomputes the steps the log already holds past it,
//! checking each recomputed world hash against the logged one before appending anything new. A
//! run killed at any moment (even mid-record) therefore continues to the same final world as an
//! uninterrupted one, and proves it did.

use crate::checkpoint;
use crate::device::DeviceSpec;
use crate::error::{Result, TrainError};
use crate::export::{self, Provenance, TernaryLayer};
use crate::model::{Precision, World};
use crate::run::{LiveWorld, NewRun, Run, RunLock, StepOutput, METRICS_FILE, MODEL_DIR};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use tritlab_morphism::{ContentHash, MorphismLogWriter, StepRecord};

/// Validation loss and perplexity (and the twin's, if trained).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub step: u64,
    pub sequences: usize,
    pub loss: f64,
    pub perplexity: f64,
    pub twin_loss: Option<f64>,
    pub twin_perplexity: Option<f64>,
}

/// What one call to [`Trainer::step`] did.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub record: StepRecord,
    pub twin_loss: Option<f32>,
    /// The step was already in the log (a resumed run re-computing it) and matched.
    pub verified: bool,
    pub checkpoint: Option<PathBuf>,
}

/// How a resumed run picked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeInfo {
    pub checkpoint_step: u64,
    pub logged_steps: u64,
    /// Bytes of a torn last record that were dropped.
    pub dropped_tail_bytes: u64,
}

pub struct Trainer {
    /// Held for the trainer's lifetime: one writer per run directory.
    _lock: RunLock,
    run: Run,
    /// On the host, or kept on the GPU for a device-world run.
    world: LiveWorld,
    /// The replicas of ranks 1.. of a data-parallel run, each on its device.
    peers: Vec<LiveWorld>,
    twin: Option<World>,
    layers: Vec<TernaryLayer>,
    hash: ContentHash,
    log: MorphismLogWriter,
    /// Logged steps past the checkpoint, still to be re-computed and checked.
    pending: VecDeque<StepRecord>,
    metrics: std::fs::File,
}

fn open_metrics(path: &Path, keep_through: Option<u64>) -> Result<std::fs::File> {
    // Keep lines of steps the world has reached; later ones will be written again.
    if let Some(limit) = keep_through {
        if let Ok(text) = std::fs::read_to_string(path) {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= limit)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            crate::error::write_atomic(path, kept.as_bytes())?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))
}

impl Trainer {
    /// Starts a run in `new.out`: writes its description, step-0 checkpoint and an empty log.
    ///
    /// The run directory is locked first (see [`RunLock`]) and stays locked while the trainer
    /// lives.
    pub fn create(new: &NewRun) -> Result<Trainer> {
        new.options.validate()?;
        crate::run::check_data_parallel(new.device, &new.devices, new.options.micro_batches)?;
        new.device.check_built()?;
        std::fs::create_dir_all(&new.out).map_err(|e| TrainError::io(&new.out, e))?;
        let lock = RunLock::acquire(&new.out)?;
        let run = Run::create(new)?;
        let world = run.initial_world();
        let twin = run.options().twin.then(|| world.clone());
        checkpoint::save_as(
            &checkpoint::checkpoint_path(&run.dir, 0),
            &world,
            twin.as_ref(),
            run.scheme(),
        )?;
        let log = MorphismLogWriter::create(run.log_path())?;
        let metrics = open_metrics(&run.dir.join(METRICS_FILE), Some(0))?;
        Self::assemble(lock, run, world, twin, log, VecDeque::new(), metrics)
    }

    /// Continues the run in `dir` from its newest checkpoint. The directory is locked before
    /// anything is read, so a second writer fails at once instead of reading a log another
    /// process is appending to.
    pub fn resume(dir: &Path) -> Result<(Trainer, ResumeInfo)> {
        Self::resume_on(dir, None)
    }

    /// [`Trainer::resume`] on other devices than the run recorded: `devices` lists them, rank 0
    /// first (one device, or several for data parallelism). A step's bits depend on the run's
    /// micro-batches, not on how many devices share them ([`crate::parallel`]), so a run started
    /// on two GPUs continues exactly on one GPU of the same model, or on four; another kind of
    /// device is refused as for [`Trainer::resume`].
    pub fn resume_on(dir: &Path, devices: Option<&[DeviceSpec]>) -> Result<(Trainer, ResumeInfo)> {
        let lock = RunLock::acquire(dir)?;
        let run = match devices {
            None => Run::open(dir)?,
            Some([]) => {
                return Err(TrainError::Options(
                    "resuming on no devices: list at least one".into(),
                ))
            }
            Some(list) => Run::open_with(dir, list[0], list)?,
        };
        if !run.same_device() {
            return Err(TrainError::Device(format!(
                "the run in {} was computed on {}, and this process computes on {}: a run \
                 continues on the kind of device it started on, or its floats would differ \
                 from the log",
                dir.display(),
                run.config.device.describe(),
                run.device().describe()
            )));
        }
        let (records, _) = run.read_log()?;
        let logged = records.last().map_or(0, |r| r.step);
        let loaded = run.load_checkpoint(logged, run.options().twin)?;
        let ck = loaded.world.step;
        // A run killed between writing run.json and creating its log has logged nothing yet.
        let log = if run.log_path().exists() {
            MorphismLogWriter::open_append(run.log_path())?
        } else {
            MorphismLogWriter::create(run.log_path())?
        };
        let dropped = log.dropped_tail_bytes();
        let pending: VecDeque<StepRecord> = records.into_iter().filter(|r| r.step > ck).collect();
        if let Some(first) = pending.front() {
            let hash = run.scheme().hash(&loaded.world)?;
            if first.world_before != hash {
                return Err(TrainError::Record {
                    step: first.step,
                    message: format!(
                        "starts from world {}, but the checkpoint of step {ck} is world {hash}",
                        first.world_before,
                    ),
                });
            }
        }
        let metrics = open_metrics(&run.dir.join(METRICS_FILE), Some(ck))?;
        let info = ResumeInfo {
            checkpoint_step: ck,
            logged_steps: logged,
            dropped_tail_bytes: dropped,
        };
        let trainer = Self::assemble(lock, run, loaded.world, loaded.twin, log, pending, metrics)?;
        Ok((trainer, info))
    }

    fn assemble(
        lock: RunLock,
        run: Run,
        world: World,
        twin: Option<World>,
        log: MorphismLogWriter,
        pending: VecDeque<StepRecord>,
        metrics: std::fs::File,
    ) -> Result<Trainer> {
        let peers = run.live_peers(&world)?;
        let mut world = run.live(world)?;
        let (layers, hash) = run.view(&mut world)?;
        Ok(Trainer {
            _lock: lock,
            run,
            world,
            peers,
            twin,
            layers,
            hash,
            log,
            pending,
            metrics,
        })
    }

    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The current world on the host (downloaded, for a world kept on the GPU).
    pub fn world(&self) -> Result<Cow<'_, World>> {
        self.world.to_host()
    }

    pub fn twin(&self) -> Option<&World> {
        self.twin.as_ref()
    }

    pub fn world_hash(&self) -> ContentHash {
        self.hash
    }

    pub fn ternary_layers(&self) -> &[TernaryLayer] {
        &self.layers
    }

    pub fn step_count(&self) -> u64 {
        self.world.step_count()
    }

    pub fn total_steps(&self) -> u64 {
        self.run.options().steps
    }

    pub fn is_done(&self) -> bool {
        self.step_count() >= self.total_steps()
    }

    /// Steps still to be re-computed from the log before new ones are trained.
    pub fn pending_verification(&self) -> usize {
        self.pending.len()
    }

    /// One optimiser step (and the twin's), logged, with a checkpoint when one is due.
    pub fn step(&mut self) -> Result<StepReport> {
        if self.is_done() {
            return Err(TrainError::Options(format!(
                "the run has finished its {} steps",
                self.total_steps()
            )));
        }
        let precision = self.run.precision();
        let out: StepOutput = self
            .run
            .step_live(&mut self.world, &mut self.peers, precision)?;
        let (layers, hash) = self.run.view(&mut self.world)?;
        let record = self
            .run
            .record(&out, self.hash, hash, &self.layers, &layers)?;
        let twin_loss = match self.twin.as_mut() {
            Some(t) => Some(self.run.apply_step(t, Precision::Full)?.loss),
            None => None,
        };
        let verified = match self.pending.pop_front() {
            Some(logged) => {
                if logged.step != record.step || logged.world_after != record.world_after {
                    return Err(TrainError::Divergence {
                        step: record.step,
                        logged: logged.world_after.to_string(),
                        recomputed: record.world_after.to_string(),
                        hint: format!(
                            " (the run used {} threads; this process uses {}; products on the {} path, layers on the {} graph)",
                            self.run.config.threads,
                            rayon::current_num_threads(),
                            self.run.options().kernels,
                            self.run.options().graph
                        ),
                    });
                }
                true
            }
            None => {
                self.log.append(&record)?;
                self.log.sync()?;
                false
            }
        };
        self.layers = layers;
        self.hash = hash;
        let line = serde_json::json!({
            "step": record.step,
            "loss": out.loss,
            "learning_rate": out.learning_rate,
            "grad_norm": out.grad_norm,
            "flipped_trits": record.flipped_trits(),
            "twin_loss": twin_loss,
        });
        self.write_metrics(&line)?;
        let due = record.step % self.run.options().checkpoint_every == 0 || self.is_done();
        let checkpoint = if due && self.pending.is_empty() {
            Some(self.checkpoint()?)
        } else {
            None
        };
        Ok(StepReport {
            record,
            twin_loss,
            verified,
            checkpoint,
        })
    }

    fn write_metrics(&mut self, line: &serde_json::Value) -> Result<()> {
        let path = self.run.dir.join(METRICS_FILE);
        writeln!(self.metrics, "{line}").map_err(|e| TrainError::io(path, e))
    }

    /// Writes a checkpoint of the current step now (and prunes old ones as configured).
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        let path = checkpoint::checkpoint_path(&self.run.dir, self.step_count());
        self.check_peers()?;
        let world = self.world.to_host()?;
        if let LiveWorld::Device(_) = &self.world {
            self.check_device_view(&world)?;
        }
        checkpoint::save_as(&path, &world, self.twin.as_ref(), self.run.scheme())?;
        let keep = self.run.options().keep_checkpoints;
        if keep > 0 {
            let steps = checkpoint::checkpoint_steps(&self.run.dir)?;
            let removable: Vec<u64> = steps.into_iter().filter(|&s| s != 0).collect();
            if removable.len() > keep {
                for s in &removable[..removable.len() - keep] {
                    let p = checkpoint::checkpoint_path(&self.run.dir, *s);
                    std::fs::remove_file(&p).map_err(|e| TrainError::io(&p, e))?;
                }
            }
        }
        Ok(path)
    }

    /// The replicas of a data-parallel run hold the world rank 0 holds: their hashes agree.
    /// Checked at every checkpoint, where a divergence would otherwise be written down.
    fn check_peers(&mut self) -> Result<()> {
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let (_, hash) = self.run.view(peer)?;
            if hash != self.hash {
                return Err(TrainError::Record {
                    step: self.world.step_count(),
                    message: format!(
                        "the replica of rank {} holds world {hash}, rank 0 world {}",
                        i + 1,
                        self.hash
                    ),
                });
            }
        }
        Ok(())
    }

    /// A world kept on the GPU is hashed and ternarised there; at a checkpoint, where it comes
    /// down anyway, the host recomputes both from the downloaded values with the scheme's CPU
    /// functions and they must agree bit for bit, so a checkpoint is also a check of the GPU's
    /// kernels against their definition.
    fn check_device_view(&self, world: &World) -> Result<()> {
        let scheme = self.run.scheme();
        let hash = scheme.hash(world)?;
        let step = world.step;
        if hash != self.hash {
            return Err(TrainError::Record {
                step,
                message: format!(
                    "the GPU hashed the world as {}, the host hashes the downloaded world as {hash}",
                    self.hash
                ),
            });
        }
        let layers = export::ternary_layers_as(world, self.run.options().weight_quant, scheme)?;
        if let Some((ours, host)) = self
            .layers
            .iter()
            .zip(&layers)
            .find(|(a, b)| a.weights != b.weights)
        {
            return Err(TrainError::Record {
                step,
                message: format!(
                    "the GPU's trits or scale of `{}` differ from the host's from the downloaded world (scale {} against {})",
                    ours.name,
                    ours.scale(),
                    host.scale()
                ),
            });
        }
        Ok(())
    }

    /// Validation loss over the first `limit` held-out sequences (all if `None`).
    pub fn evaluate(&mut self, limit: Option<usize>) -> Result<Evaluation> {
        let o = self.run.options();
        let windows = crate::data::validation_windows(&self.run.val_tokens, o.seq_len, limit);
        self.run.select_products();
        let net = &self.run.network;
        let precision = self.run.precision();
        let loss = match &mut self.world {
            LiveWorld::Host(w) => net.evaluate(w, &windows, o.batch_size, precision)?,
            LiveWorld::Device(d) => {
                let params = d.forward_params()?;
                net.evaluate_tensors(&params, &windows, o.batch_size, precision)?
            }
        };
        let twin_loss = match &self.twin {
            Some(t) => Some(net.evaluate(t, &windows, o.batch_size, Precision::Full)?),
            None => None,
        };
        let e = Evaluation {
            step: self.step_count(),
            sequences: windows.len(),
            loss,
            perplexity: loss.exp(),
            twin_loss,
            twin_perplexity: twin_loss.map(f64::exp),
        };
        let line = serde_json::json!({
            "step": e.step,
            "val_loss": e.loss,
            "val_perplexity": e.perplexity,
            "val_sequences": e.sequences,
            "twin_val_loss": e.twin_loss,
            "twin_val_perplexity": e.twin_perplexity,
        });
        self.write_metrics(&line)?;
        Ok(e)
    }

    /// Writes the current ternary model in the Hugging Face layout (default: `RUN_DIR/model`).
    pub fn export(&self, out: Option<&Path>) -> Result<PathBuf> {
        let out = out
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.run.dir.join(MODEL_DIR));
        let world = self.world.to_host()?;
        export::export_model_as(
            &world,
            &self.run.config.model,
            self.run.options().weight_quant,
            self.run.scheme(),
            &self.run.tokenizer_path(),
            &Provenance {
                run: Some(self.run.dir.display().to_string()),
                step: world.step,
                world_hash: self.hash.to_string(),
                weight_quant: self.run.options().weight_quant,
            },
            &out,
        )?;
        Ok(out)
    }
}
