//! Moving checked values into typed commands. The only place that knows which field an option
//! fills.

use super::ast::{
    Back, Bench, Chat, Check, CheckTarget, Command, EmbedType, Eval, EvalPpl, Export, ExportFormat,
    Generate, GenerationOptions, HeadPrecision, Help, Load, Log, Logits, LogitsInput, Packing,
    PlotSeries, Plugin, Preset, ProductKernels, Replay, ScaleGranularity, Seek, Show, Step, Synth,
    SynthShape, TokenizerSource, Train, TrainResume, TrainShape, TrainStart, Verify,
};
use super::collect::Matched;
use super::error::{ParseError, ParseErrorKind};
use super::spec::CommandId;
use super::value::Value;

/// Moves checked values into the typed command.
pub(super) fn build(m: &Matched<'_>) -> Result<Command, ParseError> {
    Ok(match m.spec.id {
        CommandId::Help => Command::Help(Help {
            command: m.text("COMMAND"),
        }),
        CommandId::Load => Command::Load(Load {
            model: m.need(
                match m.value("default|PATH") {
                    Some(Value::Model(model)) => Some(model),
                    _ => None,
                },
                "default|PATH",
            )?,
            head: m.need(
                m.choice("head-precision", HeadPrecision::from_name),
                "--head-precision",
            )?,
            packing: m.need(m.choice("packing", Packing::from_name), "--packing")?,
        }),
        CommandId::Info => Command::Info,
        CommandId::Layers => Command::Layers,
        CommandId::Verify => Command::Verify(Verify {
            path: m.path("PATH"),
        }),
        CommandId::Show => Command::Show(Show {
            tensor: m.need(m.text("TENSOR"), "TENSOR")?,
            with: m.text("with"),
            step: m.int("step"),
        }),
        CommandId::Export => {
            let to = m.need(m.choice("to", ExportFormat::from_name), "--to")?;
            let embed_type =
                m.need(m.choice("embed-type", EmbedType::from_name), "--embed-type")?;
            // Typing the default changes nothing, so only another type is refused.
            if to == ExportFormat::Hf && embed_type != EmbedType::F16 {
                return Err(m.error(
                    ParseErrorKind::ConflictingOptions,
                    "embed-type",
                    "`--embed-type` is for the GGUF formats; `--to hf` keeps the checkpoint's \
                     own embedding"
                        .into(),
                ));
            }
            Command::Export(Export {
                out: m.need(m.path("OUT"), "OUT")?,
                to,
                embed_type,
            })
        }
        CommandId::Synth => Command::Synth(Synth {
            shape: m.need(m.choice("shape", SynthShape::from_name), "--shape")?,
            seed: m.need(m.int("seed"), "--seed")?,
            out: m.need(m.path("out"), "--out")?,
        }),
        CommandId::Generate => {
            let o = generation_options(m)?;
            Command::Generate(Generate {
                prompt: m.need(m.text("PROMPT"), "PROMPT")?,
                max_tokens: o.max_tokens,
                temperature: o.temperature,
                top_k: o.top_k,
                top_p: o.top_p,
                seed: o.seed,
                tracer: o.tracer,
                stop: o.stop,
                greedy: o.greedy,
            })
        }
        CommandId::Chat => {
            let chat = Chat {
                message: m.text("MESSAGE"),
                system: m.text("system"),
                reset: m.flag("reset"),
                template: m.path("template"),
                options: generation_options(m)?,
            };
            if chat.message.is_none() && !chat.reset && chat.system.is_none() {
                return Err(m.error(
                    ParseErrorKind::MissingArgument,
                    "",
                    "`chat` needs a MESSAGE, or `--reset` or `--system TEXT` to start a new \
                     conversation"
                        .into(),
                ));
            }
            Command::Chat(chat)
        }
        CommandId::Logits => {
            let input = match (m.text("PROMPT"), m.value("ids")) {
                (Some(_), Some(_)) => {
                    return Err(m.error(
                        ParseErrorKind::ConflictingOptions,
                        "ids",
                        "give either a PROMPT or `--ids`, not both".into(),
                    ))
                }
                (Some(prompt), None) => LogitsInput::Prompt(prompt),
                (None, Some(Value::Ids(ids))) => LogitsInput::Ids(ids),
                _ => {
                    return Err(m.error(
                        ParseErrorKind::MissingArgument,
                        "",
                        "`logits` needs a PROMPT or `--ids N,N,...`".into(),
                    ))
                }
            };
            Command::Logits(Logits {
                input,
                top: m.need(m.u32("top"), "--top")?,
                out: m.path("out"),
            })
        }
        CommandId::Bench => Command::Bench(Bench {
            prompt: m.need(m.u32("prompt"), "--prompt")?,
            tokens: m.need(m.u32("tokens"), "--tokens")?,
            repeat: m.need(m.u32("repeat"), "--repeat")?,
            seed: m.need(m.int("seed"), "--seed")?,
        }),
        CommandId::Train => build_train(m)?,
        CommandId::Log => Command::Log(Log::Steps {
            run: m.path("RUN_DIR"),
        }),
        CommandId::LogShow => Command::Log(Log::Show {
            step: m.need(m.int("STEP"), "STEP")?,
        }),
        CommandId::LogPlot => Command::Log(Log::Plot {
            series: m.need(m.choice("SERIES", PlotSeries::from_name), "SERIES")?,
        }),
        CommandId::ReplayOpen => Command::Replay(Replay::Open {
            run: m.need(m.path("RUN_DIR"), "RUN_DIR")?,
        }),
        CommandId::ReplayVerify => {
            let (from, to) = (m.int("from"), m.int("to"));
            if let (Some(a), Some(b)) = (from, to) {
                if a > b {
                    return Err(m.error(
                        ParseErrorKind::OutOfRange,
                        "to",
                        format!("`--to` ({b}) comes before `--from` ({a})"),
                    ));
                }
            }
            let device = match m.given("device") {
                Some(_) => Some(device(m)?),
                None => None,
            };
            Command::Replay(Replay::Verify { from, to, device })
        }
        CommandId::ReplayExport => Command::Replay(Replay::Export {
            step: m.need(m.int("STEP"), "STEP")?,
            dir: m.need(m.path("DIR"), "DIR")?,
        }),
        CommandId::EvalPpl => Command::Eval(Eval::Ppl(EvalPpl {
            data: m.need(m.path("data"), "--data")?,
            ctx: m.need(m.u32("ctx"), "--ctx")?,
            stride: m.u32("stride"),
            compare: match m.value("compare") {
                Some(Value::Model(model)) => Some(model),
                _ => None,
            },
            compare_head: m.need(
                m.choice("compare-head", HeadPrecision::from_name),
                "--compare-head",
            )?,
            windows: m.u32("windows"),
        })),
        CommandId::Seek => Command::Seek(Seek {
            step: m.need(m.int("STEP"), "STEP")?,
        }),
        CommandId::Step => Command::Step(Step {
            count: m.need(m.int("N"), "N")?,
        }),
        CommandId::Back => Command::Back(Back {
            count: m.need(m.int("N"), "N")?,
        }),
        CommandId::Plugins => Command::Plugins,
        CommandId::PluginLoad => Command::Plugin(Plugin::Load {
            path: m.need(m.path("PATH"), "PATH")?,
        }),
        CommandId::PluginEnable => Command::Plugin(Plugin::Enable {
            name: m.need(m.text("NAME"), "NAME")?,
        }),
        CommandId::PluginDisable => Command::Plugin(Plugin::Disable {
            name: m.need(m.text("NAME"), "NAME")?,
        }),
        CommandId::PluginSet => Command::Plugin(Plugin::Set {
            name: m.need(m.text("NAME"), "NAME")?,
            key: m.need(m.text("KEY"), "KEY")?,
            value: m.need(m.text("VALUE"), "VALUE")?,
        }),
        CommandId::Check => Command::Check(Check {
            plugin: m.need(m.text("PLUGIN"), "PLUGIN")?,
            on: m.choice("on", CheckTarget::from_name),
        }),
        CommandId::Clear => Command::Clear,
        CommandId::Quit => Command::Quit,
        // `:rust` lines never reach the token parser; typed as a word, it is a command without
        // its code.
        CommandId::Rust => Command::Rust(m.text("CODE").unwrap_or_default()),
        CommandId::Replay | CommandId::Plugin | CommandId::Eval => {
            return Err(ParseError::new(
                m.src,
                ParseErrorKind::MissingSubcommand,
                m.end..m.end,
                format!("`{}` needs a subcommand", m.title),
            ))
        }
    })
}

