//! The canonical text of a command: what `Display` writes.
//!
//! Canonical means: arguments first, options in table order, an option written only when it
//! differs from the table's default, text quoted only where a bare word would read differently.
//! Parsing the canonical text gives the same command back (a property test checks it), so a
//! session can record what it ran and replay it.

use std::fmt;
use std::path::Path;

use super::ast::{
    Chat, Command, Eval, Generate, GenerationOptions, Log, LogitsInput, ModelRef, Plugin, Replay,
    TokenizerSource, Train,
};
use super::lexer::{is_plain_word, quote, word_or_quoted, RUST_END, RUST_KEYWORD};
use super::spec::CommandId;
use super::table::spec_of;
use super::value::{check, Value};

/// Builds one command line.
struct Line {
    id: CommandId,
    out: String,
}

impl Line {
    fn new(words: &str, id: CommandId) -> Self {
        Line {
            id,
            out: words.to_string(),
        }
    }

    fn push(&mut self, text: &str) {
        self.out.push(' ');
        self.out.push_str(text);
    }

    /// Free text: always quoted, so prompts read as prompts.
    fn text(&mut self, text: &str) {
        self.push(&quote(text));
    }

    /// A name or value that may stand bare.
    fn word(&mut self, text: &str) {
        self.push(&word_or_quoted(text));
    }

    fn path(&mut self, path: &Path) {
        self.word(&path.to_string_lossy());
    }

    /// `default` or a model path.
    fn model(&mut self, model: &ModelRef) {
        match model {
            ModelRef::Default => self.push("default"),
            // A bare `default` would be the keyword.
            ModelRef::Path(path) if path.as_os_str() == "default" => self.text("default"),
            ModelRef::Path(path) => self.path(path),
        }
    }

    /// `--name VALUE`, unless `value` is the table's default for the option.
    fn option(&mut self, name: &str, written: String, value: Value) {
        let default = spec_of(self.id)
            .and_then(|spec| spec.option(name))
            .and_then(|o| check(&o.kind, o.default?, false).ok());
        if default.as_ref() != Some(&value) {
            self.push(&format!("--{name}"));
            self.push(&written);
        }
    }

    fn int(&mut self, name: &str, value: u64) {
        self.option(name, value.to_string(), Value::Int(value));
    }

    fn float(&mut self, name: &str, value: f32) {
        self.option(name, value.to_string(), Value::Float(value));
    }

