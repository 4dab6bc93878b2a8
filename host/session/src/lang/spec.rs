//! The shape of the command table: what a command, argument and option look like.
//!
//! The table itself is in `table.rs`. Everything that knows about commands (the parser's
//! validation, `help`, completion, hints, highlighting and `docs/COMMANDS.md`) reads it, so they
//! cannot disagree about which options exist, what they take or what their defaults are.

/// Every command and subcommand, for `match`ing without comparing names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandId {
    Help,
    Load,
    Info,
    Layers,
    Verify,
    Show,
    Export,
    Synth,
    Generate,
    Chat,
    Logits,
    Bench,
    Train,
    /// `log [RUN_DIR]`: also the parent of `log show` and `log plot`.
    Log,
    LogShow,
    LogPlot,
    /// `replay`: only a parent; it does nothing without a subcommand.
    Replay,
    ReplayOpen,
    ReplayVerify,
    ReplayExport,
    /// `eval`: only a parent; it does nothing without a subcommand.
    Eval,
    EvalPpl,
    Seek,
    Step,
    Back,
    Plugins,
    /// `plugin`: only a parent; it does nothing without a subcommand.
    Plugin,
    PluginLoad,
    PluginEnable,
    PluginDisable,
    PluginSet,
    Check,
    Clear,
    Quit,
    Rust,
}

/// The topics `help` groups commands under, in the order it lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Model,
    Generation,
    Training,
    Replay,
    Plugins,
    Session,
}

impl Topic {
    pub const ALL: [Topic; 6] = [
        Topic::Model,
        Topic::Generation,
        Topic::Training,
        Topic::Replay,
        Topic::Plugins,
        Topic::Session,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Topic::Model => "Model",
            Topic::Generation => "Generation",
            Topic::Training => "Training",
            Topic::Replay => "Replay",
            Topic::Plugins => "Plugins",
            Topic::Session => "Session",
        }
    }
}

/// What kind of plugin a name must refer to; completion offers only plugins of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginRole {
    Tracer,
    Checker,
    Visualiser,
}

/// What an argument or option value must be. This decides how a token is checked, how it is
/// completed and how it is coloured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueKind {
    /// An option that takes no value.
    Flag,
    /// Any text, bare or quoted (prompts, stop strings, plugin option values).
    Text,
    /// Non-empty text naming something the command defines (a plugin option key).
    Name,
    /// A whole number in `min..=max`.
    Int { min: u64, max: u64 },
    /// A finite number in the range `min..max`, each end open or closed.
    Float {
        min: f32,
        min_inclusive: bool,
        max: f32,
        max_inclusive: bool,
    },
    /// A comma-separated list of token ids (`1,17,300`).
    TokenIds,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A file or directory.
    Path,
    /// A directory (completion offers only directories).
    Dir,
    /// `default` (a bare word) or a path.
    Model,
    /// A tensor name, or a layer name for that layer's weight.
    Tensor,
    /// A loaded plugin's name, of any kind or of one kind.
    Plugin(Option<PluginRole>),
    /// A step number of a training run (0 is the state before the first step).
    Step,
    /// A command name (the argument of `help`).
    Command,
    /// A Rust snippet: the rest of the line, or the lines up to `:end`.
    Code,
}

impl ValueKind {
    /// Words for the kind of value, as help text and error messages say it
    /// ("an integer, at least 1", "a number in (0, 1]").
    pub fn describe(&self) -> String {
        match self {
            ValueKind::Flag => "nothing (a flag)".into(),
            ValueKind::Text => "text".into(),
            ValueKind::Name => "a name".into(),
            ValueKind::Int { .. } => format!("an integer, {}", self.range_text()),
            ValueKind::Float { .. } => format!("a number, {}", self.range_text()),
            ValueKind::TokenIds => "a comma-separated list of token ids".into(),
            ValueKind::Choice(names) => format!("one of {}", names.join(", ")),
            ValueKind::Path => "a path".into(),
            ValueKind::Dir => "a directory".into(),
            ValueKind::Model => "`default` or a path".into(),
            ValueKind::Tensor => "a tensor or layer name".into(),
            ValueKind::Plugin(None) => "a plugin name".into(),
            ValueKind::Plugin(Some(PluginRole::Tracer)) => "a tracer plugin's name".into(),
            ValueKind::Plugin(Some(PluginRole::Checker)) => "a checker plugin's name".into(),
            ValueKind::Plugin(Some(PluginRole::Visualiser)) => "a visualiser plugin's name".into(),
            ValueKind::Step => "a step number".into(),
            ValueKind::Command => "a command name".into(),
            ValueKind::Code => "Rust code".into(),
        }
    }

