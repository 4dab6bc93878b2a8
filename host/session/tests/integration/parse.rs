//! Every command parses, with the table's defaults filled in.

use std::path::PathBuf;

use tritlab_session::lang::*;

fn ok(input: &str) -> Command {
    match parse(input) {
        Ok(command) => command,
        Err(e) => panic!("{input:?} did not parse:\n{}", e.render(input)),
    }
}

fn p(path: &str) -> PathBuf {
    PathBuf::from(path)
}

fn generate(prompt: &str) -> Generate {
    Generate {
        prompt: prompt.into(),
        max_tokens: 64,
        temperature: 0.8,
        top_k: None,
        top_p: None,
        seed: 1069,
        tracer: None,
        stop: None,
        greedy: false,
    }
}

fn train(data: &str, out: &str) -> TrainStart {
    TrainStart {
        data: p(data),
        val: None,
        preset: Preset::Tiny,
        tokenizer: TokenizerSource::Default,
        steps: 200,
        seq: 64,
        batch: 8,
        lr: 3e-3,
        warmup: 10,
        seed: 1069,
        twin: false,
        quant: ScaleGranularity::Tensor,
        checkpoint_every: 50,
        out: p(out),
        shape: TrainShape::default(),
        val_fraction: 0.1,
        min_lr_ratio: 0.1,
        weight_decay: 0.1,
        clip: 1.0,
        projection: false,
        keep_checkpoints: 0,
        eval_every: 0,
        eval_sequences: 64,
        device: tritlab_train::DeviceSpec::Cpu,
        devices: Vec::new(),
        micro_batches: 1,
        matmul: tritlab_train::Matmul::F32,
        kernels: ProductKernels::Auto,
    }
}

#[test]
fn model_commands() {
    assert_eq!(
        ok("load default"),
        Command::Load(Load::new(ModelRef::Default))
    );
    assert_eq!(
        ok("load ~/models/b2b4t"),
        Command::Load(Load::new(ModelRef::Path(p("~/models/b2b4t"))))
    );
    assert_eq!(
        ok("load \"default\""),
        Command::Load(Load::new(ModelRef::Path(p("default"))))
    );
    assert_eq!(
        ok("load \"my models/x\""),
        Command::Load(Load::new(ModelRef::Path(p("my models/x"))))
    );
    assert_eq!(ok("info"), Command::Info);
    assert_eq!(ok("layers"), Command::Layers);
    assert_eq!(ok("verify"), Command::Verify(Verify { path: None }));
    assert_eq!(
        ok("verify model.safetensors"),
        Command::Verify(Verify {
            path: Some(p("model.safetensors"))
        })
    );
    assert_eq!(
        ok("show w.0"),
        Command::Show(Show {
            tensor: "w.0".into(),
            with: None,
            step: None
        })
    );
    assert_eq!(
        ok("show w.0 --step 3 --with trit-visualiser"),
        Command::Show(Show {
            tensor: "w.0".into(),
            with: Some("trit-visualiser".into()),
            step: Some(3)
        })
    );
    assert_eq!(
        ok("export /tmp/out"),
        Command::Export(Export {
            out: p("/tmp/out"),
            to: ExportFormat::Hf,
            embed_type: EmbedType::F16
        })
    );
    assert_eq!(
        ok("convert m.gguf --to gguf-i2_s --embed-type q8_0"),
        Command::Export(Export {
            out: p("m.gguf"),
            to: ExportFormat::GgufI2S,
            embed_type: EmbedType::Q8_0
        })
    );
    // The embedding's type means something only in GGUF.
    let e = parse("export out --embed-type bf16").unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::ConflictingOptions, "{e:?}");
    assert!(parse("export out.gguf --to gguf-q4").is_err());
}

#[test]
fn synth_forms() {
    assert_eq!(
        ok("synth --shape bitnet-2b4t --seed 1 --out /tmp/b"),
        Command::Synth(Synth {
            shape: SynthShape::Bitnet2b4t,
            seed: 1,
            out: p("/tmp/b")
        })
    );
    assert_eq!(
        ok("synth --out t --shape tiny"),
        Command::Synth(Synth {
            shape: SynthShape::Tiny,
            seed: 0,
            out: p("t")
        })
    );
    assert!(parse("synth --shape tiny").is_err(), "--out is required");
    assert!(parse("synth --shape huge --out t").is_err());
}

