//! `chat`: a conversation kept in the session, rendered by a chat template, continued, reset
//! and forgotten when another model is loaded.

use crate::common;

use common::{run, session};
use std::path::{Path, PathBuf};

use tritlab_session::lang::{self, Command};
use tritlab_session::{ErrorKind, Execution, LiveEvent, Session};
use tritlab_workbook::{Output, Table};

/// A template for the default model, which ships none; its turns end with `<|endoftext|>`.
fn template(dir: &Path) -> PathBuf {
    let path = dir.join("plain.jinja");
    std::fs::write(
        &path,
        "{% for m in messages %}{{ m.role | upper }}: {{ m.content | trim }}{{ eos_token }}{% endfor %}\
         {% if add_generation_prompt %}ASSISTANT:{% endif %}",
    )
    .unwrap();
    path
}

/// The turn table's value for `key`.
fn turn_value(exec: &Execution, key: &str) -> String {
    let table: &Table = exec
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::Table(t)
                if t.title
                    .as_deref()
                    .is_some_and(|t| t.starts_with("chat turn")) =>
            {
                Some(t)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no turn table in {:?}", exec.outputs));
    table
        .rows
        .iter()
        .find(|r| r[0] == key)
        .map(|r| r[1].clone())
        .unwrap_or_else(|| panic!("no row {key} in {table:?}"))
}

fn turn_title(exec: &Execution) -> Option<String> {
    exec.outputs.iter().find_map(|o| match o {
        Output::Table(t) => t.title.clone(),
        _ => None,
    })
}

#[test]
fn a_model_without_a_template_is_a_usage_error_naming_the_fix() {
    let mut s = session();
    let (exec, _) = run(&mut s, "chat \"Good morrow\"");
    let error = exec.error.as_ref().expect("an error");
    assert_eq!(error.kind(), ErrorKind::Usage);
    let message = error.to_string();
    assert!(message.contains("has no chat template"), "{message}");
    assert!(message.contains("--template FILE"), "{message}");
}

#[test]
fn turns_continue_the_conversation_and_reuse_its_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let t = template(tmp.path());
    let mut s = session();
    let line = format!(
        "chat \"Good morrow, sir.\" --template {} --greedy --max-tokens 6",
        t.display()
    );
    let (first, events) = run(&mut s, &line);
    assert!(first.error.is_none(), "{:?}", first.outputs);
    assert_eq!(turn_title(&first).as_deref(), Some("chat turn 1"));
    assert_eq!(turn_value(&first, "reused from the cache"), "0");
    assert_eq!(turn_value(&first, "template"), "plain.jinja");
    // The reply streams token by token, as `generate` does.
    let streamed = events
        .iter()
        .filter(|e| matches!(e, LiveEvent::Token(_)))
        .count();
    assert_eq!(streamed.to_string(), turn_value(&first, "reply tokens"));
    assert!(matches!(&first.outputs[0], Output::Text(m) if m == "Good morrow, sir."));
    assert!(
        matches!(&first.outputs[1], Output::Trace(t) if t.title.as_deref().is_some_and(|t| t.starts_with("assistant")))
    );

    // The template stays with the conversation; the next turn reads only what is new.
    let (second, _) = run(&mut s, "chat \"And to you.\" --greedy --max-tokens 6");
    assert!(second.error.is_none(), "{:?}", second.outputs);
    assert_eq!(turn_title(&second).as_deref(), Some("chat turn 2"));
    let reused: usize = turn_value(&second, "reused from the cache")
        .parse()
        .unwrap();
    let total: usize = turn_value(&second, "conversation tokens").parse().unwrap();
    let prefilled: usize = turn_value(&second, "prefilled").parse().unwrap();
    assert!(reused > 0 && prefilled < total && reused + prefilled == total);

    // `--reset` starts over; the template given with `--template` went with the conversation.
    let (reset, _) = run(&mut s, "chat --reset");
    assert!(matches!(&reset.outputs[..], [Output::Text(t)] if t == "new conversation"));
    let (again, _) = run(&mut s, "chat \"Hello?\" --greedy --max-tokens 2");
    assert_eq!(again.error.map(|e| e.kind()), Some(ErrorKind::Usage));

    // `--system` starts a new conversation too, opened by the system message.
    let line = format!(
        "chat \"Hello?\" --system \"Thou art a herald.\" --template {} --greedy --max-tokens 2",
        t.display()
    );
    let (fresh, _) = run(&mut s, &line);
    assert!(fresh.error.is_none(), "{:?}", fresh.outputs);
    assert_eq!(turn_title(&fresh).as_deref(), Some("chat turn 1"));

    // Loading a model forgets the conversation.
    let line = format!(
        "load default\nchat \"Who is there?\" --template {} --greedy --max-tokens 2",
        t.display()
    );
    let (reloaded, _) = run(&mut s, &line);
    assert!(reloaded.error.is_none(), "{:?}", reloaded.outputs);
    assert_eq!(turn_title(&reloaded).as_deref(), Some("chat turn 1"));
}

#[test]
fn the_same_seed_gives_the_same_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    let t = template(tmp.path());
    let script = format!(
        "chat \"Speak.\" --template {} --max-tokens 5 --seed 3\nchat \"More.\" --max-tokens 5 --seed 4",
        t.display()
    );
    let replies = |s: &mut Session| -> Vec<String> {
        let (exec, _) = run(s, &script);
        assert!(exec.error.is_none(), "{:?}", exec.outputs);
        exec.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Trace(t) => Some(t.text()),
                _ => None,
            })
            .collect()
    };
    let a = replies(&mut session());
    let b = replies(&mut session());
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
}

#[test]
fn chat_parses_shares_generates_options_and_renders_canonically() {
    let c = |text: &str| match lang::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}")) {
        Command::Chat(c) => c,
        other => panic!("{other:?}"),
    };
    let chat = c("chat hi");
    let Command::Generate(g) = lang::parse("generate hi").unwrap() else {
        unreachable!()
    };
    // The same options with the same defaults.
    assert_eq!(chat.options, g.options());
    assert_eq!(chat.message.as_deref(), Some("hi"));
    assert!(!chat.reset && chat.system.is_none() && chat.template.is_none());

    for text in [
        "chat \"hi\"",
        "chat --reset",
        "chat --system \"Be brief.\"",
        "chat \"hi\" --system \"Be brief.\" --reset --template t.jinja --max-tokens 9 --top-k 3 --seed 2",
        "chat \"hi\" --stop \"\\n\" --greedy",
    ] {
        let command = lang::parse(text).unwrap();
        assert_eq!(command.to_string(), text);
        assert_eq!(lang::parse(&command.to_string()).unwrap(), command);
    }
    // Nothing to say and nothing to start: not a command.
    assert!(lang::parse("chat").is_err());
    assert!(lang::parse("chat --seed 3").is_err());
    // `--greedy` excludes the sampling options here too.
    assert!(lang::parse("chat hi --greedy --temperature 0.5").is_err());
}
