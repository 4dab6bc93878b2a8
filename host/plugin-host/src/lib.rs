//! Sandboxed host for tritlab's plugins.
//!
//! Plugins are WebAssembly components built against the WIT contract in
//! `wit/tritlab-plugin.wit` (package `tritlab:plugin`, version
//! [`CONTRACT_VERSION`]). They come in three kinds: *tracers* annotate each
//! generation or training step with a colour, a trit and a label;
//! *checkers* return verdicts on trit data; *visualisers* draw tensors and
//! series as images or plot data.
//!
//! [`PluginHost`] loads them from folders or paths, lists them with their
//! self-description, enables and disables them, and calls them in a sandbox
//! (see [`PluginHost`] for what that means and [`Limits`] for the numbers).
//! The public API uses this crate's plain types only; in particular the host
//! knows nothing of the engine, so engine changes never rebuild wasmtime. The
//! caller converts engine events into [`GenerationStep`] and
//! [`TrainingStep`], and serves tensors to plugins through a
//! [`TensorSource`].
//!
//! ```no_run
//! use tritlab_plugin_host::{GenerationStep, HostConfig, PluginHost};
//!
//! let mut host = PluginHost::new(HostConfig::default())?;
//! for result in host.load_standard_dirs("target/plugins") {
//!     if let Err(err) = result {
//!         eprintln!("{err}");
//!     }
//! }
//! let step = GenerationStep { step: 0, token_text: "hello".into(), ..Default::default() };
//! for (plugin, annotation) in host.trace_generation_all(&step) {
//!     match annotation {
//!         Ok(annotation) => println!("{plugin}: {} {}", annotation.colour.hex(), annotation.trit),
//!         Err(err) => eprintln!("{err}"),
//!     }
//! }
//! # Ok::<(), tritlab_plugin_host::HostError>(())
//! ```

mod bindings;
mod cache;
mod config;
mod convert;
mod error;
mod host;
mod output;
mod sandbox;
mod tensor;
mod types;

pub use config::{default_cache_dir, user_plugin_dir, HostConfig, Limits};
pub use error::{Call, HostError, LoadError, PluginError};
pub use host::{
    contract_compatible, PluginHost, PluginStatus, CONTRACT_PACKAGE, CONTRACT_VERSION,
    HOST_LOG_NAME,
};
pub use tensor::{InMemoryTensors, NoTensors, TensorSource};
pub use types::*;