#[test]
fn generate_defaults_and_options() {
    assert_eq!(
        ok("generate \"Once upon a time\""),
        Command::Generate(generate("Once upon a time"))
    );
    assert_eq!(ok("generate hello"), Command::Generate(generate("hello")));
    assert_eq!(ok("generate 42"), Command::Generate(generate("42")));
    assert_eq!(ok("generate \"\""), Command::Generate(generate("")));

    let all = Generate {
        max_tokens: 32,
        temperature: 0.7,
        top_k: Some(40),
        top_p: Some(0.9),
        seed: 7,
        tracer: Some("gay-tracer".into()),
        stop: Some("\n\n".into()),
        ..generate("To be")
    };
    let expected = Command::Generate(all);
    // Options in any order, attached with `=` or not, before or after the prompt.
    for input in [
        "generate \"To be\" --max-tokens 32 --temperature 0.7 --top-k 40 --top-p 0.9 --seed 7 --tracer gay-tracer --stop \"\\n\\n\"",
        "generate \"To be\" --stop=\"\\n\\n\" --seed=7 --top-p=.9 --top-k=40 --tracer=gay-tracer --temperature=7e-1 --max-tokens=32",
        "generate --seed 7 --max-tokens 32 \"To be\" --top-k 40 --top-p 0.9 --temperature 0.70 --tracer gay-tracer --stop \"\\n\\n\"",
    ] {
        assert_eq!(ok(input), expected, "{input}");
    }

    let greedy = ok("generate \"x\" --greedy");
    assert_eq!(
        greedy,
        Command::Generate(Generate {
            greedy: true,
            ..generate("x")
        })
    );
    let zero = ok("generate \"x\" --temperature 0");
    assert_eq!(
        zero,
        Command::Generate(Generate {
            temperature: 0.0,
            ..generate("x")
        })
    );
}

#[test]
fn logits_forms() {
    assert_eq!(
        ok("logits \"The capital of France is\""),
        Command::Logits(Logits {
            input: LogitsInput::Prompt("The capital of France is".into()),
            top: 10,
            out: None
        })
    );
    assert_eq!(
        ok("logits --ids 1,17,300 --top 5"),
        Command::Logits(Logits {
            input: LogitsInput::Ids(vec![1, 17, 300]),
            top: 5,
            out: None
        })
    );
    assert_eq!(
        ok("logits --ids=7"),
        Command::Logits(Logits {
            input: LogitsInput::Ids(vec![7]),
            top: 10,
            out: None
        })
    );
    assert_eq!(
        ok("logits --ids 1,2 --out l.safetensors"),
        Command::Logits(Logits {
            input: LogitsInput::Ids(vec![1, 2]),
            top: 10,
            out: Some(p("l.safetensors"))
        })
    );
}

