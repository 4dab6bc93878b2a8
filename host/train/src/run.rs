//! A run directory and the computation of one step, shared by training, resuming and replay.
//!
//! ```text
//! RUN_DIR/
//!   run.json                      how the run was started (config, options, data hashes, threads)
//!   tokenizer.json                the tokenizer the data was encoded with
//!   morphisms.tml                 the morphism log: one record per optimiser step
//!   metrics.jsonl                 loss, learning rate, validation and twin figures per step
//!   checkpoints/step-N.safetensors  latent worlds (+ twin) every K steps, and at step 0
//!   model/                        the final model in the Hugging Face BitNet layout
//!   .lock                         locked (advisory, exclusive) while a process writes the run
//! ```

use crate::checkpoint;
use crate::config::{DataRecord, RunConfig, TrainOptions, RUN_FORMAT_VERSION};
use crate::data::{self, Batch, BatchStream};
use crate::device::{DeviceRecord, DeviceSpec};
use crate::device_world::DeviceWorld;
use crate::error::{Result, TrainError};
use crate::export::TernaryLayer;
use crate::model::{Network, Precision, QuantOps, World};
use crate::optim;
use crate::parallel::{Collective, Replica};
use crate::scheme::WorldScheme;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tritlab_morphism::{ContentHash, LayerMorphism, MorphismLogReader, StepRecord, TailStatus};

pub const LOG_FILE: &str = "morphisms.tml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const MODEL_DIR: &str = "model";
pub const LOCK_FILE: &str = ".lock";

/// An exclusive advisory lock on a run directory, held by whoever writes the run (a
/// [`Trainer`](crate::Trainer)) for as long as it lives, and released when dropped (or when the
/// process dies: the operating system drops the lock with the file handle, so a crash never
/// leaves a run locked).
///
/// Two writers on one run would interleave their morphism records, metrics and checkpoints into
/// a log that replays as neither. The lock is advisory: it stops tritlab processes (any face:
/// CLI, REPL, workbench, workbooks), not other programs. Readers (replay, timeline, log) do not
/// take it.
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    // Holding the open file holds the lock.
    _file: std::fs::File,
}

impl RunLock {
    /// Locks `dir` (which must exist) or fails at once with [`TrainError::Locked`] if another
    /// process, or another writer in this one, holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        use std::io::{Read, Seek, Write};
        if !dir.is_dir() {
            return Err(TrainError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such run directory"),
            ));
        }
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The holder writes its process id into the file; name it if it can be read.
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(TrainError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (process {holder})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(TrainError::io(&path, e)),
        }
        // Best effort: the process id only makes the error message of a second writer clearer.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(RunLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// The locked run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Where the tokenizer comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerSource {
    /// An existing `tokenizer.json`.
    File(PathBuf),
    /// Train a byte-level BPE with this many ids on the training text.
    Train(usize),
}

/// Everything needed to start a run.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub out: PathBuf,
    pub data: PathBuf,
    /// A separate validation text; otherwise `val_fraction` of the data is held out.
    pub val: Option<PathBuf>,
    pub val_fraction: f64,
    pub tokenizer: TokenizerSource,
    pub options: TrainOptions,
    /// Changes to the preset's architecture.
    pub shape: ShapeOverrides,
    pub threads: usize,
    /// Where to compute (the CPU unless asked otherwise).
    pub device: DeviceSpec,
    /// The devices of a data-parallel run, rank 0 first: each holds a replica of the world and
    /// computes its share of every batch's micro-batches ([`crate::parallel`]). Empty: `device`
    /// alone; otherwise `device` is the first of them.
    pub devices: Vec<DeviceSpec>,
}

/// Architecture changes on top of a preset (`--layers`, `--hidden`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShapeOverrides {
    pub layers: Option<usize>,
    pub hidden: Option<usize>,
    pub intermediate: Option<usize>,
    pub heads: Option<usize>,
    pub kv_heads: Option<usize>,
}

