//! Inline hints: the rest of a command's synopsis, shown greyed after the cursor.

use super::analyze::{analyze, Analysis};
use super::lexer::{lex, Item, TokKind, Token};
use super::spec::{ArgSpec, CommandSpec, OptionSpec, Presence};
use super::table::COMMANDS;

/// What could still follow `line` (the cursor is taken to be at its end): the rest of a command
/// name being typed and the arguments and options not given yet, in synopsis notation. After
/// `generate ` it is `PROMPT [--max-tokens N] [--temperature T] …`. Text meant to follow the
/// line directly (starting with a space where one is needed); `None` when there is nothing to
/// say, such as inside a string or a comment.
pub fn hint(line: &str) -> Option<String> {
    if line.ends_with('\n') {
        return None;
    }
    let items = lex(line);
    let item = items.last()?;
    if item.is_open() {
        return None;
    }
    let Item::Line { tokens, .. } = item else {
        return None;
    };
    let last = tokens.last()?;
    if last.is_comment() {
        return None;
    }
    let typing = last.span.end == line.len();
    if !typing {
        return remaining(&analyze(tokens));
    }

    let before = analyze(&tokens[..tokens.len() - 1]);
    match &last.kind {
        // The command name itself: finish it if only one command starts so.
        TokKind::Bare(word) if before.tokens.is_empty() => {
            let names = COMMANDS
                .iter()
                .flat_map(|c| std::iter::once(c.name).chain(c.aliases.iter().copied()));
            let name = unique_prefix(word, names)?;
            let after = remaining(&analyze(&tokens_of(name)));
            non_empty(join(&name[word.len()..], after))
        }
        // A subcommand: the same.
        TokKind::Bare(word) if before.awaiting_subcommand() => {
            let top = before.top?;
            match unique_prefix(word, top.subcommands.iter().map(|s| s.name)) {
                Some(name) => {
                    let sub = top.subcommand(name)?;
                    let synopsis: Vec<String> = sub
                        .args
                        .iter()
                        .map(arg_text)
                        .chain(sub.options.iter().map(option_text))
                        .collect();
                    non_empty(join(&name[word.len()..], non_empty(synopsis.join(" "))))
                }
                None => remaining(&analyze(tokens)).map(|more| format!(" {more}")),
            }
        }
        // An option name: finish it if only one allowed option starts so.
        TokKind::Opt {
            name, value: None, ..
        } if before.pending.is_none() => {
            let spec = before.spec?;
            let allowed = allowed_options(spec, &before).map(|o| o.name);
            let option = spec.option(unique_prefix(name, allowed)?)?;
            let value = option.takes_value().then(|| option.value_text());
            non_empty(join(&option.name[name.len()..], value))
        }
        _ => remaining(&analyze(tokens)).map(|more| format!(" {more}")),
    }
}

/// The one name that starts with `word`, if exactly one does.
fn unique_prefix<'a>(word: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut matching = names.filter(|name| name.starts_with(word));
    match (matching.next(), matching.next()) {
        (Some(name), None) => Some(name),
        _ => None,
    }
}

/// `rest` of a word being typed, then a space and what follows it, if anything does.
fn join(rest: &str, after: Option<String>) -> String {
    match after {
        Some(after) => format!("{rest} {after}"),
        None => rest.to_string(),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// The tokens of a line holding just `words` (a command name).
fn tokens_of(words: &str) -> Vec<Token> {
    match lex(words).into_iter().next() {
        Some(Item::Line { tokens, .. }) => tokens,
        _ => Vec::new(),
    }
}

/// The synopsis of what the analysed line has not given yet.
fn remaining(analysis: &Analysis<'_>) -> Option<String> {
    let top = analysis.top?;
    if let Some(option) = analysis.pending {
        let mut parts = vec![option.value_text()];
        parts.extend(
            analysis
                .spec
                .map(|spec| rest_of(spec, analysis))
                .unwrap_or_default(),
        );
        return non_empty(parts.join(" "));
    }
    if analysis.awaiting_subcommand() {
        let mut forms = Vec::new();
        if top.has_own_form() {
            forms.push(rest_of(top, analysis).join(" "));
        }
        for sub in top.subcommands {
            let args: Vec<String> = sub.args.iter().map(arg_text).collect();
            let options: Vec<String> = sub.options.iter().map(option_text).collect();
            let words: Vec<String> = std::iter::once(sub.name.to_string())
                .chain(args)
                .chain(options)
                .collect();
            forms.push(words.join(" "));
        }
        return non_empty(forms.join(" | "));
    }
    let spec = analysis.spec?;
    non_empty(rest_of(spec, analysis).join(" "))
}

/// Positional arguments not yet given, then options neither given nor excluded.
fn rest_of(spec: &'static CommandSpec, analysis: &Analysis<'_>) -> Vec<String> {
    let args = spec.args.iter().skip(analysis.positionals).map(arg_text);
    let options = allowed_options(spec, analysis).map(|o| {
        let required = match o.presence {
            Presence::Optional => false,
            Presence::Required => true,
            Presence::RequiredUnless(other) => !analysis.used.iter().any(|u| u.name == other),
        };
        if required {
            o.usage()
        } else {
            format!("[{}]", o.usage())
        }
    });
    args.chain(options).collect()
}

fn allowed_options<'a>(
    spec: &'static CommandSpec,
    analysis: &'a Analysis<'_>,
) -> impl Iterator<Item = &'static OptionSpec> + 'a {
    spec.options.iter().filter(|o| {
        !analysis
            .used
            .iter()
            .any(|u| std::ptr::eq(*u, *o) || u.conflicts_with(o))
    })
}

fn arg_text(arg: &ArgSpec) -> String {
    if arg.required {
        arg.name.to_string()
    } else {
        format!("[{}]", arg.name)
    }
}

fn option_text(option: &OptionSpec) -> String {
    format!("[{}]", option.usage())
}
