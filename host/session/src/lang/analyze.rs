//! What each token of a command line stands for, decided from the command table alone.
//!
//! The parser, the highlighter, the completer and the hinter all start here, so a word the
//! parser reads as an option value is coloured, completed and hinted as that option's value too.
//! The analysis accepts anything: deciding what is wrong is the parser's job.

use super::lexer::{TokKind, Token};
use super::spec::{ArgSpec, CommandSpec, OptionSpec};
use super::table::find_command;

/// The part a token plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Role {
    /// The command word; `None` when no command has that name.
    Command(Option<&'static CommandSpec>),
    Subcommand(&'static CommandSpec),
    /// A word where a subcommand is needed that names none.
    UnknownSubcommand,
    /// `--name`; `None` when the command has no such option.
    Option(Option<&'static OptionSpec>),
    /// The separate value token after an option that takes one.
    OptionValue(&'static OptionSpec),
    Positional(&'static ArgSpec),
    /// A positional argument with no slot left for it.
    Extra,
    /// Anything after an unknown command or subcommand.
    Unknown,
}

/// The tokens of one command line, each with its role.
#[derive(Debug, Clone)]
pub(crate) struct Analysis<'t> {
    /// The argument tokens (comments left out) with their roles.
    pub tokens: Vec<(&'t Token, Role)>,
    /// The command as typed, when known.
    pub top: Option<&'static CommandSpec>,
    /// The command or subcommand whose arguments and options follow; `None` when unknown or
    /// when a subcommand is still to come.
    pub spec: Option<&'static CommandSpec>,
    /// How many positional slots of `spec` are taken.
    pub positionals: usize,
    /// The options given so far, in order (repeats included).
    pub used: Vec<&'static OptionSpec>,
    /// The last token is an option still waiting for its separate value.
    pub pending: Option<&'static OptionSpec>,
}

impl Analysis<'_> {
    /// Whether the next argument chooses a subcommand.
    pub fn awaiting_subcommand(&self) -> bool {
        self.top.is_some_and(|top| !top.subcommands.is_empty())
            && self.tokens.len() == 1
            && self.pending.is_none()
    }

    /// The next free positional slot of the resolved command.
    pub fn next_positional(&self) -> Option<&'static ArgSpec> {
        self.spec.and_then(|spec| spec.args.get(self.positionals))
    }
}

/// Assigns roles to `tokens` (comments are skipped).
pub(crate) fn analyze(tokens: &[Token]) -> Analysis<'_> {
    let mut out = Analysis {
        tokens: Vec::new(),
        top: None,
        spec: None,
        positionals: 0,
        used: Vec::new(),
        pending: None,
    };
    let mut args = tokens.iter().filter(|t| !t.is_comment());

    let Some(first) = args.next() else { return out };
    let top = match &first.kind {
        TokKind::Bare(word) => find_command(word),
        _ => None,
    };
    out.tokens.push((first, Role::Command(top)));
    out.top = top;
    let Some(top) = top else {
        out.tokens.extend(args.map(|t| (t, Role::Unknown)));
        return out;
    };
    out.spec = Some(top);

    let mut args = args.peekable();
    if !top.subcommands.is_empty() {
        let sub = args.peek().and_then(|t| match &t.kind {
            TokKind::Bare(word) => top.subcommand(word),
            _ => None,
        });
        match sub {
            Some(sub) => {
                if let Some(token) = args.next() {
                    out.tokens.push((token, Role::Subcommand(sub)));
                }
                out.spec = Some(sub);
            }
            // Without a form of its own (`replay`), the command needs a subcommand here.
            None if !top.has_own_form() => {
                out.spec = None;
                if let Some(token) = args.next() {
                    out.tokens.push((token, Role::UnknownSubcommand));
                }
                out.tokens.extend(args.map(|t| (t, Role::Unknown)));
                return out;
            }
            None => {}
        }
    }

    let spec = out.spec.unwrap_or(top);
    for token in args {
        if let Some(option) = out.pending.take() {
            if !matches!(token.kind, TokKind::Opt { .. }) {
                out.tokens.push((token, Role::OptionValue(option)));
                continue;
            }
        }
        match &token.kind {
            TokKind::Opt { name, value, .. } => {
                let option = spec.option(name);
                if let Some(option) = option {
                    out.used.push(option);
                    if option.takes_value() && value.is_none() {
                        out.pending = Some(option);
                    }
                }
                out.tokens.push((token, Role::Option(option)));
            }
            _ => {
                let role = match spec.args.get(out.positionals) {
                    Some(arg) => Role::Positional(arg),
                    None => Role::Extra,
                };
                out.positionals += 1;
                out.tokens.push((token, role));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::lexer::{lex, Item};

    fn roles(src: &str) -> Vec<String> {
        let items = lex(src);
        let Some(Item::Line { tokens, .. }) = items.first() else {
            panic!("no line")
        };
        analyze(tokens)
            .tokens
            .iter()
            .map(|(_, role)| match role {
                Role::Command(Some(c)) => format!("command:{}", c.name),
                Role::Command(None) => "command?".into(),
                Role::Subcommand(c) => format!("sub:{}", c.name),
                Role::UnknownSubcommand => "sub?".into(),
                Role::Option(Some(o)) => format!("option:{}", o.name),
                Role::Option(None) => "option?".into(),
                Role::OptionValue(o) => format!("value:{}", o.name),
                Role::Positional(a) => format!("arg:{}", a.name),
                Role::Extra => "extra".into(),
                Role::Unknown => "unknown".into(),
            })
            .collect()
    }

    #[test]
    fn generate_line() {
        assert_eq!(
            roles("generate \"hi\" --seed 3 --greedy --top-p=0.5 # c"),
            [
                "command:generate",
                "arg:PROMPT",
                "option:seed",
                "value:seed",
                "option:greedy",
                "option:top-p"
            ]
        );
    }

    #[test]
    fn subcommands_and_own_forms() {
        assert_eq!(roles("log show 3"), ["command:log", "sub:show", "arg:STEP"]);
        assert_eq!(roles("log runs/a"), ["command:log", "arg:RUN_DIR"]);
        assert_eq!(roles("log \"show\""), ["command:log", "arg:RUN_DIR"]);
        assert_eq!(roles("replay opn x"), ["command:replay", "sub?", "unknown"]);
        assert_eq!(
            roles("plugin set a b c d"),
            [
                "command:plugin",
                "sub:set",
                "arg:NAME",
                "arg:KEY",
                "arg:VALUE",
                "extra"
            ]
        );
    }

    #[test]
    fn an_option_does_not_swallow_the_next_option() {
        assert_eq!(
            roles("generate x --stop --greedy"),
            [
                "command:generate",
                "arg:PROMPT",
                "option:stop",
                "option:greedy"
            ]
        );
    }

    #[test]
    fn unknown_command() {
        assert_eq!(roles("generte x --y"), ["command?", "unknown", "unknown"]);
    }
}
