//! Properties: any input is handled without panicking, and canonical text parses back to the
//! command it was written from.

use std::path::PathBuf;

use proptest::prelude::*;
use tritlab_session::lang::*;

// ---- generators of valid commands --------------------------------------------------------------

/// Free text: printable ASCII, quotes, backslashes, newlines, tabs and a few non-ASCII letters.
fn text() -> impl Strategy<Value = String> {
    prop::string::string_regex("[ -~\n\t\"\\\\éß€]{0,16}").unwrap()
}

/// A non-empty name: mostly plain words, sometimes with blanks or leading dashes that need
/// quoting, sometimes a number or a keyword.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::string::string_regex("[a-z][a-z0-9._-]{0,12}").unwrap(),
        1 => prop::string::string_regex("[ -~é]{1,10}").unwrap(),
        1 => prop::sample::select(vec!["default", "show", "plot", "12", "-3", "--x", ":rust", "#x", "a,b"])
            .prop_map(String::from),
    ]
}

fn path() -> impl Strategy<Value = PathBuf> {
    prop_oneof![
        3 => prop::string::string_regex("(~/|/|\\./)?[a-z0-9_.-]{1,8}(/[a-z0-9_. -]{1,8}){0,2}").unwrap(),
        1 => name(),
    ]
    .prop_map(PathBuf::from)
}

fn step() -> impl Strategy<Value = u64> {
    prop_oneof![0..1000u64, any::<u64>()]
}

fn count32() -> impl Strategy<Value = u32> {
    prop_oneof![1..100u32, 1..=u32::MAX]
}

fn model() -> impl Strategy<Value = ModelRef> {
    prop_oneof![Just(ModelRef::Default), path().prop_map(ModelRef::Path)]
}

fn head() -> impl Strategy<Value = HeadPrecision> {
    prop::sample::select(HeadPrecision::ALL.to_vec())
}

fn packing() -> impl Strategy<Value = Packing> {
    prop::sample::select(Packing::ALL.to_vec())
}

fn count64() -> impl Strategy<Value = u64> {
    prop_oneof![1..1000u64, 1..=u64::MAX]
}

fn generate() -> impl Strategy<Value = Command> {
    (
        text(),
        count32(),
        prop_oneof![Just(0.8f32), 0.0f32..10.0],
        proptest::option::of(count32()),
        proptest::option::of(prop_oneof![Just(1.0f32), 0.000_01f32..1.0]),
        any::<u64>(),
        proptest::option::of(name()),
        proptest::option::of(text()),
        any::<bool>(),
    )
        .prop_map(
            |(prompt, max_tokens, temperature, top_k, top_p, seed, tracer, stop, greedy)| {
                // `--greedy` excludes the sampling options.
                let (temperature, top_k, top_p) = if greedy {
                    (0.8, None, None)
                } else {
                    (temperature, top_k, top_p)
                };
                Command::Generate(Generate {
                    prompt,
                    max_tokens,
                    temperature,
                    top_k,
                    top_p,
                    seed,
                    tracer,
                    stop,
                    greedy,
                })
            },
        )
}

