//! [`PluginHost`]: loads plugins, calls them inside the sandbox, and keeps
//! each plugin's health.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::component::{Component, ComponentNamedList, HasSelf, Instance, Lift, Linker, Lower};
use wasmtime::{Config, Engine, OptLevel, Store, Trap};

use crate::bindings::{checker, tracer, visualiser, wit};
use crate::cache::{compile_component, prepare_dir};
use crate::config::{user_plugin_dir, HostConfig, Limits};
use crate::convert;
use crate::error::{Call, HostError, LoadError, PluginError};
use crate::output::{
    self, OutAnnotation, OutList, OutPluginInfo, OutText, OutVerdict, OutVisual, OutputBudget,
};
use crate::sandbox::{deny_waiting, truncate_utf8, EpochTimer, LogBuffer, PluginState, SharedLogs};
use crate::tensor::{NoTensors, TensorSource};
use crate::types::{
    Annotation, CheckSubject, GenerationStep, LogLevel, LogRecord, PluginInfo, PluginKind,
    TrainingStep, Verdict, Visual, VisualInput,
};

/// The contract version this host implements (`tritlab:plugin@…` in `wit/`).
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The contract's WIT package name.
pub const CONTRACT_PACKAGE: &str = "tritlab:plugin";
/// The `plugin` of log records the host itself writes (warnings about its
/// own set-up, such as a refused cache folder).
pub const HOST_LOG_NAME: &str = "tritlab-plugin-host";

/// Whether a plugin built against contract `version` can run on this host:
/// semver compatibility, where for 0.x every minor version is breaking.
/// Pre-release versions must match exactly.
pub fn contract_compatible(version: &str) -> bool {
    fn parse(version: &str) -> Option<(u64, u64, bool)> {
        let (core, pre_release) = match version.split_once(['-', '+']) {
            Some((core, _)) => (core, true),
            None => (version, false),
        };
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let _patch: u64 = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some((major, minor, pre_release))
    }
    let (Some(plugin), Some(host)) = (parse(version), parse(CONTRACT_VERSION)) else {
        return false;
    };
    if plugin.2 || host.2 {
        return version == CONTRACT_VERSION;
    }
    plugin.0 == host.0 && (host.0 != 0 || plugin.1 == host.1)
}

enum PluginPre {
    Tracer(tracer::TracerPluginPre<PluginState>),
    Checker(checker::CheckerPluginPre<PluginState>),
    Visualiser(visualiser::VisualiserPluginPre<PluginState>),
}

/// A running instance's exports. They are called through typed functions
/// whose results are lifted within the call's output budget (see
/// [`crate::output`]), not through the generated bindings, which would copy
/// whatever the plugin returns before any size could be checked.
struct PluginBindings {
    kind: PluginKind,
    instance: Instance,
}

/// The exported interfaces, by the names the generated bindings use.
const PLUGIN_INTERFACE: &str = "tritlab:plugin/plugin@0.1.0";
const TRACER_INTERFACE: &str = "tritlab:plugin/tracer@0.1.0";
const CHECKER_INTERFACE: &str = "tritlab:plugin/checker@0.1.0";
const VISUALISER_INTERFACE: &str = "tritlab:plugin/visualiser@0.1.0";

impl PluginBindings {
    /// Calls `function` of the exported `interface` with `params`.
    fn call<P, R>(
        &self,
        store: &mut Store<PluginState>,
        interface: &str,
        function: &str,
        params: P,
    ) -> wasmtime::Result<R>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        let missing =
            || wasmtime::format_err!("the plugin does not export `{interface}.{function}`");
        let exported = self
            .instance
            .get_export_index(&mut *store, None, interface)
            .ok_or_else(missing)?;
        let func = self
            .instance
            .get_export_index(&mut *store, Some(&exported), function)
            .ok_or_else(missing)?;
        self.instance
            .get_typed_func::<P, R>(&mut *store, &func)?
            .call(&mut *store, params)
    }

    /// Calls `function` of `interface` if the plugin is of kind `kind`.
    fn call_if<P, R>(
        &self,
        kind: PluginKind,
        store: &mut Store<PluginState>,
        interface: &str,
        function: &str,
        params: P,
    ) -> Option<wasmtime::Result<R>>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        (self.kind == kind).then(|| self.call(store, interface, function, params))
    }
}