/// The options `generate` and `chat` share.
fn generation_options(m: &Matched<'_>) -> Result<GenerationOptions, ParseError> {
    Ok(GenerationOptions {
        max_tokens: m.need(m.u32("max-tokens"), "--max-tokens")?,
        temperature: m.need(m.float("temperature"), "--temperature")?,
        top_k: m.u32("top-k"),
        top_p: m.float("top-p"),
        seed: m.need(m.int("seed"), "--seed")?,
        tracer: m.text("tracer"),
        stop: m.text("stop"),
        greedy: m.flag("greedy"),
    })
}

fn build_train(m: &Matched<'_>) -> Result<Command, ParseError> {
    if let Some(run) = m.path("resume") {
        return Ok(Command::Train(Train::Resume(TrainResume {
            run,
            steps: m.given("steps").and_then(|_| m.int("steps")),
            devices: device_list(m)?,
        })));
    }
    let tokenizer = match (m.path("tokenizer"), m.u32("train-tokenizer")) {
        (Some(path), _) => TokenizerSource::File(path),
        (None, Some(vocab)) => TokenizerSource::Train { vocab },
        (None, None) => TokenizerSource::Default,
    };
    let devices = device_list(m)?;
    Ok(Command::Train(Train::Start(TrainStart {
        data: m.need(m.path("data"), "--data")?,
        val: m.path("val"),
        preset: m.need(m.choice("preset", Preset::from_name), "--preset")?,
        tokenizer,
        steps: m.need(m.int("steps"), "--steps")?,
        seq: m.need(m.u32("seq"), "--seq")?,
        batch: m.need(m.u32("batch"), "--batch")?,
        lr: m.need(m.float("lr"), "--lr")?,
        warmup: m.need(m.int("warmup"), "--warmup")?,
        seed: m.need(m.int("seed"), "--seed")?,
        twin: m.flag("twin"),
        quant: m.need(m.choice("quant", ScaleGranularity::from_name), "--quant")?,
        checkpoint_every: m.need(m.int("checkpoint-every"), "--checkpoint-every")?,
        out: m.need(m.path("out"), "--out")?,
        shape: TrainShape {
            layers: m.u32("layers"),
            hidden: m.u32("hidden"),
            intermediate: m.u32("intermediate"),
            heads: m.u32("heads"),
            kv_heads: m.u32("kv-heads"),
        },
        val_fraction: m.need(m.float("val-fraction"), "--val-fraction")?,
        min_lr_ratio: m.need(m.float("min-lr-ratio"), "--min-lr-ratio")?,
        weight_decay: m.need(m.float("weight-decay"), "--weight-decay")?,
        clip: m.need(m.float("clip"), "--clip")?,
        projection: m.flag("projection"),
        keep_checkpoints: m.need(m.int("keep-checkpoints"), "--keep-checkpoints")?,
        eval_every: m.need(m.int("eval-every"), "--eval-every")?,
        eval_sequences: m.need(m.u32("eval-sequences"), "--eval-sequences")?,
        device: match devices.first() {
            Some(&first) => first,
            None => device(m)?,
        },
        devices,
        micro_batches: m.need(m.u32("micro-batches"), "--micro-batches")?,
        matmul: m.need(
            m.choice("matmul", tritlab_train::Matmul::from_name),
            "--matmul",
        )?,
        kernels: m.need(m.choice("kernels", ProductKernels::from_name), "--kernels")?,
    })))
}

