//! Errors of loading and calling plugins.
//!
//! Every error names the plugin and, for calls, the contract function that
//! failed, so a report in the workbench says which plugin misbehaved and how.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::PluginKind;

/// A contract function the host calls on a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Instantiate,
    Describe,
    Configure,
    TraceGeneration,
    TraceTraining,
    Check,
    Render,
}

impl Call {
    /// The function's name as the WIT contract spells it.
    pub fn wit_name(self) -> &'static str {
        match self {
            Call::Instantiate => "instantiate",
            Call::Describe => "plugin.describe",
            Call::Configure => "plugin.configure",
            Call::TraceGeneration => "tracer.trace-generation",
            Call::TraceTraining => "tracer.trace-training",
            Call::Check => "checker.check",
            Call::Render => "visualiser.render",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wit_name())
    }
}

/// A failed call to a loaded plugin.
///
/// The host survives all of these. Those for which [`PluginError::is_fault`]
/// is true count towards disabling the plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("no plugin named `{plugin}` is loaded")]
    NotFound { plugin: String },

    #[error("plugin `{plugin}` is a {actual}, so it has no `{call}`")]
    WrongKind {
        plugin: String,
        call: Call,
        actual: PluginKind,
    },

    #[error(
        "plugin `{plugin}` is disabled after {failures} consecutive failures (last: {last_error}); \
         enable it again to retry"
    )]
    Disabled {
        plugin: String,
        failures: u32,
        last_error: String,
    },

    #[error("plugin `{plugin}`: `{call}` ran past its time limit of {limit:?} and was stopped")]
    Timeout {
        plugin: String,
        call: Call,
        limit: Duration,
    },

    /// The plugin called an import the sandbox links but does not grant:
    /// WASI's timers and polling, which would block the host where the
    /// deadline cannot reach, so the call was stopped at once.
    #[error(
        "plugin `{plugin}`: `{call}` called `{import}`, which is not granted (plugins may not \
         sleep or wait), and was stopped"
    )]
    Forbidden {
        plugin: String,
        call: Call,
        import: String,
    },

    #[error(
        "plugin `{plugin}`: `{call}` tried to grow its memory past the limit of {limit_bytes} bytes \
         and was stopped"
    )]
    MemoryLimit {
        plugin: String,
        call: Call,
        limit_bytes: usize,
    },

    #[error("plugin `{plugin}`: `{call}` trapped: {message}")]
    Trap {
        plugin: String,
        call: Call,
        message: String,
    },

    #[error("plugin `{plugin}`: `{call}` returned invalid output: {reason}")]
    InvalidOutput {
        plugin: String,
        call: Call,
        reason: String,
    },

    /// The plugin itself returned an error: an orderly refusal, not a fault.
    #[error("plugin `{plugin}`: `{call}` reported an error: {message}")]
    Reported {
        plugin: String,
        call: Call,
        message: String,
    },

    #[error("plugin `{plugin}`: `{call}` could not be made: {message}")]
    Host {
        plugin: String,
        call: Call,
        message: String,
    },
}

impl PluginError {
    /// The plugin the error is about.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::NotFound { plugin }
            | PluginError::WrongKind { plugin, .. }
            | PluginError::Disabled { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::Forbidden { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::InvalidOutput { plugin, .. }
            | PluginError::Reported { plugin, .. }
            | PluginError::Host { plugin, .. } => plugin,
        }
    }

    /// The call that failed, if the error is about a call.
    pub fn call(&self) -> Option<Call> {
        match self {
            PluginError::NotFound { .. } | PluginError::Disabled { .. } => None,
            PluginError::WrongKind { call, .. }
            | PluginError::Timeout { call, .. }
            | PluginError::Forbidden { call, .. }
            | PluginError::MemoryLimit { call, .. }
            | PluginError::Trap { call, .. }
            | PluginError::InvalidOutput { call, .. }
            | PluginError::Reported { call, .. }
            | PluginError::Host { call, .. } => Some(*call),
        }
    }

    /// Whether the plugin misbehaved (as opposed to the caller asking for
    /// something impossible, or the plugin declining in an orderly way).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            PluginError::Timeout { .. }
                | PluginError::Forbidden { .. }
                | PluginError::MemoryLimit { .. }
                | PluginError::Trap { .. }
                | PluginError::InvalidOutput { .. }
                | PluginError::Host { .. }
        )
    }
}

/// A plugin that could not be loaded. `plugin` is the file name when the
/// plugin never got to describe itself.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin `{plugin}` ({path}): cannot read it: {source}")]
    Read {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "plugin `{plugin}` ({path}) is {size} bytes, more than the limit of {limit} bytes \
         for a plugin component"
    )]
    TooLarge {
        plugin: String,
        path: PathBuf,
        size: u64,
        limit: usize,
    },

    #[error(
        "plugin `{plugin}` ({path}) was not loaded: its folder holds more than {limit} plugins"
    )]
    TooMany {
        plugin: String,
        path: PathBuf,
        limit: usize,
    },

    #[error("plugin `{plugin}` ({path}): not a valid WebAssembly component: {message}")]
    Compile {
        plugin: String,
        path: PathBuf,
        message: String,
    },

    #[error("plugin `{plugin}` ({path}): not a tritlab plugin: {reason}")]
    NotAPlugin {
        plugin: String,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "plugin `{plugin}` ({path}) was built against contract tritlab:plugin@{plugin_version}, \
         which this host (tritlab:plugin@{host_version}) cannot run; rebuild it against \
         tritlab:plugin@{host_version}"
    )]
    IncompatibleContract {
        plugin: String,
        path: PathBuf,
        plugin_version: String,
        host_version: String,
    },

    #[error(
        "plugin `{plugin}` ({path}): its imports cannot be satisfied by this sandbox: {message}"
    )]
    Link {
        plugin: String,
        path: PathBuf,
        message: String,
    },

    #[error("plugin `{plugin}` ({path}): could not describe itself: {source}")]
    Describe {
        plugin: String,
        path: PathBuf,
        source: PluginError,
    },

    #[error("plugin `{plugin}` ({path}): invalid self-description: {reason}")]
    InvalidDescription {
        plugin: String,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "plugin `{plugin}` ({path}): a plugin with this name is already loaded from {existing}"
    )]
    DuplicateName {
        plugin: String,
        path: PathBuf,
        existing: PathBuf,
    },

    #[error("plugin folder {path}: cannot list it: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A failure of the host itself (not of a plugin).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot link the sandbox's imports: {0}")]
    Linker(String),
    #[error("cannot start the epoch timer thread: {0}")]
    Timer(std::io::Error),
}