/// A running instance: its store and the typed handles of its exports.
struct LiveInstance {
    store: Store<PluginState>,
    bindings: PluginBindings,
}

/// What every call needs from the host.
struct Sandbox {
    engine: Engine,
    limits: Arc<Limits>,
    deadline_ticks: u64,
    tensors: Arc<dyn TensorSource>,
    logs: SharedLogs,
}

/// A compiled plugin and, between calls, its instance. The instance is
/// created on first use and thrown away after a trap (a trapped component
/// instance cannot be entered again), so the next call gets a fresh one.
struct Slot {
    name: String,
    pre: PluginPre,
    live: Option<LiveInstance>,
    /// Options applied to every new instance, in the order they were set.
    options: Vec<wit::OptionValue>,
}

/// Result of a guest function: `None` if the instance is of another kind.
type GuestOutcome<T> = Option<wasmtime::Result<Result<T, String>>>;

impl Slot {
    fn instantiate(&self, sandbox: &Sandbox) -> Result<LiveInstance, PluginError> {
        let state = PluginState::new(
            &self.name,
            Arc::clone(&sandbox.tensors),
            Arc::clone(&sandbox.limits),
            Arc::clone(&sandbox.logs),
        );
        let mut store = Store::new(&sandbox.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(sandbox.deadline_ticks);
        let (kind, instance_pre) = match &self.pre {
            PluginPre::Tracer(pre) => (PluginKind::Tracer, pre.instance_pre()),
            PluginPre::Checker(pre) => (PluginKind::Checker, pre.instance_pre()),
            PluginPre::Visualiser(pre) => (PluginKind::Visualiser, pre.instance_pre()),
        };
        let bindings = instance_pre
            .instantiate(&mut store)
            .map(|instance| PluginBindings { kind, instance });
        match bindings {
            Ok(bindings) => Ok(LiveInstance { store, bindings }),
            Err(err) => Err(classify_failure(
                &self.name,
                Call::Instantiate,
                err,
                store.data(),
                &sandbox.limits,
            )),
        }
    }

    /// Runs one guest function with the deadline armed, creating (and
    /// configuring) the instance first if there is none. On a trap the
    /// instance is discarded.
    fn invoke<T>(
        &mut self,
        sandbox: &Sandbox,
        call: Call,
        kind: PluginKind,
        run: impl FnOnce(&PluginBindings, &mut Store<PluginState>) -> GuestOutcome<T>,
    ) -> Result<Result<T, String>, PluginError> {
        if self.live.is_none() {
            let mut live = self.instantiate(sandbox)?;
            if !self.options.is_empty() {
                let options = self.options.clone();
                let configured = run_guarded(
                    &self.name,
                    sandbox,
                    Call::Configure,
                    &mut live,
                    |bindings, store| Some(configure(bindings, store, &options)),
                );
                match configured {
                    Ok(Some(Ok(()))) => {}
                    Ok(Some(Err(message))) => {
                        return Err(PluginError::Reported {
                            plugin: self.name.clone(),
                            call: Call::Configure,
                            message: truncate_utf8(message, sandbox.limits.max_text_bytes),
                        })
                    }
                    Ok(None) => unreachable_kind(&self.name, Call::Configure, kind)?,
                    Err(err) => return Err(err),
                }
            }
            self.live = Some(live);
        }
        let Some(live) = self.live.as_mut() else {
            return Err(PluginError::Host {
                plugin: self.name.clone(),
                call,
                message: "instance vanished between creation and use".into(),
            });
        };
        match run_guarded(&self.name, sandbox, call, live, run) {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => unreachable_kind(&self.name, call, kind),
            Err(err) => {
                self.live = None;
                Err(err)
            }
        }
    }
}

/// Calls `plugin.configure`.
fn configure(
    bindings: &PluginBindings,
    store: &mut Store<PluginState>,
    options: &[wit::OptionValue],
) -> wasmtime::Result<Result<(), String>> {
    bindings
        .call::<_, (Result<(), OutText>,)>(store, PLUGIN_INTERFACE, "configure", (options,))
        .map(|(reply,)| reply.map_err(|e| e.0))
}

/// The error for a guest function the instance does not have.
fn unreachable_kind<T>(plugin: &str, call: Call, kind: PluginKind) -> Result<T, PluginError> {
    Err(PluginError::WrongKind {
        plugin: plugin.to_owned(),
        call,
        actual: kind,
    })
}

/// Arms the deadline and resets per-call state, runs `run`, and turns a
/// wasmtime error into the matching [`PluginError`].
fn run_guarded<T>(
    plugin: &str,
    sandbox: &Sandbox,
    call: Call,
    live: &mut LiveInstance,
    run: impl FnOnce(&PluginBindings, &mut Store<PluginState>) -> GuestOutcome<T>,
) -> Result<Option<Result<T, String>>, PluginError> {
    live.store.data_mut().log_lines_this_call = 0;
    live.store.data_mut().denied = None;
    live.store.set_epoch_deadline(sandbox.deadline_ticks);
    let budget = OutputBudget::arm(sandbox.limits.max_output_bytes);
    match run(&live.bindings, &mut live.store) {
        None => Ok(None),
        Some(Ok(reply)) => Ok(Some(reply)),
        Some(Err(_)) if budget.exceeded() => Err(PluginError::InvalidOutput {
            plugin: plugin.to_owned(),
            call,
            reason: format!(
                "it returned more than the output limit of {} bytes (refused before copying)",
                budget.limit()
            ),
        }),
        Some(Err(err)) => Err(classify_failure(
            plugin,
            call,
            err,
            live.store.data(),
            &sandbox.limits,
        )),
    }
}

/// Says why a guest call failed: memory limit, deadline, or another trap
/// (with the guest's panic message from stderr when there is one).
fn classify_failure(
    plugin: &str,
    call: Call,
    err: wasmtime::Error,
    state: &PluginState,
    limits: &Limits,
) -> PluginError {
    let plugin = plugin.to_owned();
    if let Some(import) = &state.denied {
        return PluginError::Forbidden {
            plugin,
            call,
            import: import.clone(),
        };
    }
    if state.memory.exceeded {
        return PluginError::MemoryLimit {
            plugin,
            call,
            limit_bytes: limits.memory_bytes,
        };
    }
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return PluginError::Timeout {
            plugin,
            call,
            limit: limits.call_timeout,
        };
    }
    let mut message = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    // A Rust guest's panic message, minus the hint about backtraces that
    // only applies to a native process.
    let stderr: Vec<String> = state
        .stderr_tail(1024)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
        .map(str::to_owned)
        .collect();
    if !stderr.is_empty() {
        message.push_str("; plugin stderr: ");
        message.push_str(&stderr.join(" "));
    }
    PluginError::Trap {
        plugin,
        call,
        message: truncate_utf8(message, limits.max_text_bytes),
    }
}

