//! `tritlab serve MODEL`: an OpenAI-compatible HTTP server with continuous batching
//! (`tritlab-server`) over a model loaded the way every face loads one: the session's `load`
//! command, with the session's plugins.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tritlab_engine::ChatTemplate;
use tritlab_server::{Engine, Server, ServerConfig};
use tritlab_session::lang::{self, ModelRef};
use tritlab_session::{Command, Context, Session};

use crate::console;

#[derive(clap::Args)]
pub struct Args {
    /// The model: `default`, a checkpoint directory, a .safetensors or a .gguf file.
    #[arg(default_value = "default")]
    model: String,
    /// The address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences decoded together in one step.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Requests that may wait for a place in the batch; more are answered 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Positions per sequence, prompt and completion (default: the model's
    /// max_position_embeddings).
    #[arg(long)]
    ctx: Option<usize>,
    /// The largest max_tokens a request may ask for (default: the context).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Prompt tokens prefilled per step beside the running sequences' decoding.
    #[arg(long, default_value_t = 64)]
    prefill_chunk: usize,
    /// Seconds a request may run before it ends with 504 (or an error event when streaming).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// A tracer plugin (e.g. gay-tracer) whose colour and trit every streamed token carries in
    /// the `tritlab` field of its chunk.
    #[arg(long, value_name = "PLUGIN")]
    tracer: Option<String>,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// A Jinja chat template for /v1/chat/completions, instead of the model's own (a model
    /// without one needs it).
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// How the model keeps its output projection: exact, bf16, int8, q6 or q4.
    #[arg(long, default_value = "int8")]
    head_precision: String,
    /// How the model keeps its ternary layers: i2 (2 bits per trit) or t1 (1.6 bits per trit).
    #[arg(long, default_value = "i2")]
    packing: String,
    /// The model's name in /v1/models (default: `default`, or the model's file name).
    #[arg(long)]
    name: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let head = lang::HeadPrecision::from_name(&args.head_precision).with_context(|| {
        format!(
            "--head-precision {}: expected one of {}",
            args.head_precision,
            lang::HeadPrecision::NAMES.join(", ")
        )
    })?;
    let packing = lang::Packing::from_name(&args.packing).with_context(|| {
        format!(
            "--packing {}: expected one of {}",
            args.packing,
            lang::Packing::NAMES.join(", ")
        )
    })?;
    let model = match args.model.as_str() {
        "default" => ModelRef::Default,
        path => ModelRef::Path(PathBuf::from(path)),
    };
    // The session loads the model and starts the plugins, as for every other face; the server
    // then drives the engine itself.
    let mut session = Session::new(console::session_config(false));
    let load = Command::Load(lang::Load {
        model,
        head,
        packing,
    });
    let cancel = AtomicBool::new(false);
    let mut ignore = |_| {};
    let exec = session.execute(
        &load.to_string(),
        &mut Context {
            cancel: &cancel,
            events: &mut ignore,
        },
    );
    if let Some(e) = exec.error {
        bail!("{e}");
    }
    let (loaded, plugins) = session.into_engine();
    let Some(mut loaded) = loaded else {
        bail!("no model was loaded");
    };
    // The server reads and writes text: a model without a tokenizer is refused here.
    let tokenizer = loaded.take_tokenizer("serve")?;
    let template = match &args.chat_template {
        Some(path) => Some(ChatTemplate::from_file_for_model(
            path,
            &loaded.model,
            &tokenizer,
        )?),
        None => ChatTemplate::for_model(&loaded.model, &tokenizer)?,
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| served_name(&args.model, &loaded.path));
    let has_template = template.is_some();
    let config = ServerConfig {
        model_name: name.clone(),
        max_batch: args.max_batch,
        max_queue: args.max_queue,
        prefill_chunk: args.prefill_chunk,
        context: args.ctx,
        max_tokens: args.max_tokens,
        request_timeout: Duration::from_secs(args.timeout),
        api_key: args.api_key.clone(),
        ..ServerConfig::default()
    };
    let engine = Engine {
        model: loaded.model,
        tokenizer,
        template,
        plugins,
        tracer: args.tracer.clone(),
    };
    let server = Server::new(engine, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        eprintln!(
            "tritlab serve: {name} (max batch {}, queue {}{}{}{})",
            args.max_batch,
            args.max_queue,
            if has_template {
                ""
            } else {
                ", no chat template: /v1/chat/completions answers 400"
            },
            args.tracer
                .as_deref()
                .map(|t| format!(", traced by {t}"))
                .unwrap_or_default(),
            if args.api_key.is_some() {
                ", API key required"
            } else {
                ""
            },
        );
        // The one line on stdout: scripts that start the server with --port 0 read it.
        println!("listening on http://{bound}");
        server.serve(listener, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("tritlab serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// `default` for the default model, else the model's file name without its extension.
fn served_name(asked: &str, path: &Path) -> String {
    if asked == "default" {
        return asked.to_string();
    }
    let stem = if path.is_file() {
        path.file_stem()
    } else {
        path.file_name()
    };
    stem.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| asked.to_string())
}

/// SIGTERM or Ctrl-C: stop accepting connections and let every request in flight finish.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    eprintln!("tritlab serve: draining the requests in flight, then stopping");
}
