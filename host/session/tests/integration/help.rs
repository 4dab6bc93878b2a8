//! The command table is consistent, its examples parse, and the reference document is current.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tritlab_session::lang::*;

/// Every table entry with its full name (`replay export`) and parent.
fn entries() -> Vec<(String, &'static CommandSpec)> {
    let mut out = Vec::new();
    for command in COMMANDS {
        out.push((command.name.to_string(), command));
        for sub in command.subcommands {
            out.push((format!("{} {}", command.name, sub.name), sub));
        }
    }
    out
}

#[test]
fn every_example_parses_to_its_own_command() {
    for (title, spec) in entries() {
        for example in spec.examples {
            let command = parse(example.input).unwrap_or_else(|e| {
                panic!(
                    "example of `{title}` does not parse:\n{}",
                    e.render(example.input)
                )
            });
            assert_eq!(
                command.id(),
                spec.id,
                "example {:?} of `{title}`",
                example.input
            );
        }
    }
}

#[test]
fn every_command_has_an_example() {
    for command in COMMANDS {
        let examples = command.examples.len()
            + command
                .subcommands
                .iter()
                .map(|s| s.examples.len())
                .sum::<usize>();
        assert!(examples > 0, "`{}` has no example", command.name);
        for sub in command.subcommands {
            assert!(
                !sub.examples.is_empty(),
                "`{} {}` has no example",
                command.name,
                sub.name
            );
        }
    }
}

#[test]
fn names_are_unique() {
    let mut seen = BTreeSet::new();
    for name in COMMANDS
        .iter()
        .flat_map(|c| std::iter::once(c.name).chain(c.aliases.iter().copied()))
    {
        assert!(seen.insert(name), "`{name}` is defined twice");
    }
    for (title, spec) in entries() {
        let mut names = BTreeSet::new();
        for name in spec
            .args
            .iter()
            .map(|a| a.name)
            .chain(spec.options.iter().map(|o| o.name))
        {
            assert!(names.insert(name), "`{title}` defines `{name}` twice");
        }
        for option in spec.options {
            for other in option.conflicts.iter().chain(match &option.presence {
                Presence::RequiredUnless(other) => std::slice::from_ref(other),
                _ => &[],
            }) {
                assert!(
                    spec.option(other).is_some(),
                    "`{title} --{}` names unknown `--{other}`",
                    option.name
                );
            }
        }
    }
}

#[test]
fn synopses_name_exactly_the_arguments_and_options() {
    for (title, spec) in entries() {
        let text = spec.synopsis.join(" ");
        let words: BTreeSet<&str> = text
            .split(|c: char| c.is_whitespace() || "[]|".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for line in spec.synopsis {
            let starts = std::iter::once(title.as_str()).chain(spec.aliases.iter().copied());
            assert!(
                starts.into_iter().any(|s| line.starts_with(s)),
                "`{title}`: synopsis {line:?}"
            );
        }
        for arg in spec.args {
            // A choice is shown by its words (`log plot loss|flips|trits`).
            let shown = match arg.kind {
                ValueKind::Choice(names) => names.join("|"),
                _ => arg.name.to_string(),
            };
            assert!(text.contains(&shown), "`{title}` synopsis lacks {shown}");
        }
        for option in spec.options {
            let flag = option.flag_text();
            assert!(
                words.contains(flag.as_str()),
                "`{title}` synopsis lacks {flag}"
            );
        }
        for word in words.iter().filter(|w| w.starts_with("--")) {
            assert!(
                spec.option(&word[2..]).is_some(),
                "`{title}` synopsis names unknown {word}"
            );
        }
    }
}

#[test]
fn defaults_are_valid_values_and_reach_the_commands() {
    // `generate` left to its defaults takes them from the table.
    let Command::Generate(g) = parse("generate x").unwrap() else {
        panic!()
    };
    let generate = find_command("generate").unwrap();
    let default = |name: &str| generate.option(name).and_then(|o| o.default).unwrap();
    assert_eq!(g.max_tokens.to_string(), default("max-tokens"));
    assert_eq!(g.seed.to_string(), default("seed"));
    assert_eq!(
        g.temperature,
        default("temperature").parse::<f32>().unwrap()
    );
    // Every default of every option is accepted when typed explicitly.
    for (title, spec) in entries() {
        for option in spec.options.iter().filter(|o| o.default.is_some()) {
            let line = minimal(&title, spec)
                + &format!(" --{}={}", option.name, option.default.unwrap_or(""));
            parse(&line).unwrap_or_else(|e| panic!("{}", e.render(&line)));
        }
    }
}

/// The shortest valid command line for a table entry, to add an option to.
fn minimal(title: &str, spec: &CommandSpec) -> String {
    let mut line = title.to_string();
    for arg in spec.args {
        line.push(' ');
        line.push_str(match arg.kind {
            ValueKind::Int { .. } | ValueKind::Step => "1",
            ValueKind::Choice(names) => names[0],
            ValueKind::Command => "info",
            _ => "x",
        });
    }
    for option in spec.options {
        if matches!(
            option.presence,
            Presence::Required | Presence::RequiredUnless(_)
        ) {
            let value = match option.kind {
                ValueKind::Choice(names) => names[0],
                _ => "x",
            };
            line.push_str(&format!(" --{} {value}", option.name));
        }
    }
    line
}

#[test]
fn help_covers_every_command() {
    let index = help_index();
    for command in COMMANDS {
        let listed = index
            .lines()
            .any(|l| l.trim_start().starts_with(command.name) && l.ends_with(command.summary));
        assert!(listed, "the index lacks `{}`", command.name);
        let help = help_command(command.name).unwrap();
        for option in command.options {
            assert!(
                help.contains(&option.usage()),
                "help {} lacks {}",
                command.name,
                option.usage()
            );
        }
        for example in command.examples {
            assert!(
                help.contains(example.input.lines().next().unwrap_or("")),
                "help {}",
                command.name
            );
        }
    }
    assert!(help_command("generate").unwrap().contains("default 1069"));
    assert!(help_command("train").unwrap().contains("only with --steps"));
}

#[test]
fn reference_document_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/COMMANDS.md");
    let expected = reference_markdown();
    if std::env::var_os("TRITLAB_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/COMMANDS.md differs from the command table; regenerate it with\n\
         tritlab help --markdown > docs/COMMANDS.md, or\n\
         TRITLAB_UPDATE_DOCS=1 cargo test --release -p tritlab-session --test integration help"
    );
}