struct LoadedPlugin {
    info: PluginInfo,
    path: PathBuf,
    contract_version: String,
    slot: Slot,
    enabled: bool,
    consecutive_failures: u32,
    total_failures: u64,
    last_error: Option<String>,
}

impl LoadedPlugin {
    /// Updates the plugin's health after a call: faults count towards
    /// disabling it; a success or an orderly error shows it is alive.
    fn record<T>(&mut self, outcome: &Result<T, PluginError>, max_consecutive_failures: u32) {
        match outcome {
            Err(err) if err.is_fault() => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.total_failures = self.total_failures.saturating_add(1);
                self.last_error = Some(err.to_string());
                if self.consecutive_failures >= max_consecutive_failures {
                    self.enabled = false;
                    self.slot.live = None;
                }
            }
            _ => self.consecutive_failures = 0,
        }
    }

    fn status(&self) -> PluginStatus {
        PluginStatus {
            info: self.info.clone(),
            path: self.path.clone(),
            contract_version: self.contract_version.clone(),
            enabled: self.enabled,
            consecutive_failures: self.consecutive_failures,
            total_failures: self.total_failures,
            last_error: self.last_error.clone(),
        }
    }
}

/// A loaded plugin as the workbench lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginStatus {
    pub info: PluginInfo,
    pub path: PathBuf,
    /// The contract version the plugin was built against.
    pub contract_version: String,
    /// Disabled plugins are skipped by the `*_all` calls and refuse direct calls.
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub total_failures: u64,
    pub last_error: Option<String>,
}