/// `chat`: generate's options (taken from a generated `generate`) and its own.
fn chat() -> impl Strategy<Value = Command> {
    (
        generate(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        any::<bool>(),
        proptest::option::of(path()),
    )
        .prop_map(|(generate, message, system, reset, template)| {
            let Command::Generate(g) = generate else {
                unreachable!("generate() makes generate commands")
            };
            // Without a message, only `--reset` or `--system` make it a command.
            let reset = reset || (message.is_none() && system.is_none());
            Command::Chat(Chat {
                message,
                system,
                reset,
                template,
                options: g.options(),
            })
        })
}

fn train() -> impl Strategy<Value = Command> {
    let start = (
        (
            path(),
            proptest::option::of(path()),
            prop::sample::select(Preset::ALL.to_vec()),
        ),
        prop_oneof![
            Just(TokenizerSource::Default),
            path().prop_map(TokenizerSource::File),
            (2..=u32::MAX).prop_map(|vocab| TokenizerSource::Train { vocab }),
        ],
        (
            count64(),
            count32(),
            count32(),
            prop_oneof![Just(3e-3f32), 1e-9f32..10.0],
            prop_oneof![Just(10u64), any::<u64>()],
        ),
        (
            any::<u64>(),
            any::<bool>(),
            prop::sample::select(ScaleGranularity::ALL.to_vec()),
            count64(),
            path(),
        ),
        (
            proptest::option::of(count32()),
            proptest::option::of(count32()),
            proptest::option::of(count32()),
            proptest::option::of(count32()),
            proptest::option::of(count32()),
        ),
        (
            prop_oneof![Just(0.1f32), 0.001f32..0.999],
            prop_oneof![Just(0.1f32), 0.0f32..=1.0],
            prop_oneof![Just(0.1f32), 0.0f32..100.0],
            prop_oneof![Just(1.0f32), 0.0f32..100.0],
        ),
        (any::<bool>(), any::<u64>(), any::<u64>(), count32()),
        (
            prop_oneof![
                Just(tritlab_train::DeviceSpec::Cpu),
                (0usize..64).prop_map(tritlab_train::DeviceSpec::Cuda),
            ],
            prop::collection::vec(
                prop_oneof![
                    Just(tritlab_train::DeviceSpec::Cpu),
                    (0usize..64).prop_map(tritlab_train::DeviceSpec::Cuda),
                ],
                0..4,
            ),
            count32(),
            prop_oneof![
                Just(tritlab_train::Matmul::F32),
                Just(tritlab_train::Matmul::Tf32),
                Just(tritlab_train::Matmul::Bf16),
            ],
            prop::sample::select(ProductKernels::ALL.to_vec()),
        ),
    )
        .prop_map(
            |(
                (data, val, preset),
                tokenizer,
                (steps, seq, batch, lr, warmup),
                (seed, twin, quant, checkpoint_every, out),
                (layers, hidden, intermediate, heads, kv_heads),
                (val_fraction, min_lr_ratio, weight_decay, clip),
                (projection, keep_checkpoints, eval_every, eval_sequences),
                (device, devices, micro_batches, matmul, kernels),
            )| {
                Command::Train(Train::Start(TrainStart {
                    data,
                    val,
                    preset,
                    tokenizer,
                    steps,
                    seq,
                    batch,
                    lr,
                    warmup,
                    seed,
                    twin,
                    quant,
                    checkpoint_every,
                    out,
                    shape: TrainShape {
                        layers,
                        hidden,
                        intermediate,
                        heads,
                        kv_heads,
                    },
                    val_fraction,
                    min_lr_ratio,
                    weight_decay,
                    clip,
                    projection,
                    keep_checkpoints,
                    eval_every,
                    eval_sequences,
                    // With `--devices`, the run's device is the first of them.
                    device: devices.first().copied().unwrap_or(device),
                    devices,
                    micro_batches,
                    matmul,
                    kernels,
                }))
            },
        );
    let resume = (
        path(),
        proptest::option::of(count64()),
        prop::collection::vec(
            prop_oneof![
                Just(tritlab_train::DeviceSpec::Cpu),
                (0usize..64).prop_map(tritlab_train::DeviceSpec::Cuda),
            ],
            0..4,
        ),
    )
        .prop_map(|(run, steps, devices)| {
            Command::Train(Train::Resume(TrainResume {
                run,
                steps,
                devices,
            }))
        });
    prop_oneof![3 => start, 1 => resume]
}

/// Rust code that can be written in some form: no line of a block may read `:end`.
fn rust_code() -> impl Strategy<Value = String> {
    prop::string::string_regex("[ -~\n\t]{0,40}")
        .unwrap()
        .prop_filter("a line reads :end", |code| {
            code.split('\n').all(|line| line.trim() != ":end")
        })
}

fn command() -> impl Strategy<Value = Command> {
    let help_names: Vec<Option<String>> = std::iter::once(None)
        .chain(COMMANDS.iter().map(|c| Some(c.name.to_string())))
        .collect();
    prop_oneof![
        prop::sample::select(help_names).prop_map(|command| Command::Help(Help { command })),
        (model(), head(), packing()).prop_map(|(model, head, packing)| {
            Command::Load(Load {
                model,
                head,
                packing,
            })
        }),
        (
            path(),
            count32(),
            proptest::option::of(count32()),
            proptest::option::of(model()),
            head(),
            proptest::option::of(count32()),
        )
            .prop_map(|(data, ctx, stride, compare, compare_head, windows)| {
                Command::Eval(Eval::Ppl(EvalPpl {
                    data,
                    ctx,
                    stride,
                    compare,
                    compare_head,
                    windows,
                }))
            }),
        Just(Command::Info),
        Just(Command::Layers),
        proptest::option::of(path()).prop_map(|path| Command::Verify(Verify { path })),
        (
            name(),
            proptest::option::of(name()),
            proptest::option::of(step())
        )
            .prop_map(|(tensor, with, step)| Command::Show(Show { tensor, with, step })),
        (
            path(),
            prop::sample::select(ExportFormat::ALL),
            prop::sample::select(EmbedType::ALL)
        )
            .prop_map(|(out, to, embed_type)| Command::Export(Export {
                out,
                to,
                // `--embed-type` is refused with `--to hf`: only its default goes with it.
                embed_type: if to == ExportFormat::Hf {
                    EmbedType::F16
                } else {
                    embed_type
                },
            })),
        (prop::sample::select(SynthShape::ALL), step(), path())
            .prop_map(|(shape, seed, out)| Command::Synth(Synth { shape, seed, out })),
        generate(),
        chat(),
        (
            prop_oneof![
                text().prop_map(LogitsInput::Prompt),
                prop::collection::vec(any::<u32>(), 1..6).prop_map(LogitsInput::Ids),
            ],
            count32(),
            proptest::option::of(path())
        )
            .prop_map(|(input, top, out)| Command::Logits(Logits { input, top, out })),
        (count32(), count32(), count32(), step()).prop_map(|(prompt, tokens, repeat, seed)| {
            Command::Bench(Bench {
                prompt,
                tokens,
                repeat,
                seed,
            })
        }),
        train(),
        proptest::option::of(path()).prop_map(|run| Command::Log(Log::Steps { run })),
        step().prop_map(|step| Command::Log(Log::Show { step })),
        prop::sample::select(PlotSeries::ALL.to_vec())
            .prop_map(|series| Command::Log(Log::Plot { series })),
        path().prop_map(|run| Command::Replay(Replay::Open { run })),
        (
            proptest::option::of(step()),
            proptest::option::of(step()),
            proptest::option::of(prop_oneof![
                Just(tritlab_train::DeviceSpec::Cpu),
                (0usize..64).prop_map(tritlab_train::DeviceSpec::Cuda),
            ]),
        )
            .prop_map(|(a, b, device)| {
                let (from, to) = match (a, b) {
                    (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                    other => other,
                };
                Command::Replay(Replay::Verify { from, to, device })
            }),
        (step(), path()).prop_map(|(step, dir)| Command::Replay(Replay::Export { step, dir })),
        step().prop_map(|step| Command::Seek(Seek { step })),
        count64().prop_map(|count| Command::Step(Step { count })),
        count64().prop_map(|count| Command::Back(Back { count })),
        Just(Command::Plugins),
        path().prop_map(|path| Command::Plugin(Plugin::Load { path })),
        name().prop_map(|name| Command::Plugin(Plugin::Enable { name })),
        name().prop_map(|name| Command::Plugin(Plugin::Disable { name })),
        (name(), name(), text()).prop_map(|(name, key, value)| Command::Plugin(Plugin::Set {
            name,
            key,
            value
        })),
        (
            name(),
            proptest::option::of(prop::sample::select(CheckTarget::ALL.to_vec()))
        )
            .prop_map(|(plugin, on)| Command::Check(Check { plugin, on })),
        Just(Command::Clear),
        Just(Command::Quit),
        rust_code().prop_map(Command::Rust),
    ]
}

// ---- grammar-shaped noise ----------------------------------------------------------------------

/// Strings made of the language's own pieces, which reach far more of the parser than uniformly
/// random text does.
fn noise() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => prop::sample::select(vec![
            "generate", "train", "log", "show", "replay", "verify", "plugin", "set", "help", "load",
            "default", "logits", "--ids", "--seed", "--steps", "--greedy", "--top-p", "--resume",
            "--data", "--out", "--", "-", "=", "\"", "\\", "\\\n", "\n", "\r\n", "\t", "#",
            ",", "1,2", ":rust", ":rust\n", ":end", "\n:end\n", "~", "~/", "/", "./", "é", "€", "-1",
            "0.5", "1e-3", "1e", "ten", "\\q", "\\n", "\u{a0}", "\u{0}",
        ])
        .prop_map(String::from),
        2 => "[a-z0-9]{1,6}",
        1 => any::<char>().prop_map(String::from),
    ];
    let separator = prop::sample::select(vec!["", " ", " ", " ", "\n"]);
    let start = prop::sample::select(
        COMMANDS
            .iter()
            .map(|c| c.name)
            .chain([""])
            .collect::<Vec<_>>(),
    );
    (start, prop::collection::vec((piece, separator), 0..16)).prop_map(|(start, pieces)| {
        let mut out = format!("{start} ");
        for (piece, separator) in pieces {
            out.push_str(&piece);
            out.push_str(separator);
        }
        out
    })
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![noise(), any::<String>()]
}