/// `--devices`: a comma-separated list of devices, a bare number standing for that CUDA GPU
/// (`0,1` is `cuda:0,cuda:1`). Empty when the option is not given.
fn device_list(m: &Matched) -> Result<Vec<tritlab_train::DeviceSpec>, ParseError> {
    let Some(text) = m.text("devices") else {
        return Ok(Vec::new());
    };
    let invalid = |message: String| {
        let span = m
            .given("devices")
            .map_or(m.end..m.end, |(_, _, span)| span.clone());
        ParseError::new(m.src, ParseErrorKind::InvalidValue, span, message)
    };
    text.split(',')
        .map(|item| {
            let item = item.trim();
            if !item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()) {
                format!("cuda:{item}").parse()
            } else {
                item.parse()
            }
            .map_err(|e: String| {
                invalid(format!(
                    "{e} (--devices takes a comma-separated list such as 0,1 or cuda:0,cuda:1)"
                ))
            })
        })
        .collect()
}

/// `--device`: `cpu`, `cuda` or `cuda:N`.
fn device(m: &Matched) -> Result<tritlab_train::DeviceSpec, ParseError> {
    let text = m.need(m.text("device"), "--device")?;
    text.parse().map_err(|message| {
        let span = m
            .given("device")
            .map_or(m.end..m.end, |(_, _, span)| span.clone());
        ParseError::new(m.src, ParseErrorKind::InvalidValue, span, message)
    })
}