#[test]
fn bench_forms() {
    assert_eq!(
        ok("bench"),
        Command::Bench(Bench {
            prompt: 64,
            tokens: 64,
            repeat: 3,
            seed: 1069
        })
    );
    assert_eq!(
        ok("bench --prompt 512 --tokens 16 --repeat 5 --seed 0"),
        Command::Bench(Bench {
            prompt: 512,
            tokens: 16,
            repeat: 5,
            seed: 0
        })
    );
    for bad in [
        "bench --prompt 0",
        "bench --repeat -1",
        "bench --tokens x",
        "bench 5",
    ] {
        assert!(tritlab_session::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn train_forms() {
    assert_eq!(
        ok("train --data corpus.txt --out runs/tiny"),
        Command::Train(Train::Start(train("corpus.txt", "runs/tiny")))
    );
    let full = TrainStart {
        val: Some(p("val.txt")),
        preset: Preset::Small,
        tokenizer: TokenizerSource::Train { vocab: 4096 },
        steps: 1000,
        seq: 128,
        batch: 16,
        lr: 1e-3,
        seed: 5,
        twin: true,
        quant: ScaleGranularity::Group,
        checkpoint_every: 100,
        ..train("corpus.txt", "runs/small")
    };
    assert_eq!(
        ok("train --out runs/small --data corpus.txt --val val.txt --preset small --train-tokenizer 4096 \
            --steps 1000 --seq 128 --batch 16 --lr 1e-3 --seed 5 --twin --quant group --checkpoint-every 100"),
        Command::Train(Train::Start(full))
    );
    // The options the command line had before it ran through the session: a preset's shape
    // changed, the schedule, and the largest preset.
    assert_eq!(
        ok(
            "train --data d --preset bitnet-2b4t --layers 2 --hidden 256 --kv-heads 2 --warmup 0 \
            --val-fraction 0.2 --min-lr-ratio 0 --weight-decay 0 --clip 0 --projection \
            --keep-checkpoints 3 --eval-every 10 --eval-sequences 8 --out o"
        ),
        Command::Train(Train::Start(TrainStart {
            preset: Preset::Bitnet2b4t,
            shape: TrainShape {
                layers: Some(2),
                hidden: Some(256),
                kv_heads: Some(2),
                ..TrainShape::default()
            },
            warmup: 0,
            val_fraction: 0.2,
            min_lr_ratio: 0.0,
            weight_decay: 0.0,
            clip: 0.0,
            projection: true,
            keep_checkpoints: 3,
            eval_every: 10,
            eval_sequences: 8,
            ..train("d", "o")
        }))
    );
    assert_eq!(
        ok("train --data d --tokenizer tok/tokenizer.json --out o"),
        Command::Train(Train::Start(TrainStart {
            tokenizer: TokenizerSource::File(p("tok/tokenizer.json")),
            ..train("d", "o")
        }))
    );
    // Where a run computes: the CPU unless asked; `cuda` is the first GPU.
    for (words, device) in [
        ("", tritlab_train::DeviceSpec::Cpu),
        (" --device cpu", tritlab_train::DeviceSpec::Cpu),
        (" --device cuda", tritlab_train::DeviceSpec::Cuda(0)),
        (" --device cuda:3", tritlab_train::DeviceSpec::Cuda(3)),
    ] {
        assert_eq!(
            ok(&format!("train --data d --out o{words}")),
            Command::Train(Train::Start(TrainStart {
                device,
                ..train("d", "o")
            }))
        );
    }
    assert_eq!(
        ok("train --data d --out o --device cuda --matmul bf16"),
        Command::Train(Train::Start(TrainStart {
            device: tritlab_train::DeviceSpec::Cuda(0),
            matmul: tritlab_train::Matmul::Bf16,
            ..train("d", "o")
        }))
    );
    // Data parallel: bare numbers are CUDA GPUs; the first of them is the run's device.
    use tritlab_train::DeviceSpec::{Cpu, Cuda};
    for (words, devices) in [
        ("0,1", vec![Cuda(0), Cuda(1)]),
        ("cuda:2, 3", vec![Cuda(2), Cuda(3)]),
        ("cpu,cpu", vec![Cpu, Cpu]),
    ] {
        assert_eq!(
            ok(&format!(
                "train --data d --out o --devices \"{words}\" --micro-batches 2"
            )),
            Command::Train(Train::Start(TrainStart {
                device: devices[0],
                devices,
                micro_batches: 2,
                ..train("d", "o")
            }))
        );
    }
    for bad in ["", "0,,1", "gpu", "-1"] {
        let line = format!("train --data d --out o --devices \"{bad}\"");
        let e = tritlab_session::parse(&line).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::InvalidValue, "{line}");
        assert!(
            e.message.contains("comma-separated list"),
            "{line}: {}",
            e.message
        );
    }
    let e =
        tritlab_session::parse("train --data d --out o --device cuda --devices 0,1").unwrap_err();
    assert!(e.message.contains("devices"), "{}", e.message);
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1"] {
        let line = format!("train --data d --out o --device {bad}");
        let e = tritlab_session::parse(&line).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::InvalidValue, "{line}");
        assert!(
            e.render(&line).contains("expected cpu, cuda or cuda:N"),
            "{}",
            e.render(&line)
        );
    }
    assert!(tritlab_session::parse("train --resume runs/tiny --device cuda").is_err());
    // How a step computes its products: auto unless asked; a resumed run keeps its own path.
    for kernels in ProductKernels::ALL {
        assert_eq!(
            ok(&format!("train --data d --out o --kernels {kernels}")),
            Command::Train(Train::Start(TrainStart {
                kernels: *kernels,
                ..train("d", "o")
            }))
        );
    }
    let line = "train --data d --out o --kernels bf16";
    let e = tritlab_session::parse(line).unwrap_err();
    assert!(e.render(line).contains("ternary"), "{}", e.render(line));
    assert!(tritlab_session::parse("train --resume runs/tiny --kernels f32").is_err());
    assert_eq!(
        ok("train --resume runs/tiny"),
        Command::Train(Train::Resume(TrainResume {
            run: p("runs/tiny"),
            steps: None,
            devices: Vec::new(),
        }))
    );
    // A data-parallel run continues on other GPUs; the step's bits do not depend on them.
    assert_eq!(
        ok("train --resume runs/tiny --devices 1"),
        Command::Train(Train::Resume(TrainResume {
            run: p("runs/tiny"),
            steps: None,
            devices: vec![tritlab_train::DeviceSpec::Cuda(1)],
        }))
    );
    assert!(tritlab_session::parse("train --resume runs/tiny --micro-batches 2").is_err());
    assert_eq!(
        ok("train --steps 400 --resume runs/tiny"),
        Command::Train(Train::Resume(TrainResume {
            run: p("runs/tiny"),
            steps: Some(400),
            devices: Vec::new(),
        }))
    );
}

