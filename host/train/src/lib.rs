//! tritlab-train: quantisation-aware training of BitNet b1.58 models, where every optimiser step
//! is a recorded morphism World → World′ that can be replayed bit for bit.
//!
//! - [`Trainer`] runs the straight-through-estimator recipe (absmean-ternary weights and int8
//!   activations in the forward pass, gradients to latent f32 weights) with AdamW, warm-up and
//!   cosine decay and gradient clipping, optionally beside a full-precision twin. Each step
//!   appends a [`tritlab_morphism::StepRecord`] to the run's log; latent checkpoints are written
//!   every K steps.
//! - [`replay`] recomputes logged steps from the nearest checkpoint and checks each world hash;
//!   it also rebuilds the model at any step.
//! - [`Timeline`] moves through the ternary worlds of a log (step, back, seek) from the flips
//!   alone, for interactive use.
//!
//! Training is deterministic for a given device: on the CPU for a given thread count, on a CUDA
//! GPU (the `cuda` feature) for a given GPU model. `run.json` records both.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod device_world;
mod error;
pub mod export;
pub mod fused;
pub mod model;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod replay;
pub mod run;
pub mod scheme;
pub mod timeline;
mod trainer;

pub use config::{Graph, Kernels, Matmul, Preset, RunConfig, TrainOptions, WeightQuant};
pub use device::{DeviceRecord, DeviceSpec};
pub use error::{write_atomic, Result, TrainError};
pub use run::{LiveWorld, NewRun, Run, RunLock, ShapeOverrides, TokenizerSource};
pub use scheme::WorldScheme;
pub use timeline::{Timeline, TimelineLayer};
pub use trainer::{Evaluation, ResumeInfo, StepReport, Trainer};
