//! Continuous batching: one engine thread owns the model's compute and runs steps; requests
//! join between steps and leave when they finish, fail, time out or lose their client.
//!
//! ```text
//! handlers ──try_send(Job)──▶ bounded queue ──▶ engine thread            (full: 429)
//!                                                 │ admit while active < max_batch
//!                                                 │ drop sequences whose client left or whose time is up
//!                                                 │ one step: Model::forward_batch over
//!                                                 │   every decoding sequence's last token
//!                                                 │   + prompt chunks of prefilling ones (≤ prefill_chunk tokens)
//!                                                 │ per sequence: Sequence::next → tracer → Event
//! handler ◀──Event (token, done, failed)──────────┘ (one unbounded channel per request: at
//!                                                    most max_tokens events)
//! ```
//!
//! A sequence's tokens are chosen by the engine's [`Sequence`], as `generate` chooses them, and
//! its logits are bit for bit those of a forward pass of its own ([`Model::forward_batch`]), so a
//! request gives the same tokens whatever else runs beside it. A step's forward pass and each
//! sequence's token choice run under `catch_unwind`: a panic fails the sequences it concerns
//! with a 500 and the engine thread carries on.

use crate::error::ApiError;
use crate::metrics::Metrics;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tritlab_engine::{
    BatchItem, GenerateOptions, GenerationStep, KvCache, Logits, Model, Sequence, StepTritStats,
    StopReason, Tokenizer,
};
use tritlab_plugin_host::PluginHost;

/// The tracer's reading of one token.
#[derive(Debug, Clone, PartialEq)]
pub struct Traced {
    /// `#rrggbb`.
    pub colour: String,
    pub trit: i8,
    pub label: String,
}

/// One generated token, as the engine thread reports it.
#[derive(Debug, Clone)]
pub struct TokenEvent {
    pub token_id: u32,
    /// The text the token completes (may be empty: an unfinished character, or text held back
    /// while it may begin a stop string).
    pub text: String,
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, when logprobs were asked for.
    pub top: Vec<(u32, f32)>,
    pub traced: Option<Traced>,
}

/// Why a sequence ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop id (end of text or of turn) or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a request's channel carries.
#[derive(Debug)]
pub enum Event {
    Token(TokenEvent),
    /// The end: text the detokeniser still held, why, and the token counts.
    Done {
        tail: String,
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Failed(ApiError),
}

/// A request for the engine thread.
pub struct Job {
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    /// How many top log-probabilities each token carries (`None`: no logprobs at all).
    pub logprobs: Option<usize>,
    pub arrived: Instant,
    pub deadline: Instant,
    pub events: UnboundedSender<Event>,
    /// A test hook: this sequence panics in the engine thread, as a bug would.
    pub fault: bool,
}

/// How the engine thread runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub max_batch: usize,
    pub max_queue: usize,
    pub prefill_chunk: usize,
    /// Positions a sequence may use (prompt and generated tokens).
    pub context: usize,
    pub timeout: Duration,
}

/// What the engine thread owns.
pub struct EngineParts {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub plugins: Option<PluginHost>,
    pub tracer: Option<String>,
    /// Whether the tracer has failed once already (reported once).
    pub tracer_failed: bool,
}

/// The handlers' side: submits jobs to the engine thread.
pub struct Scheduler {
    queue: SyncSender<Job>,
    max_queue: usize,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Full,
    Stopped,
}

impl Rejected {
    pub fn error(self, max_queue: usize) -> ApiError {
        match self {
            Rejected::Full => ApiError::busy(max_queue),
            Rejected::Stopped => ApiError::shutting_down(),
        }
    }
}