impl ShapeOverrides {
    pub fn apply(&self, c: &mut tritlab_engine::BitNetConfig) {
        if let Some(v) = self.layers {
            c.num_hidden_layers = v;
        }
        if let Some(v) = self.hidden {
            c.hidden_size = v;
        }
        if let Some(v) = self.intermediate {
            c.intermediate_size = v;
        }
        if let Some(v) = self.heads {
            c.num_attention_heads = v;
        }
        if let Some(v) = self.kv_heads {
            c.num_key_value_heads = Some(v);
        }
    }
}

/// An opened run: its config, data and network.
pub struct Run {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub network: Network,
    pub train_tokens: Vec<u32>,
    pub val_tokens: Vec<u32>,
    pub stream: BatchStream,
    /// The graphs of ranks 1.. of a data-parallel run, one on each further device.
    peers: Vec<Network>,
    /// Rank 0's collective first; empty unless the run is data-parallel.
    collectives: Vec<Box<dyn Collective>>,
    device: DeviceRecord,
    same_device: bool,
}

/// A world being stepped: on the host (CPU runs, and GPU runs from before the world moved to
/// the GPU) or kept on the GPU ([`DeviceWorld`]).
pub enum LiveWorld {
    Host(World),
    Device(Box<DeviceWorld>),
}

impl LiveWorld {
    pub fn step_count(&self) -> u64 {
        match self {
            LiveWorld::Host(w) => w.step,
            LiveWorld::Device(d) => d.step_count(),
        }
    }

    /// The world on the host: borrowed, or downloaded from the GPU.
    pub fn to_host(&self) -> Result<std::borrow::Cow<'_, World>> {
        match self {
            LiveWorld::Host(w) => Ok(std::borrow::Cow::Borrowed(w)),
            LiveWorld::Device(d) => d.download().map(std::borrow::Cow::Owned),
        }
    }

    /// The world on the host, owned.
    pub fn into_host(self) -> Result<World> {
        match self {
            LiveWorld::Host(w) => Ok(w),
            LiveWorld::Device(d) => d.download(),
        }
    }
}

/// What one step computed.
#[derive(Debug, Clone)]
pub struct StepOutput {
    pub step: u64,
    pub learning_rate: f64,
    pub loss: f32,
    pub grad_norm: f64,
    pub batch: Batch,
}

/// The optimiser step of a host world: the gradients' global norm, clipping, AdamW and the
/// projection when the run asks for it. Returns the norm.
fn apply_host_gradients(
    world: &mut World,
    grads: &[Vec<f32>],
    lr: f64,
    o: &TrainOptions,
    precision: Precision,
) -> Result<f64> {
    let norm = optim::grad_norm(grads);
    optim::adamw_step(world, grads, lr, optim::clip_factor(norm, o.grad_clip), o);
    if o.projection && matches!(precision, Precision::Ternary(_)) {
        optim::project(world, o.weight_quant.granularity())?;
    }
    Ok(norm)
}

impl Replica for World {
    fn step_count(&self) -> u64 {
        self.step
    }

    fn micro_gradients(
        &mut self,
        network: &Network,
        inputs: &[u32],
        targets: &[u32],
        rows: usize,
        seq: usize,
        precision: Precision,
    ) -> Result<(f32, candle_core::Tensor)> {
        let (loss, grads) = network.gradients(self, inputs, targets, rows, seq, precision)?;
        let flat = grads.concat();
        let n = flat.len();
        let flat = candle_core::Tensor::from_vec(flat, n, &candle_core::Device::Cpu)
            .map_err(|e| TrainError::compute("the gradients", e))?;
        Ok((loss, flat))
    }

    fn apply_flat(
        &mut self,
        _: &Network,
        grads: &candle_core::Tensor,
        lr: f64,
        o: &TrainOptions,
        precision: Precision,
    ) -> Result<f64> {
        let grads = crate::parallel::split_host(self, grads)?;
        apply_host_gradients(self, &grads, lr, o, precision)
    }
}

impl Replica for LiveWorld {
    fn step_count(&self) -> u64 {
        LiveWorld::step_count(self)
    }

