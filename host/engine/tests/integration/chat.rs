//! Chat: templates rendered as transformers renders them (fixtures made by
//! `tests/fixtures/chat/make.py` with `apply_chat_template`), the ids that end a turn, and turns
//! that reuse the KV cache of the conversation so far.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tritlab_engine::{
    chat_turn, turn_end_ids, ChatMessage, ChatTemplate, Conversation, EngineError, GenerateOptions,
    Model, Role, SamplingOptions, StepControl, StopReason, Tokenizer,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/chat")
}

fn json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture template `name` with the special tokens of its tokenizer_config.json.
fn fixture_template(name: &str) -> ChatTemplate {
    let config = json(&fixtures().join(name).join("tokenizer_config.json"));
    let token = |key: &str| config.get(key).and_then(Json::as_str).map(str::to_string);
    ChatTemplate::new(
        config["chat_template"].as_str().expect("chat_template"),
        name,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
    .with_special_tokens(token("bos_token"), token("eos_token"))
}

fn messages(list: &Json) -> Vec<ChatMessage> {
    list.as_array()
        .expect("a conversation is a list")
        .iter()
        .map(|m| {
            let role = match m["role"].as_str() {
                Some("system") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                other => panic!("role {other:?}"),
            };
            ChatMessage::new(role, m["content"].as_str().expect("content"))
        })
        .collect()
}

#[test]
fn templates_render_exactly_as_transformers_renders_them() {
    let doc = json(&fixtures().join("rendered.json"));
    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 80, "5 templates × 8 conversations × 2");
    let mut checked = 0;
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let conversation = case["conversation"].as_str().unwrap();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let what = format!("{name} / {conversation} / add_generation_prompt={add}");
        let rendered =
            fixture_template(name).render(&messages(&doc["conversations"][conversation]), add);
        match (case.get("rendered").and_then(Json::as_str), rendered) {
            (Some(expected), Ok(got)) => assert_eq!(got, expected, "{what}"),
            (None, Err(EngineError::ChatTemplate { message, .. })) => {
                // transformers says `TemplateError: MESSAGE`; the template's own words agree.
                let expected = case["error"].as_str().unwrap();
                let expected = expected.strip_prefix("TemplateError: ").unwrap_or(expected);
                assert_eq!(message, expected, "{what}");
            }
            (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 80);
}

#[test]
fn the_bitnet_2b4t_template_ends_turns_with_eot_id() {
    let t = fixture_template("bitnet-2b4t");
    let text = t
        .render(
            &[
                ChatMessage::new(Role::System, "Be brief."),
                ChatMessage::new(Role::User, "Hi"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        text,
        "System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: "
    );
}

#[test]
fn broken_templates_are_errors_that_name_their_origin() {
    let e = ChatTemplate::new("{% for m in messages %}{{ m.content }", "broken.jinja").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("broken.jinja: chat template: "), "{text}");
    // A template that never ends runs out of fuel instead of hanging.
    let forever = ChatTemplate::new(
        "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}\
         {% endfor %}{% endfor %}{% endfor %}",
        "loop.jinja",
    )
    .unwrap();
    let e = forever.render(&[], true).unwrap_err();
    assert!(e.to_string().contains("fuel"), "{e}");
}

fn default_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/default-model")
}

/// The default model copied into `dir` with `template` as its tokenizer_config.json's
/// chat_template.
fn model_with_template(dir: &Path, template: Option<&str>) -> PathBuf {
    let to = dir.join("model");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(default_model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    if let Some(t) = template {
        let config = serde_json::json!({ "chat_template": t, "eos_token": "<|endoftext|>" });
        std::fs::write(to.join("tokenizer_config.json"), config.to_string()).unwrap();
    }
    to
}

/// A plain template whose turns end with the default model's one special token.
const PLAIN: &str =
    "{% for m in messages %}{{ m.role | upper }}: {{ m.content | trim }}<|endoftext|>{% endfor %}\
                     {% if add_generation_prompt %}ASSISTANT:{% endif %}";

#[test]
fn a_model_directory_gives_its_template_and_special_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_with_template(tmp.path(), Some(PLAIN));
    let model = Model::load(&dir).unwrap();
    let tok = Tokenizer::for_model(&dir).unwrap();
    let t = ChatTemplate::for_model(&model, &tok)
        .unwrap()
        .expect("a template");
    assert_eq!(t.source(), PLAIN);
    assert_eq!(t.eos_token(), Some("<|endoftext|>"));
    // bos_token is not in the file: config.json's id, as a token.
    assert_eq!(t.bos_token(), Some("<|endoftext|>"));
    // chat_template.jinja comes first, as in transformers.
    std::fs::write(dir.join("chat_template.jinja"), "{{ messages[0].content }}").unwrap();
    let t = ChatTemplate::for_model(&model, &tok)
        .unwrap()
        .expect("a template");
    assert_eq!(t.source(), "{{ messages[0].content }}");
    // The shipped model has none.
    let shipped = Model::load(default_model()).unwrap();
    let tok = Tokenizer::for_model(default_model()).unwrap();
    assert!(ChatTemplate::for_model(&shipped, &tok).unwrap().is_none());
}

#[test]
fn turns_end_at_eos_and_at_the_vocabularys_end_of_turn_tokens() {
    let model = Model::load(default_model()).unwrap();
    // A Llama 3 style vocabulary: <|begin_of_text|> 1, <|end_of_text|> 2, <|eot_id|> 3, …
    let tok = Tokenizer::from_file(fixtures().join("tokenizer.json")).unwrap();
    let ids = turn_end_ids(&model, &tok, Some(&fixture_template("bitnet-2b4t")));
    let id = |t: &str| tok.added_token_id(t).unwrap();
    for end in [
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|im_end|>",
        "<|endoftext|>",
        "</s>",
    ] {
        assert!(ids.contains(&id(end)), "{end} in {ids:?}");
    }
    assert!(!ids.contains(&id("<|begin_of_text|>")), "{ids:?}");
    // The model's eos_token_id (0) always ends a turn.
    assert!(ids.contains(&0), "{ids:?}");
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingOptions::greedy(),
        ..GenerateOptions::default()
    }
}