/// The contract version and kind a component was built for, read from the
/// names of its exported interfaces (`tritlab:plugin/tracer@0.1.0`).
fn contract_of(component: &Component, engine: &Engine) -> Result<(PluginKind, String), String> {
    let prefix = format!("{CONTRACT_PACKAGE}/");
    let mut versions = BTreeSet::new();
    let mut kinds = Vec::new();
    let mut exports = Vec::new();
    for (name, _) in component.component_type().exports(engine) {
        exports.push(name.to_owned());
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, "unversioned"));
        versions.insert(version.to_owned());
        match interface {
            "tracer" => kinds.push(PluginKind::Tracer),
            "checker" => kinds.push(PluginKind::Checker),
            "visualiser" => kinds.push(PluginKind::Visualiser),
            _ => {}
        }
    }
    if versions.is_empty() {
        return Err(format!(
            "it exports no {CONTRACT_PACKAGE} interface (exports: {})",
            exports.join(", ")
        ));
    }
    if let Some(incompatible) = versions.iter().find(|v| !contract_compatible(v)) {
        return Ok((
            kinds.first().copied().unwrap_or(PluginKind::Tracer),
            incompatible.clone(),
        ));
    }
    match kinds.as_slice() {
        [kind] => Ok((*kind, versions.into_iter().next().unwrap_or_default())),
        [] => Err("it exports none of the tracer, checker or visualiser interfaces".into()),
        _ => {
            Err("it exports more than one of the tracer, checker and visualiser interfaces".into())
        }
    }
}

/// Why a component file could not be read.
enum ModuleRead {
    Io(std::io::Error),
    /// Its size in bytes (at least this many: reading stops past the limit).
    TooLarge(u64),
}

/// Reads a component file of at most `limit` bytes. The size is checked
/// before reading, and the read itself stops one byte past the limit, so
/// neither a huge file nor one that grows while being read is ever held in
/// memory (or handed to the compiler).
fn read_module(path: &Path, limit: usize) -> Result<Vec<u8>, ModuleRead> {
    use std::io::Read as _;
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let file = std::fs::File::open(path).map_err(ModuleRead::Io)?;
    let size = file.metadata().map_err(ModuleRead::Io)?.len();
    if size > limit {
        return Err(ModuleRead::TooLarge(size));
    }
    let mut wasm = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut wasm)
        .map_err(ModuleRead::Io)?;
    let read = u64::try_from(wasm.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Err(ModuleRead::TooLarge(read));
    }
    Ok(wasm)
}

/// Loads tritlab plugins and calls them in a sandbox.
///
/// Every plugin runs in its own store with WASI linked but nothing granted
/// (no files, environment, network or sockets; a frozen wall clock; fixed
/// randomness), a memory limit, a per-call deadline and caps on what it
/// returns. A plugin that traps, runs away, exhausts its memory or returns
/// nonsense fails that one call with a [`PluginError`] naming it and the
/// call; after [`Limits::max_consecutive_failures`] faults in a row it is
/// disabled. The host and the other plugins carry on.
pub struct PluginHost {
    sandbox: Sandbox,
    linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    plugins: Vec<LoadedPlugin>,
    // Declared last: dropped (and joined) after everything that uses the engine.
    _epoch_timer: EpochTimer,
}

impl PluginHost {
    /// A host with no plugins loaded.
    pub fn new(config: HostConfig) -> Result<PluginHost, HostError> {
        let mut engine_config = Config::new();
        engine_config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            // Only the proposals the toolchains' output needs (MVP plus
            // bulk memory, reference types, multi-value, SIMD, sign
            // extension, saturating conversions). Wasmtime enables more by
            // default; memory64 and multi-memory in particular widen what
            // the memory limiter must reason about for no plugin's benefit.
            .wasm_memory64(false)
            .wasm_multi_memory(false)
            .wasm_custom_page_sizes(false)
            .wasm_tail_call(false)
            .wasm_wide_arithmetic(false)
            .wasm_relaxed_simd(false)
            .wasm_extended_const(false)
            .wasm_gc(false)
            .wasm_stack_switching(false)
            .wasm_shared_everything_threads(false);
        let engine =
            Engine::new(&engine_config).map_err(|e| HostError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| HostError::Linker(format!("{e:#}")))?;
        deny_waiting(&mut linker).map_err(|e| HostError::Linker(format!("{e:#}")))?;
        tracer::TracerPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| HostError::Linker(format!("{e:#}")))?;