    fn micro_gradients(
        &mut self,
        network: &Network,
        inputs: &[u32],
        targets: &[u32],
        rows: usize,
        seq: usize,
        precision: Precision,
    ) -> Result<(f32, candle_core::Tensor)> {
        match self {
            LiveWorld::Host(w) => w.micro_gradients(network, inputs, targets, rows, seq, precision),
            LiveWorld::Device(d) => {
                d.micro_gradients(network, inputs, targets, rows, seq, precision)
            }
        }
    }

    fn apply_flat(
        &mut self,
        network: &Network,
        grads: &candle_core::Tensor,
        lr: f64,
        o: &TrainOptions,
        precision: Precision,
    ) -> Result<f64> {
        match self {
            LiveWorld::Host(w) => w.apply_flat(network, grads, lr, o, precision),
            LiveWorld::Device(d) => d.apply_flat(network, grads, lr, o, precision),
        }
    }
}

/// A data-parallel run's devices: `device` first, each GPU once, and as many micro-batches a
/// step as a multiple of the devices, so that each computes the same number.
pub(crate) fn check_data_parallel(
    device: DeviceSpec,
    devices: &[DeviceSpec],
    micro_batches: usize,
) -> Result<()> {
    let Some(&first) = devices.first() else {
        return Ok(());
    };
    let list = || {
        devices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if first != device {
        return Err(TrainError::Options(format!(
            "the run computes on {device}, which must be the first of its devices ({})",
            list()
        )));
    }
    for (i, d) in devices.iter().enumerate() {
        d.check_built()?;
        if !d.is_cpu() && devices[..i].contains(d) {
            return Err(TrainError::Options(format!(
                "{d} is listed twice in {}: each GPU holds one replica",
                list()
            )));
        }
    }
    if !micro_batches.is_multiple_of(devices.len()) {
        return Err(TrainError::Options(format!(
            "--micro-batches {micro_batches} must be a multiple of the {} devices ({}), so that \
             each computes the same number of micro-batches a step",
            devices.len(),
            list()
        )));
    }
    Ok(())
}

/// Opens ranks 1.. of a data-parallel run.
fn open_peers(devices: &[DeviceSpec]) -> Result<Vec<candle_core::Device>> {
    devices.iter().skip(1).map(|d| d.open()).collect()
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Run {
    /// Creates `new.out`: tokenizer, tokenised data and `run.json`. Fails if a run is there.
    pub fn create(new: &NewRun) -> Result<Run> {
        new.options.validate()?;
        check_data_parallel(new.device, &new.devices, new.options.micro_batches)?;
        // The device first: a build without CUDA refuses before anything is written.
        let device = new.device.open()?;
        let peers = open_peers(&new.devices)?;
        if !new.options.matmul.is_f32() && new.device.is_cpu() {
            return Err(TrainError::Options(format!(
                "--matmul {} multiplies on a GPU's tensor cores; the CPU multiplies in f32",
                new.options.matmul.name()
            )));
        }
        // So is a product path this machine cannot compute on.
        if new.options.kernels == crate::config::Kernels::Ternary {
            if !new.device.is_cpu() {
                return Err(TrainError::Device(format!(
                    "the ternary product path runs on the CPU; train on {} with --kernels f32",
                    new.device
                )));
            }
            new.options.kernels.check_available()?;
        }
        let dir = &new.out;
        if dir.join(RunConfig::FILE).exists() {
            return Err(TrainError::Options(format!(
                "{} already holds a run; continue it with --resume {0}, or choose another --out",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let train_files = data::text_files(&new.data)?;
        let mut docs = data::read_documents(&train_files)?;
        let (val_files, val_docs) = match &new.val {
            Some(v) => {
                let files = data::text_files(v)?;
                let docs = data::read_documents(&files)?;
                (files, docs)
            }
            None => {
                let (train, val) = data::hold_out(docs, new.val_fraction)?;
                docs = train;
                (Vec::new(), val)
            }
        };
        let tokenizer = match &new.tokenizer {
            TokenizerSource::File(p) => data::load_tokenizer(p)?,
            TokenizerSource::Train(vocab) => data::train_tokenizer(&docs, *vocab)?,
        };
        data::save_tokenizer(&tokenizer, &dir.join(TOKENIZER_FILE))?;
        let train_tokens = data::encode_documents(&tokenizer, &docs)?;
        let val_tokens = data::encode_documents(&tokenizer, &val_docs)?;
        let o = &new.options;
        if train_tokens.len() <= o.seq_len {
            return Err(TrainError::Data(format!(
                "the training text is {} tokens, not enough for one sequence of {}",
                train_tokens.len(),
                o.seq_len
            )));
        }
        let vocab = tokenizer.get_vocab_size(true);
        let mut model = o.preset.config(vocab, o.seq_len);
        new.shape.apply(&mut model);
        model
            .validate(&dir.join(RunConfig::FILE))
            .map_err(|e| TrainError::Options(format!("the model shape: {e}")))?;
        let sep = data::separator_id(&tokenizer).map(tritlab_engine::config::TokenIds::One);
        model.bos_token_id = sep.clone();
        model.eos_token_id = sep;
        let config = RunConfig {
            format: RunConfig::FORMAT.into(),
            version: RUN_FORMAT_VERSION,
            tritlab_version: env!("CARGO_PKG_VERSION").into(),
            model,
            options: o.clone(),
            data: DataRecord {
                train_files: train_files.iter().map(|p| absolute(p)).collect(),
                val_files: val_files.iter().map(|p| absolute(p)).collect(),
                val_fraction: new.val_fraction,
                train_tokens_hash: data::tokens_hash(&train_tokens),
                val_tokens_hash: data::tokens_hash(&val_tokens),
                train_tokens: train_tokens.len(),
                val_tokens: val_tokens.len(),
            },
            threads: new.threads,
            device: DeviceRecord::default(),
            // A GPU run keeps its world on the GPU (crate::device_world).
            world: if new.device.is_cpu() {
                WorldScheme::Host
            } else {
                WorldScheme::Device
            },
            data_parallel: Vec::new(),
        };
        let mut record = DeviceRecord::of(new.device, &device);
        if new.devices.iter().any(|d| !d.is_cpu()) {
            record.nccl = crate::parallel::nccl_version();
        }
        let config = RunConfig {
            device: record,
            data_parallel: new.devices.clone(),
            ..config
        };
        config.write(dir)?;
        Self::assemble(
            dir,
            config,
            device,
            &new.devices,
            peers,
            train_tokens,
            val_tokens,
        )
    }

    fn assemble(
        dir: &Path,
        config: RunConfig,
        device: candle_core::Device,
        devices: &[DeviceSpec],
        peers: Vec<candle_core::Device>,
        train_tokens: Vec<u32>,
        val_tokens: Vec<u32>,
    ) -> Result<Run> {
        let o = &config.options;
        let stream = BatchStream::new(o.seed, o.batch_size, o.seq_len);
        let collectives = if devices.is_empty() {
            Vec::new()
        } else {
            let all: Vec<candle_core::Device> = std::iter::once(device.clone())
                .chain(peers.iter().cloned())
                .collect();
            crate::parallel::group(&all, devices)?
        };
        let network = Self::network_on(dir, &config, device)?;
        let peers = peers
            .into_iter()
            .map(|d| Self::network_on(dir, &config, d))
            .collect::<Result<Vec<_>>>()?;
        Ok(Run {
            dir: dir.to_path_buf(),
            network,
            peers,
            collectives,
            device: config.device.clone(),
            same_device: true,
            stream,
            config,
            train_tokens,
            val_tokens,
        })
    }

    /// The run's graph on one device.
    fn network_on(dir: &Path, config: &RunConfig, device: candle_core::Device) -> Result<Network> {
        let o = &config.options;
        let on_gpu = !device.is_cpu();
        let matmul = if on_gpu {
            o.matmul
        } else {
            crate::config::Matmul::F32
        };
        let mut network = Network::on(config.model.clone(), device)?
            .with_matmul(matmul)
            .with_graph(o.graph)
            .with_kernels(o.kernels)
            .map_err(|e| match e {
                TrainError::Device(m) => TrainError::Device(format!(
                    "the run in {} computed its products on the {} path: {m}",
                    dir.display(),
                    o.kernels
                )),
                e => e,
            })?;
        // On the GPU, a device world hands the forward pass its weights ternarised.
        if on_gpu && config.world == WorldScheme::Device {
            network = network.with_quant_ops(QuantOps::Prequantized)?;
        }
        Ok(network)
    }

    /// Opens an existing run: reads its config and tokenizer and re-encodes its data, checking
    /// that the tokens are the ones the run trained on.
    ///
    /// A data-parallel run opens on the devices it recorded. Its bits do not depend on how many
    /// there are ([`crate::parallel`]), so [`Run::open_on`] may also open it on one.
    pub fn open(dir: &Path) -> Result<Run> {
        let config = RunConfig::read(dir)?;
        Self::open_with(dir, config.device.device, &config.data_parallel)
    }

    /// Opens an existing run to compute on `device`, which may differ from the one it was
    /// computed on ([`Run::same_device`] tells): replay then checks its trits but not its floats.
    pub fn open_on(dir: &Path, device: DeviceSpec) -> Result<Run> {
        Self::open_with(dir, device, &[])
    }

    /// Opens the run on the device it computed on, or on the first of a data-parallel run's
    /// devices alone: how replay recomputes steps, since their bits do not depend on the count.
    pub fn open_alone(dir: &Path) -> Result<Run> {
        let config = RunConfig::read(dir)?;
        Self::open_with(dir, config.device.device, &[])
    }

    pub(crate) fn open_with(dir: &Path, device: DeviceSpec, devices: &[DeviceSpec]) -> Result<Run> {
        // `read` validates every field, so nothing below divides by a zero from a bad file.
        let config = RunConfig::read(dir)?;
        check_data_parallel(device, devices, config.options.micro_batches)?;
        let tokenizer = data::load_tokenizer(&dir.join(TOKENIZER_FILE))?;
        let d = &config.data;
        let mut docs = data::read_documents(&d.train_files)?;
        let val_docs = if d.val_files.is_empty() {
            let (train, val) = data::hold_out(docs, d.val_fraction)?;
            docs = train;
            val
        } else {
            data::read_documents(&d.val_files)?
        };
        let train_tokens = data::encode_documents(&tokenizer, &docs)?;
        let val_tokens = data::encode_documents(&tokenizer, &val_docs)?;
        for (what, tokens, hash) in [
            ("training", &train_tokens, &d.train_tokens_hash),
            ("validation", &val_tokens, &d.val_tokens_hash),
        ] {
            if &data::tokens_hash(tokens) != hash {
                return Err(TrainError::Data(format!(
                    "the {what} data no longer reads as it did when the run started (its token hash changed); files: {}",
                    d.train_files
                        .iter()
                        .chain(&d.val_files)
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        // The vocabulary is part of the model shape; ids past it would index past the embedding.
        let vocab = config.model.vocab_size;
        if let Some(&id) = train_tokens
            .iter()
            .chain(&val_tokens)
            .find(|&&id| id as usize >= vocab)
        {
            return Err(TrainError::format(
                dir.join(TOKENIZER_FILE),
                format!(
                    "gives token id {id}, outside the model's vocabulary of {vocab} in {}",
                    RunConfig::FILE
                ),
            ));
        }
        if train_tokens.len() <= config.options.seq_len {
            return Err(TrainError::Data(format!(
                "the training text is {} tokens, not enough for one sequence of {}",
                train_tokens.len(),
                config.options.seq_len
            )));
        }
        let opened = device.open()?;
        let peers = open_peers(devices)?;
        let here = DeviceRecord::of(device, &opened);
        let mut run = Self::assemble(
            dir,
            config,
            opened,
            devices,
            peers,
            train_tokens,
            val_tokens,
        )?;
        run.same_device = run.config.device.same_computation(&here);
        run.device = here;
        Ok(run)
    }

    /// The device this process computes the run on.
    pub fn device(&self) -> &DeviceRecord {
        &self.device
    }

    /// Whether this process computes on the kind of device the run was computed on, so that
    /// recomputed steps must match the log bit for bit.
    pub fn same_device(&self) -> bool {
        self.same_device
    }

    pub fn options(&self) -> &TrainOptions {
        &self.config.options
    }

    /// Sets candle's per-process TF32 switch for this run's products. Called before every
    /// computation of the run, since another run opened in the same process (a replay beside a
    /// training) may have set it otherwise.
    pub fn select_products(&self) {
        crate::device::set_tf32(
            !self.network.device().is_cpu() && self.options().matmul == crate::config::Matmul::Tf32,
        );
    }

    /// Where the run's world lives, which decides its hash and quantiser.
    pub fn scheme(&self) -> WorldScheme {
        self.config.world
    }

    /// `world` ready to be stepped in this process: kept on the GPU for a device-world run that
    /// computes on a GPU, on the host otherwise.
    pub fn live(&self, world: World) -> Result<LiveWorld> {
        self.live_on(&self.network, world)
    }

    /// The replicas of ranks 1.. of a data-parallel run (none otherwise), each a copy of
    /// `world` on its device.
    pub fn live_peers(&self, world: &World) -> Result<Vec<LiveWorld>> {
        self.peers
            .iter()
            .map(|net| self.live_on(net, world.clone()))
            .collect()
    }

    fn live_on(&self, network: &Network, world: World) -> Result<LiveWorld> {
        if network.quant_ops() == QuantOps::Prequantized {
            let d = DeviceWorld::upload(&world, network, self.options().weight_quant)?;
            return Ok(LiveWorld::Device(Box::new(d)));
        }
        Ok(LiveWorld::Host(world))
    }

    /// Whether a step splits its batch: into micro-batches, or over the devices of a
    /// data-parallel run.
    fn splits(&self) -> bool {
        self.options().micro_batches > 1 || !self.collectives.is_empty()
    }

    /// Applies the next step to a live world (and to the replicas of ranks 1.. of a
    /// data-parallel run, which must be as many as its further devices).
    pub fn step_live(
        &self,
        world: &mut LiveWorld,
        peers: &mut [LiveWorld],
        precision: Precision,
    ) -> Result<StepOutput> {
        if !self.splits() {
            return match world {
                LiveWorld::Host(w) => self.apply_step(w, precision),
                LiveWorld::Device(d) => self.apply_device_step(d, precision),
            };
        }
        if peers.len() != self.peers.len() {
            return Err(TrainError::Invalid(format!(
                "{} replicas for the {} further devices of the run",
                peers.len(),
                self.peers.len()
            )));
        }
        let mut worlds: Vec<&mut dyn crate::parallel::Replica> = vec![world];
        worlds.extend(
            peers
                .iter_mut()
                .map(|p| p as &mut dyn crate::parallel::Replica),
        );
        self.split_step(worlds, true, precision)
    }

    /// A step of micro-batches on one device or several ([`crate::parallel`]): `worlds` are
    /// the replicas of all the run's devices when they `exchange` gradients, or one world that
    /// takes every micro-batch itself (a run on one device, and the twin).
    fn split_step(
        &self,
        worlds: Vec<&mut dyn crate::parallel::Replica>,
        exchange: bool,
        precision: Precision,
    ) -> Result<StepOutput> {
        self.select_products();
        let o = self.options();
        let step = worlds[0].step_count() + 1;
        if let Some(w) = worlds.iter().find(|w| w.step_count() + 1 != step) {
            return Err(TrainError::Invalid(format!(
                "a replica is at step {}, rank 0 at step {}",
                w.step_count(),
                step - 1
            )));
        }
        let batch = self.stream.batch(&self.train_tokens, step)?;
        let lr = o.learning_rate_at(step);
        let networks = std::iter::once(&self.network).chain(&self.peers);
        let mut collectives = self
            .collectives
            .iter()
            .map(|c| Some(c.as_ref()))
            .filter(|_| exchange);
        let ranks = worlds
            .into_iter()
            .zip(networks)
            .map(|(world, network)| crate::parallel::Rank {
                world,
                network,
                collective: collectives.next().flatten(),
            })
            .collect();
        let out = crate::parallel::step(ranks, &batch, lr, o, precision, step)?;
        Ok(StepOutput {
            step,
            learning_rate: lr,
            loss: out.loss,
            grad_norm: out.grad_norm,
            batch,
        })
    }

    /// The ternary view of a live world (what the log's flips compare) and its hash, under the
    /// run's scheme.
    pub fn view(&self, world: &mut LiveWorld) -> Result<(Vec<TernaryLayer>, ContentHash)> {
        match world {
            LiveWorld::Host(w) => Ok((
                crate::export::ternary_layers_as(w, self.options().weight_quant, self.scheme())?,
                self.scheme().hash(w)?,
            )),
            LiveWorld::Device(d) => d.view(),
        }
    }

    /// Applies step `world.step + 1` to a world kept on the GPU: gradients, their norm and
    /// AdamW there; the loss and one sum per parameter come down.
    pub fn apply_device_step(
        &self,
        world: &mut DeviceWorld,
        precision: Precision,
    ) -> Result<StepOutput> {
        self.select_products();
        let o = self.options();
        let step = world.step_count() + 1;
        let batch = self.stream.batch(&self.train_tokens, step)?;
        let lr = o.learning_rate_at(step);
        let (loss, grads) = world.gradients(
            &self.network,
            &batch.inputs,
            &batch.targets,
            o.batch_size,
            o.seq_len,
            precision,
        )?;
        if !loss.is_finite() {
            return Err(TrainError::Compute {
                what: format!("step {step}"),
                message: format!("the loss is {loss}; lower --lr or raise --warmup"),
            });
        }
        let norm = world.apply(&grads, lr, o, precision)?;
        drop(grads);
        Ok(StepOutput {
            step,
            learning_rate: lr,
            loss,
            grad_norm: norm,
            batch,
        })
    }

    pub fn precision(&self) -> Precision {
        Precision::Ternary(self.options().weight_quant.granularity())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(TOKENIZER_FILE)
    }

    /// Step 0 of this run (and of its twin: the same initial weights).
    pub fn initial_world(&self) -> World {
        World::init(&self.network.specs, self.options().seed)
    }

    /// Applies step `world.step + 1` to `world` in place.
    ///
    /// A run of several micro-batches takes them one after another, as one rank of a
    /// data-parallel run would alone; the replicas of a data-parallel run go through
    /// [`Run::step_live`].
    pub fn apply_step(&self, world: &mut World, precision: Precision) -> Result<StepOutput> {
        if self.options().micro_batches > 1 {
            return self.split_step(vec![world], false, precision);
        }
        self.select_products();
        let o = self.options();
        let step = world.step + 1;
        let batch = self.stream.batch(&self.train_tokens, step)?;
        let lr = o.learning_rate_at(step);
        let (loss, grads) = self.network.gradients(
            world,
            &batch.inputs,
            &batch.targets,
            o.batch_size,
            o.seq_len,
            precision,
        )?;
        if !loss.is_finite() {
            return Err(TrainError::Compute {
                what: format!("step {step}"),
                message: format!("the loss is {loss}; lower --lr or raise --warmup"),
            });
        }
        let norm = apply_host_gradients(world, &grads, lr, o, precision)?;
        Ok(StepOutput {
            step,
            learning_rate: lr,
            loss,
            grad_norm: norm,
            batch,
        })
    }

    /// The morphism record of a computed step.
    pub fn record(
        &self,
        out: &StepOutput,
        world_before: ContentHash,
        world_after: ContentHash,
        before: &[TernaryLayer],
        after: &[TernaryLayer],
    ) -> Result<StepRecord> {
        // Layers in parallel (the flips of a large model are most of the host's work per step);
        // `collect` keeps their order.
        let layers = before
            .par_iter()
            .zip(after)
            .map(|(b, a)| {
                LayerMorphism::between(
                    b.name.clone(),
                    &b.weights.trits,
                    b.scale(),
                    &a.weights.trits,
                    a.scale(),
                )
                .map_err(|e| TrainError::compute(format!("flips of `{}`", b.name), e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StepRecord {
            step: out.step,
            learning_rate: out.learning_rate,
            loss: out.loss as f64,
            grad_norm: out.grad_norm,
            batch_hash: out.batch.content_hash(),
            batch_position: self.stream.position(out.step),
            rng_state: self.stream.rng_state(out.step),
            world_before,
            world_after,
            layers,
        })
    }

    /// The logged records, checked to be steps 1, 2, 3, … in order.
    pub fn read_log(&self) -> Result<(Vec<StepRecord>, TailStatus)> {
        read_log(&self.log_path())
    }

    /// The nearest checkpoint at or before `step`, loaded and verified. Step 0 needs no file:
    /// the initial world is a function of the seed, so a run killed before its first checkpoint
    /// was written still resumes and replays.
    pub fn load_checkpoint(&self, step: u64, with_twin: bool) -> Result<checkpoint::Checkpoint> {
        let found = checkpoint::checkpoint_steps(&self.dir)?
            .into_iter()
            .rev()
            .find(|&s| s <= step);
        match found {
            Some(s) => {
                let path = checkpoint::checkpoint_path(&self.dir, s);
                let loaded = checkpoint::load(&path, &self.network.specs, with_twin)?;
                if loaded.scheme != self.scheme() {
                    return Err(TrainError::format(
                        &path,
                        format!(
                            "is hashed as a {} world, and the run keeps a {} world",
                            loaded.scheme.name(),
                            self.scheme().name()
                        ),
                    ));
                }
                // `load` checks the name against the metadata too; this guards the invariant
                // the callers rely on (the world is at the step they asked for or before it).
                if loaded.world.step != s {
                    return Err(TrainError::format(
                        &path,
                        format!(
                            "the file name says step {s}, its metadata step {}",
                            loaded.world.step
                        ),
                    ));
                }
                Ok(loaded)
            }
            None => {
                let world = self.initial_world();
                let twin = with_twin.then(|| world.clone());
                Ok(checkpoint::Checkpoint {
                    world,
                    twin,
                    scheme: self.scheme(),
                })
            }
        }
    }
}

/// Reads a morphism log and checks its records are consecutive steps from 1.
pub fn read_log(path: &Path) -> Result<(Vec<StepRecord>, TailStatus)> {
    if !path.exists() {
        return Ok((Vec::new(), TailStatus::Clean));
    }
    let (records, tail) = MorphismLogReader::open(path)?.read_all()?;
    check_consecutive(path, &records)?;
    Ok((records, tail))
}

/// Records must follow each other: step numbers increase by one and each starts from the world
/// the previous one ended in.
pub fn check_consecutive(path: &Path, records: &[StepRecord]) -> Result<()> {
    for (i, pair) in records.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        if b.step != a.step + 1 || b.world_before != a.world_after {
            return Err(TrainError::format(
                path,
                format!(
                    "record {} (step {}) does not follow record {} (step {}): the log mixes runs or lost records",
                    i + 1,
                    b.step,
                    i,
                    a.step
                ),
            ));
        }
    }
    Ok(())
}

/// Writes records `from..=to` of the log at `src` as a new log at `dst` (an excerpt to ship
/// beside an exported model: the model is the world after `to`, and the timeline rewinds from it).
pub fn write_excerpt(src: &Path, dst: &Path, from: u64, to: u64) -> Result<usize> {
    let (records, _) = read_log(src)?;
    let picked: Vec<&StepRecord> = records
        .iter()
        .filter(|r| r.step >= from && r.step <= to)
        .collect();
    if picked.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{} holds no steps in {from}..={to}",
            src.display()
        )));
    }
    let tmp = dst.with_extension("tml.tmp");
    let mut w = tritlab_morphism::MorphismLogWriter::create(&tmp)?;
    for r in &picked {
        w.append(r)?;
    }
    w.sync()?;
    drop(w);
    std::fs::rename(&tmp, dst).map_err(|e| TrainError::io(dst, e))?;
    Ok(picked.len())
}