#[test]
fn a_second_turn_reuses_the_cache_and_gives_the_logits_of_a_fresh_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_with_template(tmp.path(), Some(PLAIN));
    let model = Model::load(&dir).unwrap();
    let tok = Tokenizer::for_model(&dir).unwrap();
    let template = ChatTemplate::for_model(&model, &tok).unwrap().unwrap();
    let mut conv = Conversation::new(&model, Some("You speak like a king.".into()));

    let first = chat_turn(
        &model,
        &tok,
        &template,
        &mut conv,
        "Who goes there?",
        &greedy(12),
        |_| StepControl::Continue,
    )
    .unwrap();
    assert_eq!(first.reused_tokens, 0);
    assert_eq!(first.prefilled_tokens(), first.prompt_tokens);
    assert_eq!(conv.turns(), 1);
    assert_eq!(conv.messages().len(), 3);
    assert_eq!(conv.messages()[2].content, first.reply);
    // The cache holds exactly the ids the conversation says it does.
    assert!(conv.cached_ids().len() >= first.prompt_tokens);

    let mut options = greedy(8);
    options.stop_tokens = turn_end_ids(&model, &tok, Some(&template));
    let pending = conv
        .start_turn(&model, &tok, &template, "Speak, friend.", options)
        .unwrap();
    let prompt = pending.prompt_ids().to_vec();
    let reused = pending.reused_tokens();
    // The whole first turn's prompt is shared; only what follows it is read again.
    assert!(
        reused >= first.prompt_tokens,
        "{reused} < {}",
        first.prompt_tokens
    );
    assert!(reused < prompt.len());
    let cached_logits = pending.next_logits().expect("prefilled").to_vec();
    let fresh = model.forward_last(&prompt, &mut model.new_cache()).unwrap();
    assert_eq!(cached_logits.len(), fresh.len());
    let worst = cached_logits
        .iter()
        .zip(&fresh)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "largest logit difference {worst}");

    let second = pending.run(&mut conv, |_| StepControl::Continue).unwrap();
    assert_eq!(second.reused_tokens, reused);
    assert!(second.prefilled_tokens() < second.prompt_tokens);
    assert_eq!(conv.turns(), 2);
    assert!(matches!(
        second.stop_reason,
        StopReason::MaxTokens | StopReason::StopToken(_)
    ));
    if let StopReason::StopToken(id) = second.stop_reason {
        assert!(turn_end_ids(&model, &tok, Some(&template)).contains(&id));
    }
}

#[test]
fn a_changed_earlier_message_is_read_again_from_where_it_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_with_template(tmp.path(), Some(PLAIN));
    let model = Model::load(&dir).unwrap();
    let tok = Tokenizer::for_model(&dir).unwrap();
    let template = ChatTemplate::for_model(&model, &tok).unwrap().unwrap();
    let mut conv = Conversation::new(&model, None);
    chat_turn(
        &model,
        &tok,
        &template,
        &mut conv,
        "First.",
        &greedy(4),
        |_| StepControl::Continue,
    )
    .unwrap();
    // Another template renders the same conversation differently from its first character:
    // nothing can be reused, and the cache is rebuilt rather than trusted.
    let other = ChatTemplate::new(
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}",
        "other",
    )
    .unwrap();
    let pending = conv
        .start_turn(&model, &tok, &other, "Second.", greedy(4))
        .unwrap();
    let prompt = pending.prompt_ids().to_vec();
    let logits = pending.next_logits().unwrap().to_vec();
    let fresh = model.forward_last(&prompt, &mut model.new_cache()).unwrap();
    assert!(pending.reused_tokens() < 2, "{}", pending.reused_tokens());
    let worst = logits
        .iter()
        .zip(&fresh)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "largest logit difference {worst}");
}
