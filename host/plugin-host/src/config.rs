//! Sandbox limits and host settings.

use std::path::PathBuf;
use std::time::Duration;

/// What a plugin may use and return. The defaults suit tracing every
/// generated token: a well-behaved plugin call takes microseconds, so the
/// time limit only ever stops broken ones.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock limit of one call (enforced by epoch interruption).
    pub call_timeout: Duration,
    /// Linear memory a plugin instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Failures in a row after which a plugin is disabled.
    pub max_consecutive_failures: u32,
    /// Longest annotation label, in bytes.
    pub max_label_bytes: usize,
    /// Longest message, location, name or error string, in bytes.
    pub max_text_bytes: usize,
    /// Most verdicts one `check` may return.
    pub max_verdicts: usize,
    /// Most visuals one `render` may return.
    pub max_visuals: usize,
    /// Largest image side a visualiser may return (also sent in the request).
    pub max_image_side: u32,
    /// Most points over all series of one plot.
    pub max_plot_points: usize,
    /// Most trits one `host.read-trits` call returns.
    pub max_read_trits: u32,
    /// Longest log line kept, in bytes (longer ones are truncated).
    pub max_log_line_bytes: usize,
    /// Log lines kept per call (further ones are dropped and counted).
    pub max_log_lines_per_call: u32,
    /// Log records the host buffers until drained.
    pub log_buffer_records: usize,
    /// Bytes of a plugin's stderr kept to explain traps (panic messages).
    pub stderr_bytes: usize,
    /// Bytes of output one call may return (all strings and lists
    /// together), counted as the host lifts them out of the plugin's memory
    /// and before copying, so results that alias one buffer many times
    /// cannot make the host copy it again and again. Large enough for one
    /// image of the largest accepted size plus its text.
    pub max_output_bytes: usize,
    /// Largest component file loaded, in bytes. Compiling takes time and
    /// memory roughly in proportion to size; real plugins are far smaller.
    pub max_module_bytes: usize,
    /// Most plugins loaded from one folder (the rest are reported, not
    /// compiled), which bounds the work a folder can cause at start-up.
    pub max_plugins_per_dir: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            max_consecutive_failures: 3,
            max_label_bytes: 256,
            max_text_bytes: 4096,
            max_verdicts: 4096,
            max_visuals: 16,
            max_image_side: 4096,
            max_plot_points: 1 << 20,
            max_read_trits: 1 << 20,
            max_log_line_bytes: 1024,
            max_log_lines_per_call: 64,
            log_buffer_records: 1024,
            stderr_bytes: 16 << 10,
            max_output_bytes: (64 << 20) + (1 << 20),
            max_module_bytes: 16 << 20,
            max_plugins_per_dir: 64,
        }
    }
}

/// How the host is set up.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub limits: Limits,
    /// How often the engine's epoch advances: the deadline is counted in
    /// these ticks, so a runaway call is stopped within one tick of
    /// `call_timeout` after it starts.
    pub epoch_tick: Duration,
    /// Where compiled plugins are cached, keyed by content hash; `None`
    /// compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
        }
    }
}

/// The user's plugin folder: `$TRITLAB_PLUGIN_HOME`, else
/// `$XDG_DATA_HOME/tritlab/plugins`, else `~/.local/share/tritlab/plugins`.
pub fn user_plugin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TRITLAB_PLUGIN_HOME") {
        return Some(PathBuf::from(dir));
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(data).join("tritlab").join("plugins"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share/tritlab/plugins"))
}

/// The default cache of compiled plugins: `$XDG_CACHE_HOME/tritlab/plugins`,
/// else `~/.cache/tritlab/plugins`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(cache).join("tritlab").join("plugins"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/tritlab/plugins"))
}
