//! The HTTP face: OpenAI's endpoints as clients use them, plus `/tokenize`, `/detokenize`,
//! `/health` and `/metrics`.
//!
//! Handlers check and tokenise a request (every problem a 400 naming the field), queue a
//! [`Job`] for the engine thread (a full queue is a 429 with `Retry-After`), and turn the
//! job's events into one JSON answer or a stream of server-sent events ending in `[DONE]`.
//! Dropping the answer (the client left) closes the job's channel, and the engine thread drops
//! the sequence at its next step. A panicking handler becomes a 500 with an error object.

use crate::api::{self, ChatRequest, Common, CompletionRequest, Content, Message, Prompt};
use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;
use crate::scheduler::{
    EngineParts, Event, FinishReason, Job, Scheduler, SchedulerConfig, TokenEvent, Traced,
};
use crate::{Engine, ServerConfig};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::FutureExt as _;
use serde_json::{json, Value};
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tritlab_engine::{
    turn_end_ids, ChatMessage, ChatTemplate, GenerateOptions, Model, Role, SamplingOptions,
    Tokenizer,
};

/// Everything the handlers share.
pub struct AppState {
    config: ServerConfig,
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    /// Ids that end an assistant's turn (the model's eos ids among them).
    turn_ends: Vec<u32>,
    context: usize,
    max_tokens: usize,
    scheduler: Scheduler,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// blake3 of the API key: hashes compare in constant time, whatever the lengths.
    key: Option<blake3::Hash>,
    traced: bool,
    created: u64,
    next_id: AtomicU64,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    pub(crate) fn start(
        engine: Engine,
        config: ServerConfig,
        context: usize,
        max_tokens: usize,
    ) -> Result<Self, ServerError> {
        let model = Arc::new(engine.model);
        let tokenizer = Arc::new(engine.tokenizer);
        let turn_ends = turn_end_ids(&model, &tokenizer, engine.template.as_ref());
        let metrics = Arc::new(Metrics::default());
        let traced = engine.tracer.is_some();
        let scheduler = Scheduler::start(
            EngineParts {
                model: model.clone(),
                tokenizer: tokenizer.clone(),
                plugins: engine.plugins,
                tracer: engine.tracer,
                tracer_failed: false,
            },
            SchedulerConfig {
                max_batch: config.max_batch,
                max_queue: config.max_queue,
                prefill_chunk: config.prefill_chunk,
                context,
                timeout: config.request_timeout,
            },
            metrics.clone(),
        )
        .map_err(ServerError::Thread)?;
        Ok(Self {
            key: config
                .api_key
                .as_deref()
                .map(|k| blake3::hash(k.as_bytes())),
            config,
            model,
            tokenizer,
            template: engine.template,
            turn_ends,
            context,
            max_tokens,
            scheduler,
            metrics,
            draining: AtomicBool::new(false),
            traced,
            created: now_seconds(),
            next_id: AtomicU64::new(0),
        })
    }

    pub(crate) fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn shut_down(&self) {
        self.scheduler.shut_down();
    }

    fn check_model(&self, asked: &Option<String>) -> Result<(), ApiError> {
        match asked {
            Some(m) if *m != self.config.model_name => {
                Err(ApiError::model_not_found(m, &self.config.model_name))
            }
            _ => Ok(()),
        }
    }