#[test]
fn log_and_replay() {
    assert_eq!(ok("log"), Command::Log(Log::Steps { run: None }));
    assert_eq!(
        ok("log runs/tiny"),
        Command::Log(Log::Steps {
            run: Some(p("runs/tiny"))
        })
    );
    assert_eq!(
        ok("log ./show"),
        Command::Log(Log::Steps {
            run: Some(p("./show"))
        })
    );
    assert_eq!(
        ok("log \"show\""),
        Command::Log(Log::Steps {
            run: Some(p("show"))
        })
    );
    assert_eq!(
        ok("log runs"),
        Command::Log(Log::Steps {
            run: Some(p("runs"))
        })
    );
    assert_eq!(ok("log show 12"), Command::Log(Log::Show { step: 12 }));
    for series in PlotSeries::ALL {
        assert_eq!(
            ok(&format!("log plot {series}")),
            Command::Log(Log::Plot { series: *series })
        );
    }
    assert_eq!(
        ok("replay open runs/a"),
        Command::Replay(Replay::Open { run: p("runs/a") })
    );
    assert_eq!(
        ok("replay verify"),
        Command::Replay(Replay::Verify {
            from: None,
            to: None,
            device: None
        })
    );
    assert_eq!(
        ok("replay verify --to 9 --from 9"),
        Command::Replay(Replay::Verify {
            from: Some(9),
            to: Some(9),
            device: None
        })
    );
    assert_eq!(
        ok("replay verify --device cpu"),
        Command::Replay(Replay::Verify {
            from: None,
            to: None,
            device: Some(tritlab_train::DeviceSpec::Cpu)
        })
    );
    assert_eq!(
        ok("replay export 150 /tmp/s"),
        Command::Replay(Replay::Export {
            step: 150,
            dir: p("/tmp/s")
        })
    );
    assert_eq!(ok("seek 0"), Command::Seek(Seek { step: 0 }));
    assert_eq!(ok("step"), Command::Step(Step { count: 1 }));
    assert_eq!(ok("step 10"), Command::Step(Step { count: 10 }));
    assert_eq!(ok("back"), Command::Back(Back { count: 1 }));
    assert_eq!(
        ok("back 18446744073709551615"),
        Command::Back(Back { count: u64::MAX })
    );
}

#[test]
fn plugins_and_session() {
    assert_eq!(ok("plugins"), Command::Plugins);
    assert_eq!(
        ok("plugin load a.wasm"),
        Command::Plugin(Plugin::Load { path: p("a.wasm") })
    );
    assert_eq!(
        ok("plugin enable x"),
        Command::Plugin(Plugin::Enable { name: "x".into() })
    );
    assert_eq!(
        ok("plugin disable x"),
        Command::Plugin(Plugin::Disable { name: "x".into() })
    );
    assert_eq!(
        ok("plugin set gay-tracer seed 0x2a"),
        Command::Plugin(Plugin::Set {
            name: "gay-tracer".into(),
            key: "seed".into(),
            value: "0x2a".into()
        })
    );
    assert_eq!(
        ok("plugin set p label \"two words\""),
        Command::Plugin(Plugin::Set {
            name: "p".into(),
            key: "label".into(),
            value: "two words".into()
        })
    );
    assert_eq!(
        ok("check triad-checker"),
        Command::Check(Check {
            plugin: "triad-checker".into(),
            on: None
        })
    );
    for target in CheckTarget::ALL {
        assert_eq!(
            ok(&format!("check c --on {target}")),
            Command::Check(Check {
                plugin: "c".into(),
                on: Some(*target)
            })
        );
    }
    assert_eq!(ok("help"), Command::Help(Help { command: None }));
    assert_eq!(
        ok("help train"),
        Command::Help(Help {
            command: Some("train".into())
        })
    );
    assert_eq!(
        ok("help exit"),
        Command::Help(Help {
            command: Some("quit".into())
        })
    );
    assert_eq!(
        ok("help :rust"),
        Command::Help(Help {
            command: Some(":rust".into())
        })
    );
    assert_eq!(ok("clear"), Command::Clear);
    assert_eq!(ok("quit"), Command::Quit);
    assert_eq!(ok("exit"), Command::Quit);
}