    /// The allowed range of a number, in words or interval notation ("at least 0",
    /// "greater than 0", "in (0, 1]"); empty for other kinds.
    pub fn range_text(&self) -> String {
        match *self {
            ValueKind::Int { min, max } => {
                // Upper bounds that only say "fits the field" are not worth mentioning.
                if max == u64::MAX || max == u64::from(u32::MAX) {
                    format!("at least {min}")
                } else {
                    format!("from {min} to {max}")
                }
            }
            ValueKind::Float {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => {
                if max.is_infinite() {
                    if min_inclusive {
                        format!("at least {min}")
                    } else {
                        format!("greater than {min}")
                    }
                } else {
                    let open = if min_inclusive { '[' } else { '(' };
                    let close = if max_inclusive { ']' } else { ')' };
                    format!("in {open}{min}, {max}{close}")
                }
            }
            _ => String::new(),
        }
    }

    /// Whether values of this kind name files or directories (completed from the filesystem,
    /// coloured as paths).
    pub fn is_path(&self) -> bool {
        matches!(self, ValueKind::Path | ValueKind::Dir | ValueKind::Model)
    }

    /// Whether values of this kind are numbers (coloured as numbers).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            ValueKind::Int { .. } | ValueKind::Float { .. } | ValueKind::TokenIds | ValueKind::Step
        )
    }
}

/// A positional argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArgSpec {
    /// The placeholder shown in synopses and messages (`PROMPT`).
    pub name: &'static str,
    pub kind: ValueKind,
    pub required: bool,
    /// The value used when the argument is left out, as it would be typed.
    pub default: Option<&'static str>,
    pub summary: &'static str,
}

/// Whether an option must be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Optional,
    Required,
    /// Required unless the named option is given (`train --data` unless `--resume`).
    RequiredUnless(&'static str),
}

/// A `--name` option.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionSpec {
    /// Without the dashes.
    pub name: &'static str,
    pub kind: ValueKind,
    /// The value's placeholder in synopses (`N`); choices show their words instead.
    pub placeholder: &'static str,
    /// The value used when the option is left out, as it would be typed.
    pub default: Option<&'static str>,
    pub presence: Presence,
    /// Options that may not be given together with this one (either side may list the other).
    pub conflicts: &'static [&'static str],
    pub summary: &'static str,
}

impl OptionSpec {
    /// `--name`.
    pub fn flag_text(&self) -> String {
        format!("--{}", self.name)
    }

    /// The value's placeholder as synopses show it: the choices (`tiny|small`) or the
    /// placeholder; empty for flags.
    pub fn value_text(&self) -> String {
        match self.kind {
            ValueKind::Flag => String::new(),
            ValueKind::Choice(names) => names.join("|"),
            _ => self.placeholder.to_string(),
        }
    }

    /// `--name VALUE` (or `--name` for a flag).
    pub fn usage(&self) -> String {
        match self.kind {
            ValueKind::Flag => self.flag_text(),
            _ => format!("{} {}", self.flag_text(), self.value_text()),
        }
    }

    pub fn takes_value(&self) -> bool {
        !matches!(self.kind, ValueKind::Flag)
    }

    /// Whether this option and `other` exclude each other.
    pub fn conflicts_with(&self, other: &OptionSpec) -> bool {
        self.conflicts.contains(&other.name) || other.conflicts.contains(&self.name)
    }
}

/// An example in the help text. Every example is parsed by the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example {
    pub input: &'static str,
    pub note: &'static str,
}

/// A command or subcommand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommandSpec {
    pub id: CommandId,
    pub name: &'static str,
    /// Other names for the command (`exit` for `quit`).
    pub aliases: &'static [&'static str],
    pub topic: Topic,
    /// One line per form of the command, as `help` shows it.
    pub synopsis: &'static [&'static str],
    /// One line, lower case, no full stop: for the `help` index and completion menus.
    pub summary: &'static str,
    /// A paragraph or two for `help COMMAND`.
    pub description: &'static str,
    pub args: &'static [ArgSpec],
    pub options: &'static [OptionSpec],
    /// Subcommands, chosen by the first argument. A command with both subcommands and
    /// arguments has a form of its own too (`log [RUN_DIR]` beside `log show STEP`).
    pub subcommands: &'static [CommandSpec],
    pub examples: &'static [Example],
}

impl CommandSpec {
    // The slices are `'static` whatever `self` is, so lookups hand out `'static` references.
    pub fn option(&self, name: &str) -> Option<&'static OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }

    pub fn subcommand(&self, name: &str) -> Option<&'static CommandSpec> {
        self.subcommands.iter().find(|s| s.name == name)
    }

    /// Whether the command does something without a subcommand.
    pub fn has_own_form(&self) -> bool {
        self.subcommands.is_empty() || !self.args.is_empty() || !self.options.is_empty()
    }

    /// Whether `name` is this command's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}