impl Scheduler {
    /// Starts the engine thread.
    pub fn start(
        parts: EngineParts,
        config: SchedulerConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(config.max_queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let max_queue = config.max_queue.max(1);
        let mut engine = EngineLoop {
            parts,
            config,
            metrics: metrics.clone(),
            jobs,
            stop: stop.clone(),
            active: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("tritlab-engine".into())
            .spawn(move || engine.run())?;
        Ok(Self {
            queue,
            max_queue,
            metrics,
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Queues a job, or says why not (the queue is full, or the engine is stopping).
    pub fn submit(&self, job: Job) -> Result<(), Rejected> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(Rejected::Stopped);
        }
        // Counted before sending, so the engine thread never sees a negative depth.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => {
                        self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                        Rejected::Full
                    }
                    TrySendError::Disconnected(_) => Rejected::Stopped,
                })
            }
        }
    }

    /// Lets the engine thread finish what it runs and what is queued, then waits for it.
    pub fn shut_down(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A running sequence.
struct Active {
    job: Job,
    sequence: Sequence,
    cache: KvCache,
    /// Prompt ids already in the cache.
    fed: usize,
    /// The token to feed next step, once the prompt is in.
    next: Option<u32>,
    last_token: Option<Instant>,
}

impl Active {
    fn send(&self, event: Event) {
        // A closed channel is noticed at the next step.
        let _ = self.job.events.send(event);
    }
}

/// What became of a sequence after its step.
enum Outcome {
    Continue,
    Finished,
}

struct EngineLoop {
    parts: EngineParts,
    config: SchedulerConfig,
    metrics: Arc<Metrics>,
    jobs: mpsc::Receiver<Job>,
    stop: Arc<AtomicBool>,
    active: Vec<Active>,
}

/// How long an idle engine thread waits for a job before looking at the stop flag again.
const IDLE_POLL: Duration = Duration::from_millis(50);

impl EngineLoop {
    fn run(&mut self) {
        loop {
            if !self.admit() {
                break;
            }
            self.drop_departed();
            if !self.active.is_empty() {
                self.step();
            }
            self.metrics
                .active
                .store(self.active.len() as i64, Ordering::Relaxed);
        }
    }

    /// Moves queued jobs into the batch while there is room. Waits when nothing runs. Returns
    /// false when the thread should end: stopped, nothing running and nothing queued.
    fn admit(&mut self) -> bool {
        while self.active.len() < self.config.max_batch.max(1) {
            let job = if self.active.is_empty() {
                match self.jobs.recv_timeout(IDLE_POLL) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        return !self.stop.load(Ordering::Relaxed);
                    }
                    Err(RecvTimeoutError::Disconnected) => return false,
                }
            } else {
                match self.jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            };
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            if job.events.is_closed() {
                self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if Instant::now() > job.deadline {
                self.metrics.timed_out.fetch_add(1, Ordering::Relaxed);
                let _ = job.events.send(Event::Failed(ApiError::timeout(
                    self.config.timeout.as_secs_f64(),
                )));
                continue;
            }
            match Sequence::new(&self.parts.model, &job.options) {
                Ok(sequence) => {
                    self.metrics
                        .prompt_tokens
                        .fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
                    self.active.push(Active {
                        job,
                        sequence,
                        cache: self.parts.model.new_cache(),
                        fed: 0,
                        next: None,
                        last_token: None,
                    });
                }
                Err(e) => {
                    // Options are checked by the handlers; this is a disagreement between them
                    // and the engine.
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = job
                        .events
                        .send(Event::Failed(ApiError::internal(e.to_string())));
                }
            }
        }
        true
    }

    /// Drops sequences whose client went away or whose time is up.
    fn drop_departed(&mut self) {
        let now = Instant::now();
        let timeout = self.config.timeout.as_secs_f64();
        let metrics = &self.metrics;
        self.active.retain(|a| {
            if a.job.events.is_closed() {
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            if now > a.job.deadline {
                metrics.timed_out.fetch_add(1, Ordering::Relaxed);
                a.send(Event::Failed(ApiError::timeout(timeout)));
                return false;
            }
            true
        });
    }

    /// One step: a batched forward pass, then each sequence that has logits picks its token.
    fn step(&mut self) {
        let started = Instant::now();
        let model = self.parts.model.clone();
        // Which sequences take part, with which tokens: every decoding one its next token,
        // prefilling ones (oldest first) chunks of their prompts within the budget.
        let mut budget = self.config.prefill_chunk.max(1);
        let mut plan: Vec<(usize, usize, bool)> = Vec::new(); // (index, prompt tokens, wants logits)
        for (i, a) in self.active.iter().enumerate() {
            if a.next.is_some() {
                plan.push((i, 0, true));
            } else if budget > 0 {
                let n = budget.min(a.job.prompt.len() - a.fed);
                budget -= n;
                plan.push((i, n, a.fed + n == a.job.prompt.len()));
            }
        }
        let mut trits = vec![StepTritStats::default(); plan.len()];
        let traced = self.parts.tracer.is_some();
        let forward = {
            let mut members = plan.iter();
            let mut next_member = members.next();
            let mut items = Vec::with_capacity(plan.len());
            let mut trits_iter = trits.iter_mut();
            for (i, a) in self.active.iter_mut().enumerate() {
                let Some(&(index, n, wants)) = next_member else {
                    break;
                };
                if index != i {
                    continue;
                }
                next_member = members.next();
                let tokens: &[u32] = match &a.next {
                    Some(t) => std::slice::from_ref(t),
                    None => &a.job.prompt[a.fed..a.fed + n],
                };
                // Activation trits feed the tracer only; counting them costs ~5% of a step.
                let trace = trits_iter.next().filter(|_| traced);
                items.push(BatchItem {
                    tokens,
                    cache: &mut a.cache,
                    logits: if wants { Logits::Last } else { Logits::None },
                    trace,
                });
            }
            self.metrics.batch_size.observe(items.len() as f64);
            catch_unwind(AssertUnwindSafe(|| model.forward_batch(&mut items)))
        };
        let logits = match forward {
            Ok(Ok(logits)) => logits,
            Ok(Err(e)) => return self.fail_members(&plan, &format!("engine error: {e}")),
            Err(panic) => {
                return self.fail_members(
                    &plan,
                    &format!("internal error: the engine panicked ({})", message(&*panic)),
                )
            }
        };
        let mut finished = Vec::new();
        for (((i, n, wants), logits), trits) in plan.iter().copied().zip(logits).zip(trits) {
            let a = &mut self.active[i];
            if a.next.is_none() {
                a.fed += n;
            }
            if !wants {
                continue;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                choose(
                    a,
                    &logits,
                    trits,
                    &mut self.parts,
                    &self.metrics,
                    self.config.context,
                )
            }));
            match outcome {
                Ok(Outcome::Continue) => {}
                Ok(Outcome::Finished) => finished.push(i),
                Err(panic) => {
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    a.send(Event::Failed(ApiError::internal(format!(
                        "internal error: the engine panicked on this request ({})",
                        message(&*panic)
                    ))));
                    finished.push(i);
                }
            }
        }
        for i in finished.into_iter().rev() {
            self.active.remove(i);
        }
        self.metrics
            .step_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Fails every sequence of a step whose forward pass failed; their caches may be half
    /// written, so they leave the batch.
    fn fail_members(&mut self, plan: &[(usize, usize, bool)], message: &str) {
        for &(i, _, _) in plan.iter().rev() {
            let a = self.active.remove(i);
            self.metrics.failed.fetch_add(1, Ordering::Relaxed);
            a.send(Event::Failed(ApiError::internal(message)));
        }
    }
}

