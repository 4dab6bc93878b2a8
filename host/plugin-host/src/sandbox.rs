//! What a plugin instance runs inside: its store data, the WASI context with
//! nothing granted, the memory limiter, the epoch timer, and the host
//! imports of the contract.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{Deterministic, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::tracer::tritlab::plugin::{host as wit_host, types as wit_types};
use crate::config::Limits;
use crate::tensor::TensorSource;
use crate::types::{LogLevel, LogRecord};

/// Log lines plugins wrote, kept until the caller drains them.
#[derive(Debug, Default)]
pub(crate) struct LogBuffer {
    records: VecDeque<LogRecord>,
    capacity: usize,
    /// Records dropped because the buffer was full or a call logged too much.
    pub(crate) dropped: u64,
}

impl LogBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, record: LogRecord) {
        if self.records.len() >= self.capacity {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(record);
    }

    pub(crate) fn drain(&mut self) -> Vec<LogRecord> {
        self.records.drain(..).collect()
    }
}

pub(crate) type SharedLogs = Arc<Mutex<LogBuffer>>;

/// Bytes charged per table element against the memory budget. Wasmtime
/// stores a table element as one pointer-sized word; charging twice that
/// covers its bookkeeping too, so tables can never hold more host memory
/// than the budget says.
pub(crate) const TABLE_ELEMENT_BYTES: usize = 16;

/// Caps what an instance may allocate in the host: all its linear memories
/// and all its tables (at [`TABLE_ELEMENT_BYTES`] per element) count against
/// one budget.
///
/// Growth past the budget fails with a trap (rather than `memory.grow`
/// returning -1) so the call stops at once, and `exceeded` records why, so
/// the error can say "memory limit" instead of a bare trap. Sizes come from
/// the guest, so every sum is checked: an overflow is over the budget.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit_bytes: usize,
    /// Bytes of all linear memories together.
    memory_bytes: usize,
    /// Bytes charged for all tables together.
    table_bytes: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            memory_bytes: 0,
            table_bytes: 0,
            exceeded: false,
        }
    }

    /// The new total of one kind of allocation when one of them grows from
    /// `current` to `desired` bytes, if that and `other` fit the budget.
    fn grown(&self, counted: usize, current: usize, desired: usize, other: usize) -> Option<usize> {
        let grown = counted.saturating_sub(current).checked_add(desired)?;
        (grown.checked_add(other)? <= self.limit_bytes).then_some(grown)
    }

    fn refuse(&mut self, what: &str, desired: usize) -> wasmtime::Error {
        self.exceeded = true;
        wasmtime::format_err!(
            "memory limit of {} bytes exceeded ({what} asked for {desired} bytes)",
            self.limit_bytes
        )
    }
}

/// Tables, memories and instances a plugin may create: generous for any
/// component a language toolchain emits (each core module has one memory
/// and one table; a component a handful of modules), small enough that a
/// hostile one cannot use their fixed overhead to exhaust host memory.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.grown(self.memory_bytes, current, desired, self.table_bytes) {
            Some(total) => {
                self.memory_bytes = total;
                Ok(true)
            }
            None => Err(self.refuse("a linear memory", desired)),
        }
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let to_bytes = |elements: usize| elements.checked_mul(TABLE_ELEMENT_BYTES);
        let (Some(current), Some(desired_bytes)) = (to_bytes(current), to_bytes(desired)) else {
            return Err(self.refuse("a table", usize::MAX));
        };
        match self.grown(self.table_bytes, current, desired_bytes, self.memory_bytes) {
            Some(total) => {
                self.table_bytes = total;
                Ok(true)
            }
            None => Err(self.refuse("a table", desired_bytes)),
        }
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The WASI functions that wait: a monotonic-clock subscription is a timer,
/// and `poll`/`pollable.block` put the calling thread to sleep inside the
/// host, where epoch interruption cannot reach it, so a plugin could hold
/// the host far past its deadline. A plugin is a pure function of its
/// input and never needs to wait, so these are replaced with functions that
/// stop the call at once.
///
/// The blocking stream functions stay: the only streams a plugin can open
/// are stdin (closed: reads end at once), stdout (a sink) and stderr (an
/// in-memory pipe that fails when full), none of which ever waits, and
/// Rust's panic messages reach stderr through them.
const WAITING_IMPORTS: &[(&str, &str)] = &[
    ("wasi:clocks/monotonic-clock@0.2.12", "subscribe-duration"),
    ("wasi:clocks/monotonic-clock@0.2.12", "subscribe-instant"),
    ("wasi:io/poll@0.2.12", "poll"),
    ("wasi:io/poll@0.2.12", "[method]pollable.block"),
];