/// A source with a little of everything, so completion reaches every kind of value.
struct Session;

impl CompletionSource for Session {
    fn tensor_names(&self) -> Vec<String> {
        vec![
            "model.layers.0.mlp.down_proj.weight".into(),
            "with space".into(),
        ]
    }
    fn layer_names(&self) -> Vec<String> {
        vec!["model.layers.0".into()]
    }
    fn plugin_names(&self, _role: Option<PluginRole>) -> Vec<String> {
        vec!["gay-tracer".into(), "triad-checker".into()]
    }
    fn run_steps(&self) -> Vec<u64> {
        vec![0, 1, 10, 100]
    }
    fn current_dir(&self) -> Option<PathBuf> {
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    }
}

fn check_highlight(input: &str) -> Result<(), TestCaseError> {
    let ranges = highlight(input);
    let mut end = 0;
    for (range, _) in &ranges {
        prop_assert!(range.start >= end, "overlap at {range:?} in {ranges:?}");
        prop_assert!(
            range.start < range.end && range.end <= input.len(),
            "{range:?}"
        );
        prop_assert!(input.is_char_boundary(range.start) && input.is_char_boundary(range.end));
        end = range.end;
    }
    for (at, c) in input.char_indices() {
        if !c.is_whitespace() {
            prop_assert!(
                ranges.iter().any(|(r, _)| r.contains(&at)),
                "{c:?} at {at} is not highlighted in {input:?}: {ranges:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    // Integration tests have no lib.rs next to them for proptest's regression files.
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn canonical_text_parses_back(command in command()) {
        let text = command.to_string();
        match parse(&text) {
            Ok(again) => prop_assert_eq!(again, command, "via {}", text),
            Err(e) => prop_assert!(false, "{:?} rendered as\n{}\nfails:\n{}", command, text, e.render(&text)),
        }
    }

    #[test]
    fn scripts_of_canonical_text_parse_back(commands in prop::collection::vec(command(), 0..8)) {
        let script: Vec<String> = commands.iter().map(ToString::to_string).collect();
        let parsed = parse_script(&script.join("\n")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed: Vec<Command> = parsed.into_iter().map(|s| s.command).collect();
        prop_assert_eq!(parsed, commands);
    }

    #[test]
    fn canonical_text_is_complete_and_highlighted(command in command()) {
        let text = command.to_string();
        prop_assert!(is_complete(&text));
        check_highlight(&text)?;
        prop_assert!(!highlight(&text).iter().any(|(_, kind)| *kind == TokenKind::Error), "{}", text);
    }

    #[test]
    fn nothing_panics_on_any_input(input in any_input()) {
        match parse(&input) {
            // Whatever parses has a canonical form that parses to the same command.
            Ok(command) => prop_assert_eq!(parse(&command.to_string()).ok(), Some(command)),
            Err(e) => {
                prop_assert!(e.span.start <= e.span.end && e.span.end <= input.len());
                prop_assert!(e.line >= 1 && e.column >= 1);
                let _ = e.render(&input);
                let _ = e.render("");
                let _ = e.to_string();
            }
        }
        let _ = parse_script(&input);
        let _ = is_complete(&input);
        let _ = hint(&input);
        check_highlight(&input)?;
    }

    #[test]
    fn completion_never_panics_and_replaces_a_suffix(input in any_input(), cursor in 0usize..64) {
        for at in [cursor, input.len(), cursor.saturating_mul(7)] {
            let completion = complete(&input, at, &Session);
            prop_assert!(completion.start <= at.min(input.len()));
            prop_assert!(input.is_char_boundary(completion.start));
        }
    }
}
