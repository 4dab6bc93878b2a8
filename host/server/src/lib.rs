//! tritlab-server: an OpenAI-compatible HTTP server for a tritlab model, with continuous
//! batching.
//!
//! - [`routes`]: the endpoints (`/v1/completions`, `/v1/chat/completions`, `/v1/models`,
//!   `/tokenize`, `/detokenize`, `/health`, `/metrics`) on axum, with bearer-token auth, a body
//!   limit, OpenAI-style error objects and server-sent events for `stream: true`.
//! - [`scheduler`]: one engine thread that runs steps of [`tritlab_engine::Model::forward_batch`]
//!   over every running sequence (new requests join between steps, prompts are prefilled in
//!   chunks beside the others' decoding), choosing tokens with the engine's
//!   [`tritlab_engine::Sequence`] as `generate` does.
//! - [`api`]: the request bodies and their checks; [`metrics`]: Prometheus text.
//!
//! The model, tokenizer and plugins come from the session (`tritlab serve` loads them through
//! the command language's `load`, as every face does); this crate only schedules and speaks HTTP.

pub mod api;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod scheduler;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use error::{ApiError, ServerError};
use tritlab_engine::{ChatTemplate, Model, Tokenizer};
use tritlab_plugin_host::{PluginHost, PluginKind};

/// How the server runs. [`ServerConfig::default`] is what `tritlab serve` starts with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The model's name in `/v1/models` and in the `model` field requests must match.
    pub model_name: String,
    /// Sequences that run at once (each step decodes all of them together).
    pub max_batch: usize,
    /// Requests that may wait for a place in the batch; beyond, 429 with `Retry-After`.
    pub max_queue: usize,
    /// Prompt tokens prefilled per step, beside the running sequences' decoding: a long prompt
    /// delays the others' next token by one chunk, never by its whole length.
    pub prefill_chunk: usize,
    /// Positions one sequence may use, prompt and completion (at most the model's
    /// `max_position_embeddings`; `None`: that).
    pub context: Option<usize>,
    /// The largest `max_tokens` a request may ask for (`None`: the context).
    pub max_tokens: Option<usize>,
    /// Request bodies beyond this many bytes are refused with 413.
    pub max_body_bytes: usize,
    /// A request still running after this long ends with 504 (or an error event).
    pub request_timeout: Duration,
    /// Requests must carry `Authorization: Bearer KEY` (all but `/health`).
    pub api_key: Option<String>,
    /// A test hook: a request whose prompt is exactly this text panics in the engine thread,
    /// as a bug would, so that tests can see the panic become a 500 while the server lives on.
    pub fault_prompt: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_name: "default".into(),
            max_batch: 8,
            max_queue: 64,
            prefill_chunk: 64,
            context: None,
            max_tokens: None,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(600),
            api_key: None,
            fault_prompt: None,
        }
    }
}

/// What the server serves: a loaded model, its tokenizer and chat template, and the plugin host
/// with the tracer whose colours and trits streamed chunks carry.
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// The chat template (the model's own, or one given); chat completions need one.
    pub template: Option<ChatTemplate>,
    pub plugins: Option<PluginHost>,
    /// A loaded tracer plugin's name.
    pub tracer: Option<String>,
}

/// A server ready to accept connections.
pub struct Server {
    state: Arc<routes::AppState>,
}

impl Server {
    /// Checks the configuration against the model and starts the engine thread.
    pub fn new(engine: Engine, config: ServerConfig) -> Result<Self, ServerError> {
        let model_max = engine.model.config().max_position_embeddings;
        let context = config.context.unwrap_or(model_max);
        if context < 2 || context > model_max {
            return Err(ServerError::Config(format!(
                "--ctx {context}: must be between 2 and the model's max_position_embeddings \
                 ({model_max})"
            )));
        }
        let max_tokens = config.max_tokens.unwrap_or(context);
        for (name, value) in [
            ("--max-batch", config.max_batch),
            ("--max-queue", config.max_queue),
            ("--prefill-chunk", config.prefill_chunk),
            ("--max-tokens", max_tokens),
        ] {
            if value == 0 {
                return Err(ServerError::Config(format!("{name} must be at least 1")));
            }
        }
        if let Some(name) = &engine.tracer {
            let loaded = engine
                .plugins
                .as_ref()
                .map(|h| h.plugins())
                .unwrap_or_default();
            let tracers: Vec<String> = loaded
                .into_iter()
                .filter(|p| p.info.kind == PluginKind::Tracer)
                .map(|p| p.info.name)
                .collect();
            if !tracers.contains(name) {
                return Err(ServerError::Config(format!(
                    "--tracer {name}: no tracer plugin of that name is loaded (tracers: {})",
                    if tracers.is_empty() {
                        "none".to_string()
                    } else {
                        tracers.join(", ")
                    }
                )));
            }
        }
        if config.api_key.as_deref() == Some("") {
            return Err(ServerError::Config("--api-key must not be empty".into()));
        }
        let state = routes::AppState::start(engine, config, context, max_tokens)?;
        Ok(Self {
            state: Arc::new(state),
        })
    }

    /// The routes, for serving on a listener of one's own.
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting connections,
    /// lets every request in flight finish (streams included), and stops the engine thread.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        let signal = async move {
            shutdown.await;
            state.begin_draining();
        };
        axum::serve(listener, self.router())
            .with_graceful_shutdown(signal)
            .await
            .map_err(ServerError::Serve)?;
        let state = self.state.clone();
        // Joining the engine thread blocks; not on the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || state.shut_down()).await;
        Ok(())
    }
}