        let tick = config.epoch_tick.max(std::time::Duration::from_micros(100));
        let deadline_ticks = config
            .limits
            .call_timeout
            .as_nanos()
            .div_ceil(tick.as_nanos())
            .max(1);
        let epoch_timer = EpochTimer::start(engine.clone(), tick).map_err(HostError::Timer)?;
        let logs = Arc::new(Mutex::new(LogBuffer::new(config.limits.log_buffer_records)));
        // A cache folder others could write to would let them run native
        // code in this process: refuse it and compile every time instead.
        let cache_dir = config.cache_dir.filter(|dir| match prepare_dir(dir) {
            Ok(()) => true,
            Err(reason) => {
                logs.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(LogRecord {
                        plugin: HOST_LOG_NAME.into(),
                        level: LogLevel::Warn,
                        message: format!(
                            "not using the compiled-plugin cache {}: {reason}; plugins are compiled on every load",
                            dir.display()
                        ),
                    });
                false
            }
        });
        Ok(PluginHost {
            sandbox: Sandbox {
                engine,
                limits: Arc::new(config.limits),
                deadline_ticks: u64::try_from(deadline_ticks).unwrap_or(u64::MAX),
                tensors: Arc::new(NoTensors),
                logs,
            },
            linker,
            cache_dir,
            plugins: Vec::new(),
            _epoch_timer: epoch_timer,
        })
    }

    /// The sandbox limits in force.
    pub fn limits(&self) -> &Limits {
        &self.sandbox.limits
    }

    /// Serves tensors to plugins through the `host` imports from now on,
    /// including to instances already running.
    pub fn set_tensor_source(&mut self, source: Arc<dyn TensorSource>) {
        for plugin in &mut self.plugins {
            if let Some(live) = plugin.slot.live.as_mut() {
                live.store.data_mut().tensors = Arc::clone(&source);
            }
        }
        self.sandbox.tensors = source;
    }

    /// Loads one plugin component: compiles it (or loads it from the cache),
    /// checks its contract version, instantiates it and asks it to describe
    /// itself.
    pub fn load_file(&mut self, path: impl AsRef<Path>) -> Result<PluginInfo, LoadError> {
        let path = path.as_ref().to_path_buf();
        let label = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let wasm =
            read_module(&path, self.sandbox.limits.max_module_bytes).map_err(|err| match err {
                ModuleRead::Io(source) => LoadError::Read {
                    plugin: label.clone(),
                    path: path.clone(),
                    source,
                },
                ModuleRead::TooLarge(size) => LoadError::TooLarge {
                    plugin: label.clone(),
                    path: path.clone(),
                    size,
                    limit: self.sandbox.limits.max_module_bytes,
                },
            })?;
        let component = compile_component(&self.sandbox.engine, &wasm, self.cache_dir.as_deref())
            .map_err(|e| LoadError::Compile {
            plugin: label.clone(),
            path: path.clone(),
            message: format!("{e:#}"),
        })?;

        let (kind, contract_version) =
            contract_of(&component, &self.sandbox.engine).map_err(|reason| {
                LoadError::NotAPlugin {
                    plugin: label.clone(),
                    path: path.clone(),
                    reason,
                }
            })?;
        if !contract_compatible(&contract_version) {
            return Err(LoadError::IncompatibleContract {
                plugin: label,
                path,
                plugin_version: contract_version,
                host_version: CONTRACT_VERSION.into(),
            });
        }

        let link_error = |e: wasmtime::Error| LoadError::Link {
            plugin: label.clone(),
            path: path.clone(),
            message: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = match kind {
            PluginKind::Tracer => {
                PluginPre::Tracer(tracer::TracerPluginPre::new(instance_pre).map_err(link_error)?)
            }
            PluginKind::Checker => PluginPre::Checker(
                checker::CheckerPluginPre::new(instance_pre).map_err(link_error)?,
            ),
            PluginKind::Visualiser => PluginPre::Visualiser(
                visualiser::VisualiserPluginPre::new(instance_pre).map_err(link_error)?,
            ),
        };

        let mut slot = Slot {
            name: label.clone(),
            pre,
            live: None,
            options: Vec::new(),
        };
        let described = slot
            .invoke(&self.sandbox, Call::Describe, kind, |bindings, store| {
                Some(
                    bindings
                        .call::<_, (OutPluginInfo,)>(store, PLUGIN_INTERFACE, "describe", ())
                        .map(|(info,)| Ok(wit::PluginInfo::from(info))),
                )
            })
            .and_then(|reply| {
                reply.map_err(|message| PluginError::Reported {
                    plugin: label.clone(),
                    call: Call::Describe,
                    message,
                })
            })
            .map_err(|source| LoadError::Describe {
                plugin: label.clone(),
                path: path.clone(),
                source,
            })?;
        let info =
            convert::plugin_info_from_wit(described, &self.sandbox.limits).map_err(|reason| {
                LoadError::InvalidDescription {
                    plugin: label.clone(),
                    path: path.clone(),
                    reason,
                }
            })?;
        if info.kind != kind {
            return Err(LoadError::InvalidDescription {
                plugin: label,
                path,
                reason: format!(
                    "it describes itself as a {} but exports the {kind} interface",
                    info.kind
                ),
            });
        }
        if let Some(existing) = self.plugins.iter().find(|p| p.info.name == info.name) {
            return Err(LoadError::DuplicateName {
                plugin: info.name.clone(),
                path,
                existing: existing.path.clone(),
            });
        }

        slot.name = info.name.clone();
        if let Some(live) = slot.live.as_mut() {
            live.store.data_mut().plugin = info.name.clone();
        }
        self.plugins.push(LoadedPlugin {
            info: info.clone(),
            path,
            contract_version,
            slot,
            enabled: true,
            consecutive_failures: 0,
            total_failures: 0,
            last_error: None,
        });
        Ok(info)
    }

    /// Loads every `*.wasm` file directly in `dir`, in name order. One bad
    /// plugin does not stop the others; a folder that does not exist holds
    /// no plugins.
    pub fn load_dir(&mut self, dir: impl AsRef<Path>) -> Vec<Result<PluginInfo, LoadError>> {
        let dir = dir.as_ref();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(source) => {
                return vec![Err(LoadError::ReadDir {
                    path: dir.to_path_buf(),
                    source,
                })]
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
            .collect();
        paths.sort();
        // Each load compiles a component: bound how many one folder may
        // make the host compile (module size bounds each compile).
        let max = self.sandbox.limits.max_plugins_per_dir;
        let skipped = paths.split_off(paths.len().min(max));
        let mut results: Vec<_> = paths.into_iter().map(|path| self.load_file(path)).collect();
        results.extend(skipped.into_iter().map(|path| {
            Err(LoadError::TooMany {
                plugin: path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                ),
                path,
                limit: max,
            })
        }));
        results
    }

    /// Loads the bundled plugins from `bundled_dir`, then the user's
    /// ([`user_plugin_dir`]). On a name clash the first loaded wins and the
    /// later one is reported as a duplicate.
    pub fn load_standard_dirs(
        &mut self,
        bundled_dir: impl AsRef<Path>,
    ) -> Vec<Result<PluginInfo, LoadError>> {
        let mut results = self.load_dir(bundled_dir);
        if let Some(user_dir) = user_plugin_dir() {
            results.extend(self.load_dir(user_dir));
        }
        results
    }

    /// Unloads a plugin. Returns whether one of that name was loaded.
    pub fn unload(&mut self, plugin: &str) -> bool {
        let before = self.plugins.len();
        self.plugins.retain(|p| p.info.name != plugin);
        self.plugins.len() != before
    }

    /// Every loaded plugin, in load order.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.plugins.iter().map(LoadedPlugin::status).collect()
    }

    /// One plugin's status.
    pub fn status(&self, plugin: &str) -> Option<PluginStatus> {
        self.plugins
            .iter()
            .find(|p| p.info.name == plugin)
            .map(LoadedPlugin::status)
    }

    fn plugin_mut(&mut self, plugin: &str) -> Result<&mut LoadedPlugin, PluginError> {
        self.plugins
            .iter_mut()
            .find(|p| p.info.name == plugin)
            .ok_or_else(|| PluginError::NotFound {
                plugin: plugin.to_owned(),
            })
    }

    /// Enables or disables a plugin. Enabling clears its failure streak, so
    /// a plugin disabled for faults gets a fresh chance.
    pub fn set_enabled(&mut self, plugin: &str, enabled: bool) -> Result<(), PluginError> {
        let loaded = self.plugin_mut(plugin)?;
        loaded.enabled = enabled;
        if enabled {
            loaded.consecutive_failures = 0;
        } else {
            loaded.slot.live = None;
        }
        Ok(())
    }

    /// Discards a plugin's instance and starts a fresh one (with its options
    /// applied), resetting whatever state the plugin kept.
    pub fn restart(&mut self, plugin: &str) -> Result<(), PluginError> {
        let loaded = self.plugin_mut(plugin)?;
        loaded.slot.live = None;
        self.call(
            plugin,
            Call::Instantiate,
            |_, _| Some(Ok(Ok(()))),
            |(), _| Ok(()),
        )
    }

    /// Sets options (names from [`PluginInfo::options`]); they are kept and
    /// re-applied whenever the plugin's instance is restarted.
    pub fn configure(&mut self, plugin: &str, options: &[(&str, &str)]) -> Result<(), PluginError> {
        let values: Vec<wit::OptionValue> = options
            .iter()
            .map(|(name, value)| wit::OptionValue {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect();
        self.call(
            plugin,
            Call::Configure,
            |bindings, store| Some(configure(bindings, store, &values)),
            |(), _| Ok(()),
        )?;
        let loaded = self.plugin_mut(plugin)?;
        for value in values {
            loaded.slot.options.retain(|o| o.name != value.name);
            loaded.slot.options.push(value);
        }
        Ok(())
    }

    /// Asks tracer `plugin` to annotate a generated token.
    pub fn trace_generation(
        &mut self,
        plugin: &str,
        step: &GenerationStep,
    ) -> Result<Annotation, PluginError> {
        let input = convert::generation_step_to_wit(step);
        self.call(
            plugin,
            Call::TraceGeneration,
            |bindings, store| {
                bindings
                    .call_if::<_, (Result<OutAnnotation, OutText>,)>(
                        PluginKind::Tracer,
                        store,
                        TRACER_INTERFACE,
                        "trace-generation",
                        (&input,),
                    )
                    .map(|r| r.map(|(reply,)| output::reply(reply)))
            },
            convert::annotation_from_wit,
        )
    }

    /// Asks tracer `plugin` to annotate a training step.
    pub fn trace_training(
        &mut self,
        plugin: &str,
        step: &TrainingStep,
    ) -> Result<Annotation, PluginError> {
        let input = convert::training_step_to_wit(step);
        self.call(
            plugin,
            Call::TraceTraining,
            |bindings, store| {
                bindings
                    .call_if::<_, (Result<OutAnnotation, OutText>,)>(
                        PluginKind::Tracer,
                        store,
                        TRACER_INTERFACE,
                        "trace-training",
                        (&input,),
                    )
                    .map(|r| r.map(|(reply,)| output::reply(reply)))
            },
            convert::annotation_from_wit,
        )
    }

    /// Asks checker `plugin` for verdicts on `subject`.
    pub fn check(
        &mut self,
        plugin: &str,
        subject: &CheckSubject,
    ) -> Result<Vec<Verdict>, PluginError> {
        let input = convert::check_subject_to_wit(subject);
        self.call(
            plugin,
            Call::Check,
            |bindings, store| {
                bindings
                    .call_if::<_, (Result<OutList<OutVerdict>, OutText>,)>(
                        PluginKind::Checker,
                        store,
                        CHECKER_INTERFACE,
                        "check",
                        (&input,),
                    )
                    .map(|r| r.map(|(reply,)| output::list_reply(reply)))
            },
            convert::verdicts_from_wit,
        )
    }

    /// Asks visualiser `plugin` to draw `input`.
    pub fn render(
        &mut self,
        plugin: &str,
        input: &VisualInput,
    ) -> Result<Vec<Visual>, PluginError> {
        let request = convert::render_request_to_wit(input, &self.sandbox.limits);
        self.call(
            plugin,
            Call::Render,
            |bindings, store| {
                bindings
                    .call_if::<_, (Result<OutList<OutVisual>, OutText>,)>(
                        PluginKind::Visualiser,
                        store,
                        VISUALISER_INTERFACE,
                        "render",
                        (&request,),
                    )
                    .map(|r| r.map(|(reply,)| output::list_reply(reply)))
            },
            convert::visuals_from_wit,
        )
    }

    fn enabled_of_kind(&self, kind: PluginKind) -> Vec<String> {
        self.plugins
            .iter()
            .filter(|p| p.enabled && p.info.kind == kind)
            .map(|p| p.info.name.clone())
            .collect()
    }

    /// Every enabled tracer's annotation of a generated token.
    pub fn trace_generation_all(
        &mut self,
        step: &GenerationStep,
    ) -> Vec<(String, Result<Annotation, PluginError>)> {
        self.enabled_of_kind(PluginKind::Tracer)
            .into_iter()
            .map(|name| {
                let result = self.trace_generation(&name, step);
                (name, result)
            })
            .collect()
    }

    /// Every enabled tracer's annotation of a training step.
    pub fn trace_training_all(
        &mut self,
        step: &TrainingStep,
    ) -> Vec<(String, Result<Annotation, PluginError>)> {
        self.enabled_of_kind(PluginKind::Tracer)
            .into_iter()
            .map(|name| {
                let result = self.trace_training(&name, step);
                (name, result)
            })
            .collect()
    }

    /// Every enabled checker's verdicts on `subject`.
    pub fn check_all(
        &mut self,
        subject: &CheckSubject,
    ) -> Vec<(String, Result<Vec<Verdict>, PluginError>)> {
        self.enabled_of_kind(PluginKind::Checker)
            .into_iter()
            .map(|name| {
                let result = self.check(&name, subject);
                (name, result)
            })
            .collect()
    }

    /// Takes the log lines plugins wrote since the last call, oldest first,
    /// and how many were dropped for exceeding the caps.
    pub fn drain_logs(&self) -> (Vec<LogRecord>, u64) {
        let mut logs = self
            .sandbox
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let dropped = std::mem::take(&mut logs.dropped);
        (logs.drain(), dropped)
    }

    /// One checked call: refuses unknown, disabled and wrong-kind plugins,
    /// runs the guest function in the sandbox, validates its output, and
    /// updates the plugin's health.
    fn call<T, U>(
        &mut self,
        plugin: &str,
        call: Call,
        run: impl FnOnce(&PluginBindings, &mut Store<PluginState>) -> GuestOutcome<T>,
        validate: impl FnOnce(T, &Limits) -> Result<U, String>,
    ) -> Result<U, PluginError> {
        let max_failures = self.sandbox.limits.max_consecutive_failures;
        let sandbox = &self.sandbox;
        let loaded = self
            .plugins
            .iter_mut()
            .find(|p| p.info.name == plugin)
            .ok_or_else(|| PluginError::NotFound {
                plugin: plugin.to_owned(),
            })?;
        if !loaded.enabled {
            return Err(PluginError::Disabled {
                plugin: plugin.to_owned(),
                failures: loaded.consecutive_failures,
                last_error: loaded
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "disabled by the user".into()),
            });
        }
        let kind = loaded.info.kind;
        let outcome = loaded
            .slot
            .invoke(sandbox, call, kind, run)
            .and_then(|reply| match reply {
                Ok(value) => {
                    validate(value, &sandbox.limits).map_err(|reason| PluginError::InvalidOutput {
                        plugin: plugin.to_owned(),
                        call,
                        reason,
                    })
                }
                Err(message) => Err(PluginError::Reported {
                    plugin: plugin.to_owned(),
                    call,
                    message: truncate_utf8(message, sandbox.limits.max_text_bytes),
                }),
            });
        loaded.record(&outcome, max_failures);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_carry_the_contract_version() {
        for (interface, name) in [
            (PLUGIN_INTERFACE, "plugin"),
            (TRACER_INTERFACE, "tracer"),
            (CHECKER_INTERFACE, "checker"),
            (VISUALISER_INTERFACE, "visualiser"),
        ] {
            assert_eq!(
                interface,
                format!("{CONTRACT_PACKAGE}/{name}@{CONTRACT_VERSION}")
            );
        }
    }

    #[test]
    fn contract_versions_follow_semver_with_the_0x_rule() {
        assert!(contract_compatible("0.1.0"));
        assert!(
            contract_compatible("0.1.7"),
            "patch releases are compatible"
        );
        assert!(!contract_compatible("0.2.0"), "0.x minor releases break");
        assert!(!contract_compatible("0.0.9"));
        assert!(!contract_compatible("9.0.0"));
        assert!(
            !contract_compatible("0.1.0-rc.1"),
            "pre-releases must match exactly"
        );
        assert!(!contract_compatible("0.1"));
        assert!(!contract_compatible("unversioned"));
        assert!(!contract_compatible("0.1.0.0"));
    }
}