    fn optional_word(&mut self, name: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(&format!("--{name}"));
            self.word(value);
        }
    }

    fn flag(&mut self, name: &str, on: bool) {
        if on {
            self.push(&format!("--{name}"));
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id();
        let line = match self {
            Command::Help(help) => {
                let mut line = Line::new("help", id);
                if let Some(command) = &help.command {
                    line.word(command);
                }
                line
            }
            Command::Load(load) => {
                let mut line = Line::new("load", id);
                line.model(&load.model);
                line.option(
                    "head-precision",
                    load.head.name().into(),
                    Value::Choice(load.head.name()),
                );
                line.option(
                    "packing",
                    load.packing.name().into(),
                    Value::Choice(load.packing.name()),
                );
                line
            }
            Command::Eval(Eval::Ppl(e)) => {
                let mut line = Line::new("eval ppl", id);
                line.push("--data");
                line.path(&e.data);
                line.int("ctx", u64::from(e.ctx));
                if let Some(stride) = e.stride {
                    line.push("--stride");
                    line.push(&stride.to_string());
                }
                if let Some(windows) = e.windows {
                    line.push("--windows");
                    line.push(&windows.to_string());
                }
                if let Some(model) = &e.compare {
                    line.push("--compare");
                    line.model(model);
                }
                line.option(
                    "compare-head",
                    e.compare_head.name().into(),
                    Value::Choice(e.compare_head.name()),
                );
                line
            }
            Command::Info => Line::new("info", id),
            Command::Layers => Line::new("layers", id),
            Command::Verify(verify) => {
                let mut line = Line::new("verify", id);
                if let Some(path) = &verify.path {
                    line.path(path);
                }
                line
            }
            Command::Show(show) => {
                let mut line = Line::new("show", id);
                line.word(&show.tensor);
                line.optional_word("with", &show.with);
                if let Some(step) = show.step {
                    line.int("step", step);
                }
                line
            }
            Command::Export(export) => {
                let mut line = Line::new("export", id);
                line.path(&export.out);
                line.option(
                    "to",
                    export.to.name().into(),
                    Value::Choice(export.to.name()),
                );
                line.option(
                    "embed-type",
                    export.embed_type.name().into(),
                    Value::Choice(export.embed_type.name()),
                );
                line
            }
            Command::Synth(synth) => {
                let mut line = Line::new("synth", id);
                line.push("--shape");
                line.push(synth.shape.name());
                line.int("seed", synth.seed);
                line.push("--out");
                line.path(&synth.out);
                line
            }
            Command::Generate(generate) => generate_line(generate),
            Command::Chat(chat) => chat_line(chat),
            Command::Logits(logits) => {
                let mut line = Line::new("logits", id);
                match &logits.input {
                    LogitsInput::Prompt(prompt) => line.text(prompt),
                    LogitsInput::Ids(ids) => {
                        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
                        line.push("--ids");
                        line.push(&list.join(","));
                    }
                }
                line.int("top", u64::from(logits.top));
                if let Some(out) = &logits.out {
                    line.push("--out");
                    line.path(out);
                }
                line
            }
            Command::Bench(bench) => {
                let mut line = Line::new("bench", id);
                line.int("prompt", u64::from(bench.prompt));
                line.int("tokens", u64::from(bench.tokens));
                line.int("repeat", u64::from(bench.repeat));
                line.int("seed", bench.seed);
                line
            }
            Command::Train(train) => train_line(train),
            Command::Log(Log::Steps { run }) => {
                let mut line = Line::new("log", id);
                if let Some(run) = run {
                    // A bare word without a slash could be read as a (misspelt) subcommand.
                    let text = run.to_string_lossy();
                    if text.contains('/') && is_plain_word(&text) {
                        line.push(&text);
                    } else {
                        line.text(&text);
                    }
                }
                line
            }
            Command::Log(Log::Show { step }) => {
                let mut line = Line::new("log show", id);
                line.push(&step.to_string());
                line
            }
            Command::Log(Log::Plot { series }) => {
                let mut line = Line::new("log plot", id);
                line.push(series.name());
                line
            }
            Command::Replay(Replay::Open { run }) => {
                let mut line = Line::new("replay open", id);
                line.path(run);
                line
            }
            Command::Replay(Replay::Verify { from, to, device }) => {
                let mut line = Line::new("replay verify", id);
                if let Some(from) = from {
                    line.int("from", *from);
                }
                if let Some(to) = to {
                    line.int("to", *to);
                }
                if let Some(device) = device {
                    line.push("--device");
                    line.push(&device.to_string());
                }
                line
            }
            Command::Replay(Replay::Export { step, dir }) => {
                let mut line = Line::new("replay export", id);
                line.push(&step.to_string());
                line.path(dir);
                line
            }
            Command::Seek(seek) => {
                let mut line = Line::new("seek", id);
                line.push(&seek.step.to_string());
                line
            }
            Command::Step(step) => counted("step", id, step.count),
            Command::Back(back) => counted("back", id, back.count),
            Command::Plugins => Line::new("plugins", id),
            Command::Plugin(Plugin::Load { path }) => {
                let mut line = Line::new("plugin load", id);
                line.path(path);
                line
            }
            Command::Plugin(Plugin::Enable { name }) => words("plugin enable", id, &[name]),
            Command::Plugin(Plugin::Disable { name }) => words("plugin disable", id, &[name]),
            Command::Plugin(Plugin::Set { name, key, value }) => {
                words("plugin set", id, &[name, key, value])
            }
            Command::Check(check) => {
                let mut line = Line::new("check", id);
                line.word(&check.plugin);
                if let Some(on) = check.on {
                    line.push("--on");
                    line.push(on.name());
                }
                line
            }
            Command::Clear => Line::new("clear", id),
            Command::Quit => Line::new("quit", id),
            Command::Rust(code) => return f.write_str(&rust_text(code)),
        };
        f.write_str(&line.out)
    }
}

/// A command followed by names or values that may stand bare.
fn words(command: &str, id: CommandId, args: &[&str]) -> Line {
    let mut line = Line::new(command, id);
    for arg in args {
        line.word(arg);
    }
    line
}

fn counted(word: &str, id: CommandId, count: u64) -> Line {
    let mut line = Line::new(word, id);
    if count != 1 {
        line.push(&count.to_string());
    }
    line
}

fn generate_line(g: &Generate) -> Line {
    let mut line = Line::new("generate", CommandId::Generate);
    line.text(&g.prompt);
    generation_options(&mut line, &g.options());
    line
}

fn chat_line(c: &Chat) -> Line {
    let mut line = Line::new("chat", CommandId::Chat);
    if let Some(message) = &c.message {
        line.text(message);
    }
    if let Some(system) = &c.system {
        line.push("--system");
        line.text(system);
    }
    line.flag("reset", c.reset);
    if let Some(template) = &c.template {
        line.push("--template");
        line.path(template);
    }
    generation_options(&mut line, &c.options);
    line
}