/// Why a call was stopped for calling one of [`WAITING_IMPORTS`].
pub(crate) const NO_WAITING: &str = "plugins may not sleep or wait";

/// Shadows [`WAITING_IMPORTS`] in `linker` (which already holds WASI) with
/// functions that record which one was called and trap.
pub(crate) fn deny_waiting(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for &(interface, function) in WAITING_IMPORTS {
        let unversioned = interface
            .split_once('@')
            .map_or(interface, |(name, _)| name);
        let import = format!("{unversioned}.{function}");
        linker.instance(interface)?.func_new(
            function,
            move |mut store, _ty, _params, _results| {
                store.data_mut().denied = Some(import.clone());
                Err(wasmtime::format_err!(
                    "{NO_WAITING}: `{import}` is not granted"
                ))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// A wall clock stuck at the Unix epoch: plugins must be pure functions of
/// their input, so they get no time of day. (The monotonic clock stays real:
/// it reveals nothing about the host and lets plugins time themselves.)
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The data of one plugin instance's store.
pub(crate) struct PluginState {
    pub(crate) plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    /// The import the current call was stopped for calling, if any.
    pub(crate) denied: Option<String>,
    pub(crate) tensors: Arc<dyn TensorSource>,
    pub(crate) limits: Arc<Limits>,
    logs: SharedLogs,
    pub(crate) log_lines_this_call: u32,
    /// The plugin's stderr, where a Rust guest's panic message lands.
    pub(crate) stderr: MemoryOutputPipe,
}

impl PluginState {
    pub(crate) fn new(
        plugin: &str,
        tensors: Arc<dyn TensorSource>,
        limits: Arc<Limits>,
        logs: SharedLogs,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(limits.stderr_bytes);
        // Randomness is a fixed stream: std's hash maps seed from it, and a
        // plugin's output must not vary between runs or machines.
        let seed = blake3::hash(b"tritlab:plugin sandbox randomness");
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone())
            .wall_clock(FrozenWallClock)
            .secure_random(Deterministic::new(seed.as_bytes().to_vec()))
            .insecure_random(Deterministic::new(
                seed.as_bytes().iter().rev().copied().collect(),
            ))
            .insecure_random_seed(u128::from_le_bytes(
                seed.as_bytes()[..16].try_into().unwrap_or([0; 16]),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        Self {
            plugin: plugin.to_owned(),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(limits.memory_bytes),
            denied: None,
            tensors,
            limits,
            logs,
            log_lines_this_call: 0,
            stderr,
        }
    }

    /// The end of what the plugin wrote to stderr, as text.
    pub(crate) fn stderr_tail(&self, max_bytes: usize) -> String {
        let bytes = self.stderr.contents();
        let start = bytes.len().saturating_sub(max_bytes);
        String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Cuts `text` to `max_bytes` bytes on a character boundary, marking the
/// cut with an ellipsis.
pub(crate) fn truncate_utf8(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl wit_types::Host for PluginState {}

impl wit_host::Host for PluginState {
    fn log(&mut self, level: wit_host::LogLevel, message: String) {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        self.log_lines_this_call = self.log_lines_this_call.saturating_add(1);
        if self.log_lines_this_call > self.limits.max_log_lines_per_call {
            logs.dropped += 1;
            return;
        }
        let level = match level {
            wit_host::LogLevel::Debug => LogLevel::Debug,
            wit_host::LogLevel::Info => LogLevel::Info,
            wit_host::LogLevel::Warn => LogLevel::Warn,
            wit_host::LogLevel::Error => LogLevel::Error,
        };
        let message = truncate_utf8(message, self.limits.max_log_line_bytes);
        logs.push(LogRecord {
            plugin: self.plugin.clone(),
            level,
            message,
        });
    }

    fn list_tensors(&mut self) -> Vec<wit_host::TensorInfo> {
        self.tensors
            .tensors()
            .into_iter()
            .map(|info| wit_host::TensorInfo {
                name: info.name,
                shape: info.shape,
            })
            .collect()
    }

    fn read_trits(&mut self, name: String, offset: u64, len: u32) -> Result<Vec<i8>, String> {
        let len = len.min(self.limits.max_read_trits) as usize;
        let trits = self.tensors.read_trits(&name, offset, len)?;
        // The source is the caller's code: never hand a plugin more than it asked for.
        Ok(trits.into_iter().take(len).map(i8::from).collect())
    }
}

/// Advances the engine's epoch every `tick` on a background thread, which is
/// what stops a call that runs past its deadline.
pub(crate) struct EpochTimer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTimer {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tritlab-plugin-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTimer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // A panic in the timer thread has nothing left to report.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TensorInfo, Trit};
    use wit_host::Host as _;

    /// A source that ignores `len` and always returns 10 trits.
    struct Overgenerous;

    impl TensorSource for Overgenerous {
        fn tensors(&self) -> Vec<TensorInfo> {
            vec![TensorInfo {
                name: "t".into(),
                shape: vec![10],
            }]
        }

        fn read_trits(&self, _name: &str, _offset: u64, _len: usize) -> Result<Vec<Trit>, String> {
            Ok(vec![Trit::Positive; 10])
        }
    }

    fn state(limits: Limits) -> (PluginState, SharedLogs) {
        let logs = Arc::new(Mutex::new(LogBuffer::new(limits.log_buffer_records)));
        let state = PluginState::new(
            "p",
            Arc::new(Overgenerous),
            Arc::new(limits),
            Arc::clone(&logs),
        );
        (state, logs)
    }

    #[test]
    fn read_trits_never_returns_more_than_asked_or_allowed() {
        let (mut state, _) = state(Limits {
            max_read_trits: 4,
            ..Limits::default()
        });
        assert_eq!(state.read_trits("t".into(), 0, 3).map(|t| t.len()), Ok(3));
        assert_eq!(state.read_trits("t".into(), 0, 100).map(|t| t.len()), Ok(4));
    }

    #[test]
    fn log_lines_are_capped_in_length_and_number_per_call() {
        let limits = Limits {
            max_log_lines_per_call: 3,
            max_log_line_bytes: 8,
            ..Limits::default()
        };
        let (mut state, logs) = state(limits);
        for _ in 0..5 {
            state.log(wit_host::LogLevel::Warn, "é".repeat(100));
        }
        let mut logs = logs.lock().expect("not poisoned");
        assert_eq!(logs.dropped, 2);
        let records = logs.drain();
        assert_eq!(records.len(), 3);
        assert!(records
            .iter()
            .all(|r| r.plugin == "p" && r.level == LogLevel::Warn));
        assert_eq!(records[0].message, "éééé…", "cut on a character boundary");
        drop(logs);
        // A new call may log again.
        state.log_lines_this_call = 0;
        state.log(wit_host::LogLevel::Info, "again".into());
    }

    #[test]
    fn log_buffer_keeps_the_newest_records() {
        let mut buffer = LogBuffer::new(2);
        for i in 0..5 {
            buffer.push(LogRecord {
                plugin: "p".into(),
                level: LogLevel::Info,
                message: i.to_string(),
            });
        }
        assert_eq!(buffer.dropped, 3);
        let kept: Vec<String> = buffer.drain().into_iter().map(|r| r.message).collect();
        assert_eq!(kept, ["3", "4"]);
    }

    #[test]
    fn memory_limit_counts_all_memories_together() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).is_ok());
        assert!(
            limiter.memory_growing(0, 30, None).is_ok(),
            "a second memory"
        );
        assert!(limiter.memory_growing(60, 70, None).is_ok(), "total 100");
        assert!(!limiter.exceeded);
        assert!(limiter.memory_growing(30, 31, None).is_err(), "total 101");
        assert!(limiter.exceeded);
    }

    #[test]
    fn memory_limit_sums_are_checked_for_overflow() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).is_ok());
        // A 64-bit memory asking for nearly the whole address space must not
        // wrap the total around to something small.
        assert!(limiter.memory_growing(0, usize::MAX - 10, None).is_err());
        assert!(limiter.exceeded);
        assert!(limiter.table_growing(0, usize::MAX / 2, None).is_err());
    }

    #[test]
    fn tables_count_against_the_same_budget_as_memories() {
        let budget = 100 * TABLE_ELEMENT_BYTES;
        let mut limiter = MemoryLimiter::new(budget);
        assert!(limiter.table_growing(0, 60, None).is_ok());
        assert!(limiter
            .memory_growing(0, 40 * TABLE_ELEMENT_BYTES, None)
            .is_ok());
        assert!(!limiter.exceeded);
        assert!(limiter.table_growing(0, 1, None).is_err(), "a second table");
        assert!(limiter.exceeded);
        let mut limiter = MemoryLimiter::new(budget);
        assert!(limiter.memory_growing(0, budget, None).is_ok());
        assert!(limiter.table_growing(0, 1, None).is_err());
    }
}