    fn id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", self.created)
    }

    fn encode(&self, text: &str, special: bool, param: &str) -> Result<Vec<u32>, ApiError> {
        self.tokenizer
            .encode(text, special)
            .map_err(|e| ApiError::invalid(param, format!("`{param}` cannot be tokenised: {e}")))
    }

    fn check_ids(&self, ids: &[u32], param: &str) -> Result<(), ApiError> {
        let vocab = self.model.vocab_size();
        match ids.iter().find(|&&t| t as usize >= vocab) {
            Some(bad) => Err(ApiError::invalid(
                param,
                format!("`{param}` holds token id {bad}, outside the vocabulary (size {vocab})"),
            )),
            None => Ok(()),
        }
    }

    /// A job for the engine thread from a tokenised prompt and the request's options.
    #[allow(clippy::too_many_arguments)]
    fn job(
        &self,
        prompt: Vec<u32>,
        prompt_param: &str,
        common: &Common,
        asked_max: Option<(u64, &str)>,
        default_max: Option<usize>,
        stop_tokens: Vec<u32>,
        logprobs: Option<usize>,
        fault: bool,
    ) -> Result<(Job, UnboundedReceiver<Event>), ApiError> {
        if prompt.is_empty() {
            return Err(ApiError::invalid(
                prompt_param,
                format!("`{prompt_param}` encodes to no tokens"),
            ));
        }
        if prompt.len() >= self.context {
            return Err(ApiError::invalid(
                prompt_param,
                format!(
                    "`{prompt_param}` is {} tokens; this server's context is {} tokens, which \
                     must leave room for at least one generated token",
                    prompt.len(),
                    self.context
                ),
            ));
        }
        let room = self.context - prompt.len();
        let max_tokens = match asked_max {
            Some((0, name)) => {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` must be at least 1"),
                ))
            }
            Some((n, name)) if n > self.max_tokens as u64 => {
                return Err(ApiError::invalid(
                    name,
                    format!(
                        "`{name}` is {n}; this server allows at most {}",
                        self.max_tokens
                    ),
                ))
            }
            Some((n, name)) if n > room as u64 => {
                return Err(ApiError::invalid(
                    name,
                    format!(
                        "the prompt's {} tokens and `{name}` {n} exceed this server's context \
                         of {} tokens",
                        prompt.len(),
                        self.context
                    ),
                ))
            }
            Some((n, _)) => n as usize,
            None => default_max.unwrap_or(room).min(room).min(self.max_tokens),
        };
        let (temperature, top_p, top_k) = common.sampling()?;
        let stop_strings = common.stop_strings()?;
        let seed = common
            .seed
            .unwrap_or_else(|| RandomState::new().build_hasher().finish());
        let eos = self.model.eos_token_ids();
        let stop_tokens = if common.ignore_eos {
            stop_tokens
                .into_iter()
                .filter(|t| !eos.contains(t))
                .collect()
        } else {
            stop_tokens
        };
        let options = GenerateOptions {
            max_tokens,
            sampling: SamplingOptions {
                temperature,
                top_k,
                top_p,
                seed,
            },
            stop_tokens,
            stop_strings,
            stop_at_eos: !common.ignore_eos,
            add_special_tokens: false,
            top_logits: logprobs
                .unwrap_or(0)
                .max(GenerateOptions::default().top_logits),
        };
        let (events, receiver) = unbounded_channel();
        let arrived = Instant::now();
        Ok((
            Job {
                prompt,
                options,
                logprobs,
                arrived,
                deadline: arrived + self.config.request_timeout,
                events,
                fault,
            },
            receiver,
        ))
    }

    fn refuse_while_draining(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::Relaxed) {
            Err(ApiError::shutting_down())
        } else {
            Ok(())
        }
    }

    /// Queues the job and answers: a stream of events, or the whole result.
    async fn dispatch(
        &self,
        (job, events): (Job, UnboundedReceiver<Event>),
        writer: Writer,
        stream: bool,
    ) -> Result<Response, ApiError> {
        self.scheduler
            .submit(job)
            .map_err(|r| r.error(self.scheduler.max_queue()))?;
        if stream {
            Ok(sse(writer, events))
        } else {
            collect(writer, events).await
        }
    }
}

/// The routes over a started server's state.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The endpoint a path names, for metrics (a fixed set, so that probes of random paths do not
/// grow the label set).
fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/completions" => "completions",
        "/v1/chat/completions" => "chat_completions",
        "/v1/models" => "models",
        p if p.starts_with("/v1/models/") => "models",
        "/tokenize" => "tokenize",
        "/detokenize" => "detokenize",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// Counts every answer, and turns a panicking handler into a 500.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let endpoint = endpoint(request.uri().path());
    let response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            ApiError::internal(format!("internal error: the handler panicked ({message})"))
                .into_response()
        }
    };
    state
        .metrics
        .count_request(endpoint, response.status().as_u16());
    response
}

/// `Authorization: Bearer KEY`, when the server has a key.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| blake3::hash(token.trim().as_bytes()));
        // `blake3::Hash`'s equality is constant-time.
        if given.as_ref() != Some(key) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(request.uri().path())
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// The body's bytes: over the limit is a 413, anything else unreadable a 400.
fn body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(state.config.max_body_bytes)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", r.body_text()))
        }
    })
}

fn check_logprobs(n: u32, param: &str) -> Result<usize, ApiError> {
    if n > api::MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid(
            param,
            format!("`{param}` is {n}; at most {}", api::MAX_TOP_LOGPROBS),
        ));
    }
    Ok(n as usize)
}

async fn completions(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body(&state, raw)?;
    let value = api::parse_body(&bytes)?;
    let request: CompletionRequest = api::fields(&value)?;
    let common: Common = api::fields(&value)?;
    state.check_model(&common.model)?;
    common.check_unsupported()?;
    if request.echo {
        return Err(ApiError::invalid("echo", "`echo` is not supported"));
    }
    state.refuse_while_draining()?;
    let (prompt, text) = match request.prompt {
        Prompt::Text(text) => (state.encode(&text, true, "prompt")?, Some(text)),
        Prompt::Texts(texts) if texts.len() == 1 => (
            state.encode(&texts[0], true, "prompt")?,
            texts.into_iter().next(),
        ),
        Prompt::Texts(texts) => {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "`prompt` lists {} prompts; this server takes one per request",
                    texts.len()
                ),
            ))
        }
        Prompt::Ids(ids) => {
            state.check_ids(&ids, "prompt")?;
            (ids, None)
        }
    };
    let logprobs = request
        .logprobs
        .map(|n| check_logprobs(n, "logprobs"))
        .transpose()?;
    let fault = text.is_some() && text == state.config.fault_prompt;
    // OpenAI's default for completions.
    const DEFAULT_MAX_TOKENS: usize = 16;
    let job = state.job(
        prompt,
        "prompt",
        &common,
        common.max_tokens.map(|n| (n, "max_tokens")),
        Some(DEFAULT_MAX_TOKENS),
        Vec::new(),
        logprobs,
        fault,
    )?;
    let writer = Writer::new(&state, Kind::Completion, &common, logprobs);
    state.dispatch(job, writer, common.stream).await
}

/// Chat messages as the engine's, naming the message at fault.
fn chat_messages(messages: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must hold at least one message",
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!(
                            "`messages[{i}].role` is {other:?}; this server takes system, \
                             developer, user and assistant messages"
                        ),
                    ))
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut texts = Vec::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => texts.push(t.as_str()),
                            _ => {
                                return Err(ApiError::invalid(
                                    format!("messages[{i}].content[{j}]"),
                                    format!(
                                        "`messages[{i}].content[{j}]` is a {:?} part; this \
                                         server reads text parts only",
                                        p.kind
                                    ),
                                ))
                            }
                        }
                    }
                    texts.join("\n")
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body(&state, raw)?;
    let value = api::parse_body(&bytes)?;
    let request: ChatRequest = api::fields(&value)?;
    let common: Common = api::fields(&value)?;
    state.check_model(&common.model)?;
    common.check_unsupported()?;
    let Some(template) = &state.template else {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "the model `{}` has no chat template (no `chat_template` in its \
                 tokenizer_config.json, no chat_template.jinja): start the server with \
                 --chat-template FILE, or use /v1/completions",
                state.config.model_name
            ),
        ));
    };
    let messages = chat_messages(&request.messages)?;
    let text = template
        .render(&messages, true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    // The template writes the special tokens itself, as `chat` tokenises a turn.
    let prompt = state.encode(&text, false, "messages")?;
    let logprobs = match (request.logprobs, request.top_logprobs) {
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ))
        }
        (false, None) => None,
        (true, n) => Some(check_logprobs(n.unwrap_or(0), "top_logprobs")?),
    };
    let asked_max = match (request.max_completion_tokens, common.max_tokens) {
        (Some(n), _) => Some((n, "max_completion_tokens")),
        (None, Some(n)) => Some((n, "max_tokens")),
        (None, None) => None,
    };
    state.refuse_while_draining()?;
    let fault = state.config.fault_prompt.as_deref().is_some_and(|f| {
        messages
            .last()
            .is_some_and(|m| m.role == Role::User && m.content == f)
    });
    let job = state.job(
        prompt,
        "messages",
        &common,
        asked_max,
        None,
        state.turn_ends.clone(),
        logprobs,
        fault,
    )?;
    let writer = Writer::new(&state, Kind::Chat, &common, logprobs);
    state.dispatch(job, writer, common.stream).await
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_card(&state)]}))
}

async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.check_model(&Some(id))?;
    Ok(Json(model_card(&state)))
}

fn model_card(state: &AppState) -> Value {
    json!({
        "id": state.config.model_name,
        "object": "model",
        "created": state.created,
        "owned_by": "tritlab",
        "max_model_len": state.context,
    })
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ok", "model": state.config.model_name})).into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let bytes = body(&state, raw)?;
    let request: api::TokenizeRequest = api::fields(&api::parse_body(&bytes)?)?;
    state.check_model(&request.model)?;
    let ids = match (&request.prompt, &request.messages) {
        (Some(prompt), None) => {
            state.encode(prompt, request.add_special_tokens.unwrap_or(true), "prompt")?
        }
        (None, Some(messages)) => {
            let template = state
                .template
                .as_ref()
                .ok_or_else(|| ApiError::invalid("messages", "the model has no chat template"))?;
            let text = template
                .render(&chat_messages(messages)?, true)
                .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
            state.encode(
                &text,
                request.add_special_tokens.unwrap_or(false),
                "messages",
            )?
        }
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "give either `prompt` or `messages`",
            ))
        }
    };
    Ok(Json(json!({
        "tokens": ids,
        "count": ids.len(),
        "max_model_len": state.context,
    })))
}

async fn detokenize(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let bytes = body(&state, raw)?;
    let request: api::DetokenizeRequest = api::fields(&api::parse_body(&bytes)?)?;
    state.check_model(&request.model)?;
    state.check_ids(&request.tokens, "tokens")?;
    let text = state
        .tokenizer
        .decode(&request.tokens, false)
        .map_err(|e| ApiError::invalid("tokens", e.to_string()))?;
    Ok(Json(json!({ "prompt": text })))
}

/// Which OpenAI object a request's answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Completion,
    Chat,
}

/// Renders a job's events as OpenAI's objects, streamed or whole.
struct Writer {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: Option<usize>,
    traced: bool,
    tokenizer: Arc<Tokenizer>,
    /// Characters of text so far (the legacy logprobs' `text_offset`).
    offset: usize,
}

impl Writer {
    fn new(state: &AppState, kind: Kind, common: &Common, logprobs: Option<usize>) -> Self {
        Self {
            kind,
            id: state.id(match kind {
                Kind::Completion => "cmpl",
                Kind::Chat => "chatcmpl",
            }),
            created: now_seconds(),
            model: state.config.model_name.clone(),
            include_usage: common.include_usage(),
            logprobs,
            traced: state.traced,
            tokenizer: state.tokenizer.clone(),
            offset: 0,
        }
    }

    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }

    /// A chat token's logprobs entry (`logprobs.content[i]`).
    fn chat_logprob(&self, t: &TokenEvent) -> Value {
        let entry = |id: u32, lp: f32| {
            let text = self.token_text(id);
            json!({"token": text, "logprob": lp, "bytes": text.as_bytes()})
        };
        let mut e = entry(t.token_id, t.logprob);
        e["top_logprobs"] = t.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
        e
    }

    /// The legacy completion logprobs of some tokens.
    fn completion_logprobs(&mut self, tokens: &[&TokenEvent]) -> Value {
        let mut texts = Vec::new();
        let mut lps = Vec::new();
        let mut tops = Vec::new();
        let mut offsets = Vec::new();
        for t in tokens {
            texts.push(self.token_text(t.token_id));
            lps.push(t.logprob);
            let top: serde_json::Map<String, Value> = t
                .top
                .iter()
                .map(|&(id, lp)| (self.token_text(id), json!(lp)))
                .collect();
            tops.push(Value::Object(top));
            offsets.push(self.offset);
            self.offset += t.text.chars().count();
        }
        json!({"tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
    }

    fn traced(t: &TokenEvent) -> Value {
        let mut v = json!({"token_id": t.token_id});
        if let Some(Traced {
            colour,
            trit,
            label,
        }) = &t.traced
        {
            v["color"] = json!(colour);
            v["trit"] = json!(trit);
            v["label"] = json!(label);
        }
        v
    }

    fn chunk(&self, choice: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    fn usage(prompt: usize, completion: usize) -> Value {
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        })
    }

    /// The data lines that open a stream (a chat's role).
    fn opening(&self) -> Vec<String> {
        match self.kind {
            Kind::Completion => Vec::new(),
            Kind::Chat => vec![self
                .chunk(json!({
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null,
                }))
                .to_string()],
        }
    }

    /// The data lines of one event, and whether the stream ends with it.
    fn stream_event(&mut self, event: Event) -> (Vec<String>, bool) {
        match event {
            Event::Token(t) => {
                let logprobs = match (self.logprobs, self.kind) {
                    (None, _) => Value::Null,
                    (Some(_), Kind::Chat) => json!({"content": [self.chat_logprob(&t)]}),
                    (Some(_), Kind::Completion) => self.completion_logprobs(&[&t]),
                };
                let mut chunk = self.chunk(self.text_choice(&t.text, logprobs, None));
                if self.traced {
                    chunk["tritlab"] = Self::traced(&t);
                }
                (vec![chunk.to_string()], false)
            }
            Event::Done {
                tail,
                reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let mut lines = Vec::new();
                if !tail.is_empty() {
                    lines.push(
                        self.chunk(self.text_choice(&tail, Value::Null, None))
                            .to_string(),
                    );
                }
                lines.push(
                    self.chunk(self.text_choice("", Value::Null, Some(reason)))
                        .to_string(),
                );
                if self.include_usage {
                    let mut last = self.chunk(Value::Null);
                    last["choices"] = json!([]);
                    last["usage"] = Self::usage(prompt_tokens, completion_tokens);
                    lines.push(last.to_string());
                }
                lines.push("[DONE]".into());
                (lines, true)
            }
            Event::Failed(e) => (vec![e.body().to_string(), "[DONE]".into()], true),
        }
    }

    /// A streamed choice carrying `text`.
    fn text_choice(&self, text: &str, logprobs: Value, finish: Option<FinishReason>) -> Value {
        let finish = finish.map(FinishReason::as_str);
        match self.kind {
            Kind::Completion => json!({
                "index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish,
            }),
            Kind::Chat => {
                let delta = if text.is_empty() && finish.is_some() {
                    json!({})
                } else {
                    json!({"content": text})
                };
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
        }
    }
}

/// The answer as server-sent events: one chunk per token, the finish, usage if asked, `[DONE]`.
fn sse(writer: Writer, events: UnboundedReceiver<Event>) -> Response {
    let pending: VecDeque<String> = writer.opening().into();
    let stream = futures_util::stream::unfold(
        (writer, events, pending, false),
        |(mut writer, mut events, mut pending, mut done)| async move {
            loop {
                if let Some(data) = pending.pop_front() {
                    let event = SseEvent::default().data(data);
                    return Some((Ok::<_, Infallible>(event), (writer, events, pending, done)));
                }
                if done {
                    return None;
                }
                let event = events.recv().await.unwrap_or_else(|| {
                    Event::Failed(ApiError::internal(
                        "the engine stopped before the request finished",
                    ))
                });
                let (lines, end) = writer.stream_event(event);
                pending.extend(lines);
                done = end;
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The whole answer, once the job is done.
async fn collect(
    mut writer: Writer,
    mut events: UnboundedReceiver<Event>,
) -> Result<Response, ApiError> {
    let mut tokens = Vec::new();
    let (tail, reason, prompt_tokens, completion_tokens) = loop {
        match events.recv().await {
            Some(Event::Token(t)) => tokens.push(t),
            Some(Event::Done {
                tail,
                reason,
                prompt_tokens,
                completion_tokens,
            }) => break (tail, reason, prompt_tokens, completion_tokens),
            Some(Event::Failed(e)) => return Err(e),
            None => {
                return Err(ApiError::internal(
                    "the engine stopped before the request finished",
                ))
            }
        }
    };
    let mut text: String = tokens.iter().map(|t| t.text.as_str()).collect();
    text.push_str(&tail);
    let logprobs = match (writer.logprobs, writer.kind) {
        (None, _) => Value::Null,
        (Some(_), Kind::Chat) => {
            json!({"content": tokens.iter().map(|t| writer.chat_logprob(t)).collect::<Vec<_>>()})
        }
        (Some(_), Kind::Completion) => {
            let refs: Vec<&TokenEvent> = tokens.iter().collect();
            writer.completion_logprobs(&refs)
        }
    };
    let mut choice = match writer.kind {
        Kind::Completion => json!({
            "index": 0, "text": text, "logprobs": logprobs, "finish_reason": reason.as_str(),
        }),
        Kind::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": logprobs,
            "finish_reason": reason.as_str(),
        }),
    };
    if writer.traced {
        choice["tritlab"] =
            json!({"tokens": tokens.iter().map(Writer::traced).collect::<Vec<_>>()});
    }
    Ok(Json(json!({
        "id": writer.id,
        "object": writer.object(false),
        "created": writer.created,
        "model": writer.model,
        "choices": [choice],
        "usage": Writer::usage(prompt_tokens, completion_tokens),
    }))
    .into_response())
}