/// The options `generate` and `chat` share, in table order.
fn generation_options(line: &mut Line, o: &GenerationOptions) {
    line.int("max-tokens", u64::from(o.max_tokens));
    line.float("temperature", o.temperature);
    if let Some(k) = o.top_k {
        line.int("top-k", u64::from(k));
    }
    if let Some(p) = o.top_p {
        line.float("top-p", p);
    }
    line.int("seed", o.seed);
    line.optional_word("tracer", &o.tracer);
    if let Some(stop) = &o.stop {
        line.push("--stop");
        line.text(stop);
    }
    line.flag("greedy", o.greedy);
}

fn train_line(train: &Train) -> Line {
    let mut line = Line::new("train", CommandId::Train);
    match train {
        Train::Resume(resume) => {
            line.push("--resume");
            line.path(&resume.run);
            if let Some(steps) = resume.steps {
                // With `--resume` there is no default to leave out.
                line.push("--steps");
                line.push(&steps.to_string());
            }
            if !resume.devices.is_empty() {
                let list: Vec<String> = resume.devices.iter().map(ToString::to_string).collect();
                line.push("--devices");
                line.push(&list.join(","));
            }
        }
        Train::Start(t) => {
            line.push("--data");
            line.path(&t.data);
            if let Some(val) = &t.val {
                line.push("--val");
                line.path(val);
            }
            line.option(
                "preset",
                t.preset.name().into(),
                Value::Choice(t.preset.name()),
            );
            match &t.tokenizer {
                TokenizerSource::Default => {}
                TokenizerSource::File(path) => {
                    line.push("--tokenizer");
                    line.path(path);
                }
                TokenizerSource::Train { vocab } => line.int("train-tokenizer", u64::from(*vocab)),
            }
            line.int("steps", t.steps);
            line.int("seq", u64::from(t.seq));
            line.int("batch", u64::from(t.batch));
            line.float("lr", t.lr);
            line.int("warmup", t.warmup);
            line.int("seed", t.seed);
            line.flag("twin", t.twin);
            line.option(
                "quant",
                t.quant.name().into(),
                Value::Choice(t.quant.name()),
            );
            line.int("checkpoint-every", t.checkpoint_every);
            let shape = [
                ("layers", t.shape.layers),
                ("hidden", t.shape.hidden),
                ("intermediate", t.shape.intermediate),
                ("heads", t.shape.heads),
                ("kv-heads", t.shape.kv_heads),
            ];
            for (name, value) in shape {
                if let Some(v) = value {
                    line.push(&format!("--{name}"));
                    line.push(&v.to_string());
                }
            }
            line.float("val-fraction", t.val_fraction);
            line.float("min-lr-ratio", t.min_lr_ratio);
            line.float("weight-decay", t.weight_decay);
            line.float("clip", t.clip);
            line.flag("projection", t.projection);
            line.int("keep-checkpoints", t.keep_checkpoints);
            line.int("eval-every", t.eval_every);
            line.int("eval-sequences", u64::from(t.eval_sequences));
            if t.devices.is_empty() {
                let device = t.device.to_string();
                line.option("device", device.clone(), Value::Text(device));
            } else {
                let list: Vec<String> = t.devices.iter().map(ToString::to_string).collect();
                line.push("--devices");
                line.push(&list.join(","));
            }
            line.int("micro-batches", u64::from(t.micro_batches));
            line.option(
                "matmul",
                t.matmul.name().into(),
                Value::Choice(t.matmul.name()),
            );
            line.option(
                "kernels",
                t.kernels.name().into(),
                Value::Choice(t.kernels.name()),
            );
            line.push("--out");
            line.path(&t.out);
        }
    }
    line
}

/// One line when the code fits on one and survives trimming; a block otherwise.
fn rust_text(code: &str) -> String {
    if !code.is_empty() && !code.contains('\n') && code.trim() == code {
        format!("{RUST_KEYWORD} {code}")
    } else {
        format!("{RUST_KEYWORD}\n{code}\n{RUST_END}")
    }
}

/// The command line that `words` stand for, each word one argument as a shell passes them
/// (`["generate", "To be", "--seed", "7"]` → `generate "To be" --seed 7`): options stay options,
/// anything else is quoted where a bare word would read differently. This is how the
/// `tritlab` subcommands hand their arguments to the command language, so that the parser,
/// with the table's options, defaults and checks, is the only one.
pub fn line_from_words<S: AsRef<str>>(words: &[S]) -> String {
    let mut line = String::new();
    for word in words {
        let word = word.as_ref();
        if !line.is_empty() {
            line.push(' ');
        }
        let option = word
            .strip_prefix("--")
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic()));
        match option.map(|rest| rest.split_once('=')) {
            Some(Some((name, value))) => {
                line.push_str("--");
                line.push_str(name);
                line.push('=');
                line.push_str(&word_or_quoted(value));
            }
            Some(None) => line.push_str(word),
            None => line.push_str(&word_or_quoted(word)),
        }
    }
    line
}
