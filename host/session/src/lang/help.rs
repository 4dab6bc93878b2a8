//! `help` text and the Markdown language reference, both written from the command table.

use std::fmt::Write as _;

use super::spec::{ArgSpec, CommandSpec, OptionSpec, Presence, Topic};
use super::table::{find_command, COMMANDS};

/// The `help` index: every command with its summary, grouped by topic.
pub fn help_index() -> String {
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::from("Commands (`help COMMAND` explains one):\n");
    for topic in Topic::ALL {
        let _ = write!(out, "\n{}\n", topic.title());
        for command in COMMANDS.iter().filter(|c| c.topic == topic) {
            let _ = writeln!(out, "  {:width$}  {}", command.name, command.summary);
        }
    }
    out
}

/// `help COMMAND`: synopsis, description, arguments, options and examples of a command and its
/// subcommands. `None` when no command has that name (aliases count).
pub fn help_command(name: &str) -> Option<String> {
    let command = find_command(name)?;
    let mut out = String::new();
    write_command(&mut out, command, None);
    for sub in command.subcommands {
        out.push('\n');
        write_command(&mut out, sub, Some(command));
    }
    Some(out.trim_end().to_string() + "\n")
}

fn write_command(out: &mut String, spec: &CommandSpec, parent: Option<&CommandSpec>) {
    let title = match parent {
        Some(parent) => format!("{} {}", parent.name, spec.name),
        None => spec.name.to_string(),
    };
    let _ = writeln!(out, "{title} — {}", spec.summary);
    if !spec.synopsis.is_empty() {
        out.push('\n');
        for synopsis in spec.synopsis {
            for (i, line) in wrap_synopsis(synopsis, WIDTH - 2).into_iter().enumerate() {
                let indent = if i == 0 { "  " } else { "      " };
                let _ = writeln!(out, "{indent}{line}");
            }
        }
    }
    if !spec.description.is_empty() {
        out.push('\n');
        for line in wrap(spec.description, WIDTH - 2) {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !spec.aliases.is_empty() {
        let _ = writeln!(out, "\n  Also: {}", spec.aliases.join(", "));
    }
    let rows: Vec<(String, String)> = spec
        .args
        .iter()
        .map(|a| (a.name.to_string(), arg_description(a)))
        .chain(
            spec.options
                .iter()
                .map(|o| (o.usage(), option_description(o, spec.options))),
        )
        .collect();
    if !rows.is_empty() {
        let width = rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let text_width = WIDTH.saturating_sub(width + 4).max(30);
        out.push('\n');
        for (left, right) in rows {
            for (i, line) in wrap(&right, text_width).into_iter().enumerate() {
                let left = if i == 0 { left.as_str() } else { "" };
                let _ = writeln!(out, "  {left:width$}  {line}");
            }
        }
    }
    if !spec.examples.is_empty() {
        out.push_str("\n  Examples:\n");
        for example in spec.examples {
            for line in example.input.lines() {
                let _ = writeln!(out, "    {line}");
            }
            if !example.note.is_empty() {
                let _ = writeln!(out, "      # {}", example.note);
            }
        }
    }
}

/// Terminal help is wrapped to this many columns.
const WIDTH: usize = 96;

/// Wraps a synopsis at blanks outside brackets, so `[--top-k K]` never breaks in two.
fn wrap_synopsis(text: &str, width: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let mut word = String::new();
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == ' ' && depth == 0 {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in words {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Greedy word wrap at `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn arg_description(arg: &ArgSpec) -> String {
    let mut text = format!("{} ({}", arg.summary, arg.kind.describe());
    if let Some(default) = arg.default {
        let _ = write!(text, "; default {default}");
    } else if !arg.required {
        text.push_str("; optional");
    }
    text.push(')');
    text
}

fn option_description(option: &OptionSpec, siblings: &[OptionSpec]) -> String {
    let mut notes = Vec::new();
    if option.takes_value() && !matches!(option.kind, super::spec::ValueKind::Choice(_)) {
        notes.push(option.kind.describe());
    }
    if let Some(default) = option.default {
        notes.push(format!("default {default}"));
    }
    match option.presence {
        Presence::Optional => {}
        Presence::Required => notes.push("required".into()),
        Presence::RequiredUnless(other) => notes.push(format!("required unless --{other}")),
    }
    if !option.conflicts.is_empty() {
        // Say whichever list is shorter: what the option excludes, or what it still allows.
        let allowed: Vec<String> = siblings
            .iter()
            .filter(|o| o.name != option.name && !option.conflicts.contains(&o.name))
            .map(|o| format!("--{}", o.name))
            .collect();
        if allowed.len() < option.conflicts.len() {
            notes.push(format!("only with {}", allowed.join(", ")));
        } else {
            let list: Vec<String> = option.conflicts.iter().map(|c| format!("--{c}")).collect();
            notes.push(format!("not with {}", list.join(", ")));
        }
    }
    if notes.is_empty() {
        option.summary.to_string()
    } else {
        format!("{} ({})", option.summary, notes.join("; "))
    }
}

/// The language reference, `docs/COMMANDS.md`: the lexical rules, then every command from the
/// table. A test keeps the file in step with this function.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str(REFERENCE_INTRO);
    out.push_str("\n## Commands by topic\n\n");
    for topic in Topic::ALL {
        let _ = write!(out, "- **{}**:", topic.title());
        let names: Vec<String> = COMMANDS
            .iter()
            .filter(|c| c.topic == topic)
            .map(|c| format!(" [`{}`](#{})", c.name, anchor(c.name)))
            .collect();
        let _ = writeln!(out, "{}", names.join(","));
    }
    for topic in Topic::ALL {
        let _ = write!(out, "\n## {}\n", topic.title());
        for command in COMMANDS.iter().filter(|c| c.topic == topic) {
            markdown_command(&mut out, command, None);
            for sub in command.subcommands {
                markdown_command(&mut out, sub, Some(command));
            }
        }
    }
    out
}

/// The anchor GitHub gives a heading made of `name`.
fn anchor(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn markdown_command(out: &mut String, spec: &CommandSpec, parent: Option<&CommandSpec>) {
    let (heading, title) = match parent {
        Some(parent) => ("####", format!("{} {}", parent.name, spec.name)),
        None => ("###", spec.name.to_string()),
    };
    let _ = write!(
        out,
        "\n{heading} {title}\n\n{}.\n",
        capitalise(spec.summary)
    );
    if !spec.synopsis.is_empty() {
        out.push_str("\n```text\n");
        for synopsis in spec.synopsis {
            for (i, line) in wrap_synopsis(synopsis, 96).into_iter().enumerate() {
                let indent = if i == 0 { "" } else { "    " };
                let _ = writeln!(out, "{indent}{line}");
            }
        }
        out.push_str("```\n");
    }
    if !spec.description.is_empty() {
        let _ = write!(out, "\n{}\n", wrap(spec.description, 100).join("\n"));
    }
    if !spec.aliases.is_empty() {
        let list: Vec<String> = spec.aliases.iter().map(|a| format!("`{a}`")).collect();
        let _ = write!(out, "\nAlso typed as {}.\n", list.join(", "));
    }
    if !spec.args.is_empty() || !spec.options.is_empty() {
        out.push_str("\n| argument or option | meaning |\n| --- | --- |\n");
        for arg in spec.args {
            let _ = writeln!(
                out,
                "| `{}` | {} |",
                cell(arg.name),
                cell(&arg_description(arg))
            );
        }
        for option in spec.options {
            let _ = writeln!(
                out,
                "| `{}` | {} |",
                cell(&option.usage()),
                cell(&option_description(option, spec.options))
            );
        }
    }
    if !spec.examples.is_empty() {
        out.push_str("\n```text\n");
        for example in spec.examples {
            out.push_str(example.input);
            if !example.note.is_empty() {
                let _ = write!(out, "    # {}", example.note);
            }
            out.push('\n');
        }
        out.push_str("```\n");
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Text safe inside a Markdown table cell, code spans included (GitHub reads `\|` there too).
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

const REFERENCE_INTRO: &str = "\
# The tritlab command language

<!-- Written from the command table in host/session/src/lang/table.rs; the tests fail when this
file and the table differ. Regenerate with
TRITLAB_UPDATE_DOCS=1 cargo test -p tritlab-session --test integration help. -->

The REPL and the workbench take the same commands, one per line. `help` lists them and
`help COMMAND` explains one; both are written from the same table as this page.

## Syntax

- **Words** are separated by blanks. A word that is a number (`64`, `-3`, `0.8`, `1e-3`) is still
  just a word until a command says what it expects there.
- **Strings** are written in double quotes and may hold blanks and span lines. Inside them
  `\\\"`, `\\\\`, `\\n` and `\\t` stand for a quote, a backslash, a newline and a tab; any other
  escape is an error. A backslash at the end of a line inside a string joins the lines.
- **Options** come after the command (and subcommand), in any order, usually after the
  arguments: `--name value` or `--name=value`; flags take no value (`--greedy`). An option given
  twice, an unknown option, options that exclude each other, a missing or mistyped value and a
  value out of range are errors that point at the offending word. A word with a single leading
  dash that is not a number (`-seed`) is taken for a mistyped option; quote text that starts
  with `-`.
- **Lists** are comma-separated with no blanks: `--ids 1,17,300`.
- **Comments** start with `#` at the beginning of a word and run to the end of the line.
- **Continuation**: a line ending in `\\` continues on the next.
- **Keywords are bare**: `load default` loads the default model, `load \"default\"` a directory
  named `default`; `log show` is a subcommand, `log ./show` a run directory.
- **Rust**: a line starting with `:rust ` is a Rust snippet (the rest of the line, verbatim); a
  line that is exactly `:rust` starts a snippet of several lines that ends at a line that is
  exactly `:end`.
- Paths are taken as typed; a leading `~` stands for the home directory.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_every_command_under_its_topic() {
        let index = help_index();
        for command in COMMANDS {
            assert!(index.contains(command.name), "{}", command.name);
        }
        let model = index.find("\nModel\n").unwrap();
        let session = index.find("\nSession\n").unwrap();
        assert!(model < index.find("  load").unwrap() && index.find("  quit").unwrap() > session);
    }

    #[test]
    fn command_help_shows_defaults_and_subcommands() {
        let generate = help_command("generate").unwrap();
        assert!(generate.contains("--max-tokens N"));
        assert!(generate.contains("default 64"));
        let log = help_command("log").unwrap();
        assert!(log.contains("log show STEP") && log.contains("log plot loss|flips|trits"));
        assert_eq!(help_command("exit"), help_command("quit"));
        assert_eq!(help_command("nope"), None);
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert!(wrap("", 10).is_empty());
    }
}