#[test]
fn rust_snippets() {
    assert_eq!(ok(":rust let x = 1;"), Command::Rust("let x = 1;".into()));
    assert_eq!(
        ok("  :rust   println!(\"# not a comment\");  "),
        Command::Rust("println!(\"# not a comment\");".into())
    );
    assert_eq!(
        ok(":rust\nfn f() {\n    1\n}\n:end"),
        Command::Rust("fn f() {\n    1\n}".into())
    );
    assert_eq!(
        ok(":rust\r\nlet a = 1;\r\n:end\r\n"),
        Command::Rust("let a = 1;".into())
    );
    assert_eq!(ok(":rust\n:end"), Command::Rust(String::new()));
    assert_eq!(ok(":rust \n\n  :end  "), Command::Rust(String::new()));
}

#[test]
fn lexical_details() {
    // Comments, continuations, strings across lines, escapes, tabs, CRLF.
    assert_eq!(ok("info # what is loaded"), Command::Info);
    assert_eq!(
        ok("show a#b"),
        Command::Show(Show {
            tensor: "a#b".into(),
            with: None,
            step: None
        })
    );
    assert_eq!(
        ok("generate \"x\" \\\n  --seed 3 \\  \n  --greedy"),
        Command::Generate(Generate {
            seed: 3,
            greedy: true,
            ..generate("x")
        })
    );
    assert_eq!(
        ok("generate \"one\ntwo\""),
        Command::Generate(generate("one\ntwo"))
    );
    assert_eq!(
        ok("generate \"joined \\\nline\""),
        Command::Generate(generate("joined line"))
    );
    assert_eq!(
        ok("generate \"q\\\"\\\\\\t\""),
        Command::Generate(generate("q\"\\\t"))
    );
    assert_eq!(ok("\tseek\t5\r\n"), Command::Seek(Seek { step: 5 }));
    assert_eq!(
        ok("# heading\n\nseek 5\n# trailing"),
        Command::Seek(Seek { step: 5 })
    );
    assert_eq!(
        ok("generate \"x\" --seed -0"),
        Command::Generate(Generate {
            seed: 0,
            ..generate("x")
        })
    );
}

#[test]
fn scripts() {
    let script = "# a workbook\nload default\n\ngenerate \"a\" \\\n  --seed 2\n:rust\nlet x = 1;\n:end\nseek 3 # end\n";
    let statements = parse_script(script).unwrap();
    let lines: Vec<usize> = statements.iter().map(|s| s.line).collect();
    assert_eq!(lines, [2, 4, 6, 9]);
    assert_eq!(
        statements[1].command,
        Command::Generate(Generate {
            seed: 2,
            ..generate("a")
        })
    );
    assert_eq!(
        &script[statements[1].span.clone()],
        "generate \"a\" \\\n  --seed 2"
    );
    assert_eq!(statements[2].command, Command::Rust("let x = 1;".into()));
    assert_eq!(
        &script[statements[2].span.clone()],
        ":rust\nlet x = 1;\n:end"
    );
    assert_eq!(&script[statements[3].span.clone()], "seek 3 # end");
    assert!(parse_script("").unwrap().is_empty());
    assert!(parse_script("\n  # nothing\n").unwrap().is_empty());
}

#[test]
fn ids_name_their_table_entries() {
    assert_eq!(ok("log show 1").id(), CommandId::LogShow);
    assert_eq!(ok("plugin set a b c").id(), CommandId::PluginSet);
    assert_eq!(
        spec_of(CommandId::ReplayExport).map(|s| s.name),
        Some("export")
    );
}