/// Picks a sequence's next token from its logits, reports it, and says whether it goes on.
fn choose(
    a: &mut Active,
    logits: &[f32],
    trits: StepTritStats,
    parts: &mut EngineParts,
    metrics: &Metrics,
    context: usize,
) -> Outcome {
    if a.job.fault {
        panic!("fault injected by the server's test hook");
    }
    let position = a.cache.len();
    let step = match a
        .sequence
        .next(logits, trits, position, Some(&parts.tokenizer))
    {
        Ok(Ok(step)) => step,
        Ok(Err(reason)) => return finish(a, reason, parts, metrics),
        Err(e) => {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            a.send(Event::Failed(ApiError::internal(format!(
                "engine error: {e}"
            ))));
            return Outcome::Finished;
        }
    };
    let now = Instant::now();
    match a.last_token {
        None => metrics
            .time_to_first_token
            .observe((now - a.job.arrived).as_secs_f64()),
        Some(t) => metrics.inter_token_latency.observe((now - t).as_secs_f64()),
    }
    a.last_token = Some(now);
    metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
    let traced = trace(parts, &step);
    let top = match a.job.logprobs {
        Some(n) => step
            .logit_stats
            .top
            .iter()
            .take(n)
            .map(|t| (t.id, (t.logit as f64 - step.logit_stats.log_sum_exp) as f32))
            .collect(),
        None => Vec::new(),
    };
    a.send(Event::Token(TokenEvent {
        token_id: step.token_id,
        text: step.text,
        logprob: step.logprob,
        top,
        traced,
    }));
    if let Some(reason) = a.sequence.finished() {
        return finish(a, reason, parts, metrics);
    }
    if a.cache.len() + 1 > context {
        return finish(a, StopReason::ContextFull, parts, metrics);
    }
    a.next = Some(step.token_id);
    Outcome::Continue
}

/// The tracer's annotation of a step, as `generate` asks for it: the step with the five most
/// likely tokens (a request for more logprobs does not change the colours).
/// A tracer that fails leaves its tokens uncoloured; the first failure is printed once.
fn trace(parts: &mut EngineParts, step: &GenerationStep) -> Option<Traced> {
    let name = parts.tracer.as_deref()?;
    let host = parts.plugins.as_mut()?;
    let mut plain = step.clone();
    plain
        .logit_stats
        .top
        .truncate(GenerateOptions::default().top_logits);
    match host.trace_generation(name, &tritlab_session::convert::generation_step(&plain)) {
        Ok(a) => Some(Traced {
            colour: a.colour.hex().to_lowercase(),
            trit: i8::from(a.trit),
            label: a.label,
        }),
        Err(e) => {
            if !parts.tracer_failed {
                parts.tracer_failed = true;
                eprintln!("tritlab serve: the tracer {name} failed, tokens go uncoloured: {e}");
            }
            None
        }
    }
}

/// Ends a sequence: the text still held back, and why.
fn finish(a: &mut Active, reason: StopReason, parts: &EngineParts, metrics: &Metrics) -> Outcome {
    let tail = match a.sequence.flush_text(Some(&parts.tokenizer)) {
        Ok(t) => t,
        Err(e) => {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            a.send(Event::Failed(ApiError::internal(format!(
                "engine error: {e}"
            ))));
            return Outcome::Finished;
        }
    };
    // A stop string can be reached in the flushed text too.
    let reason = a.sequence.finished().unwrap_or(reason);
    let reason = match reason {
        StopReason::StopToken(_) | StopReason::StopString | StopReason::Callback => {
            FinishReason::Stop
        }
        StopReason::MaxTokens | StopReason::ContextFull => FinishReason::Length,
    };
    a.send(Event::Done {
        tail,
        reason,
        prompt_tokens: a.job.prompt.len(),
        completion_tokens: a.sequence.generated().len(),
    });
    Outcome::Finished
}

/// A panic's message.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
