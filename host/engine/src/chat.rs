//! Conversations with a model: messages rendered through the model's chat template, and turns
//! that reuse the KV cache of what the conversation already said.
//!
//! A chat template is a Jinja template that Hugging Face checkpoints ship as `chat_template` in
//! `tokenizer_config.json` (or as `chat_template.jinja`), and GGUF files as
//! `tokenizer.chat_template`. tritlab renders it with minijinja, set up the way transformers'
//! `apply_chat_template` sets up Jinja2 (`trim_blocks`, `lstrip_blocks`, loop controls,
//! `raise_exception`, `bos_token` / `eos_token`, Python's string methods), so the prompt is the
//! one the model was trained on; `tests/fixtures/chat` holds transformers' renderings that the
//! tests compare against character for character.
//!
//! Each turn renders the whole conversation again (templates may change earlier text depending
//! on what follows, so appending is not safe in general), tokenizes it, and keeps the longest
//! prefix of ids whose keys and values are already cached: only the rest is prefilled.

use crate::bitnet::{KvCache, Model};
use crate::error::{EngineError, Result};
use crate::generate::{
    decode_loop, GenerateOptions, GenerationStep, Generator, StepControl, StopReason,
};
use crate::tokenizer::Tokenizer;
use minijinja::{Environment, ErrorKind, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The name templates compare against (`message['role'] == 'user'`).
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Special tokens that end a turn in the vocabularies BitNet b1.58 and other chat models use.
/// The published 2B-4T template ends every turn with `<|eot_id|>` (128009), which is not among
/// its `eos_token_id`s (128001), so stopping only at EOS would let the model talk on past its
/// turn. They count only when the tokenizer has them as added tokens, so that a vocabulary in
/// which such a string is ordinary text is not cut short.
pub const TURN_END_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
];

/// How much work one rendering may do (minijinja's fuel: roughly one unit per instruction). A
/// template comes from a downloaded file; this bounds a runaway loop instead of hanging the
/// session. Real templates over long conversations use a few thousand.
const RENDER_FUEL: u64 = 50_000_000;

/// A chat template and the special-token strings it may refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    source: String,
    /// Where the template came from, for messages (`DIR/tokenizer_config.json`, a file given).
    origin: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    /// A template from its text; `origin` names where it came from in error messages. The
    /// template is compiled once here, so a syntax error is reported before any turn.
    pub fn new(source: impl Into<String>, origin: impl Into<String>) -> Result<Self> {
        let template = Self {
            source: source.into(),
            origin: origin.into(),
            bos_token: None,
            eos_token: None,
        };
        let compiled = template
            .environment()
            .template_from_str(&template.source)
            .map(|_| ());
        compiled.map_err(|e| template.error(&e))?;
        Ok(template)
    }

    /// The strings templates see as `bos_token` and `eos_token`.
    pub fn with_special_tokens(mut self, bos: Option<String>, eos: Option<String>) -> Self {
        self.bos_token = bos;
        self.eos_token = eos;
        self
    }

    /// A template file (`.jinja`), as `chat --template FILE` gives one.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        Self::new(text, path.display().to_string())
    }

    /// The template a model ships, with its special tokens: `chat_template.jinja` or
    /// `chat_template` of `tokenizer_config.json` in a checkpoint directory (or beside a
    /// checkpoint file), `tokenizer.chat_template` of a GGUF file. `None` when the model has
    /// none; an error when a file that should hold one is unreadable or the template does not
    /// compile.
    pub fn for_model(model: &Model, tokenizer: &Tokenizer) -> Result<Option<Self>> {
        let shipped = ModelChatFiles::read(model, tokenizer)?;
        let Some((source, origin)) = shipped.template else {
            return Ok(None);
        };
        Ok(Some(
            Self::new(source, origin)?.with_special_tokens(shipped.bos, shipped.eos),
        ))
    }

    /// A template file for a model that has none (or to replace its own), with the model's
    /// special tokens.
    pub fn from_file_for_model(path: &Path, model: &Model, tokenizer: &Tokenizer) -> Result<Self> {
        let shipped = ModelChatFiles::read(model, tokenizer)?;
        Ok(Self::from_file(path)?.with_special_tokens(shipped.bos, shipped.eos))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The environment transformers renders templates in, as far as templates can tell.
    fn environment(&self) -> Environment<'_> {
        let mut env = Environment::new();
        // Jinja2's defaults apart from what transformers changes: blocks eat the newline after
        // them and the blanks before them; a final newline is dropped.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env
    }

    fn error(&self, e: &minijinja::Error) -> EngineError {
        // A template's own `raise_exception` message is the whole story; minijinja's other
        // errors say what and where.
        let message = match (e.kind(), e.detail()) {
            (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
            _ => e.to_string(),
        };
        EngineError::ChatTemplate {
            origin: self.origin.clone(),
            message,
        }
    }

    /// The conversation as the model reads it. `add_generation_prompt` appends what opens the
    /// assistant's next turn (`Assistant: ` for BitNet b1.58 2B-4T).
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let env = self.environment();
        let template = env
            .template_from_str(&self.source)
            .map_err(|e| self.error(&e))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from(BTreeMap::from([
                    ("role", Value::from(m.role.name())),
                    ("content", Value::from(m.content.as_str())),
                ]))
            })
            .collect();
        // What transformers passes: the messages, no tools or documents, the flag, and the
        // tokenizer's special tokens.
        let mut context = BTreeMap::from([
            ("messages", Value::from(messages)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
        ]);
        if let Some(bos) = &self.bos_token {
            context.insert("bos_token", Value::from(bos.as_str()));
        }
        if let Some(eos) = &self.eos_token {
            context.insert("eos_token", Value::from(eos.as_str()));
        }
        template
            .render(Value::from(context))
            .map_err(|e| self.error(&e))
    }
}

/// What a model's files say about chatting: its template (text and where it came from) and the
/// strings of its BOS and EOS tokens.
struct ModelChatFiles {
    template: Option<(String, String)>,
    bos: Option<String>,
    eos: Option<String>,
}

impl ModelChatFiles {
    fn read(model: &Model, tokenizer: &Tokenizer) -> Result<Self> {
        let path = model.path();
        let id_token = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id));
        let config_bos = id_token(model.config().bos_token_id());
        let config_eos = id_token(model.eos_token_ids().first().copied());
        if crate::bitnet::gguf_load::is_gguf(path) {
            let g = tritlab_gguf::GgufFile::open(path)?;
            let key = |k: &str| g.u64_key(k).ok().flatten().map(|v| v as u32);
            return Ok(Self {
                template: crate::tokenizer::gguf::chat_template(&g)
                    .map(|t| (t, format!("{} (tokenizer.chat_template)", path.display()))),
                bos: id_token(key("tokenizer.ggml.bos_token_id")).or(config_bos),
                eos: id_token(key("tokenizer.ggml.eos_token_id")).or(config_eos),
            });
        }
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new("."))
        } else {
            path
        };
        let config_path = dir.join("tokenizer_config.json");
        let config: Option<serde_json::Value> =
            match std::fs::read_to_string(&config_path) {
                Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
                    EngineError::config(&config_path, format!("not valid JSON: {e}"))
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(EngineError::io(&config_path, e)),
            };
        let token = |key: &str| -> Option<String> {
            let v = config.as_ref()?.get(key)?;
            // A plain string, or an AddedToken object with its text in `content`.
            v.as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))
                .map(str::to_string)
        };
        let bos = token("bos_token").or(config_bos);
        let eos = token("eos_token").or(config_eos);
        // transformers writes the template into a file of its own since 4.50 and reads that
        // before tokenizer_config.json.
        let jinja_path = dir.join("chat_template.jinja");
        if jinja_path.is_file() {
            let text = std::fs::read_to_string(&jinja_path)
                .map_err(|e| EngineError::io(&jinja_path, e))?;
            let origin = jinja_path.display().to_string();
            return Ok(Self {
                template: Some((text, origin)),
                bos,
                eos,
            });
        }
        let origin = format!("{} (chat_template)", config_path.display());
        let template = match config.as_ref().and_then(|c| c.get("chat_template")) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // Several named templates: transformers uses the one called `default`.
            Some(serde_json::Value::Array(list)) => Some(
                list.iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template")?.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        EngineError::config(
                            &config_path,
                            "chat_template lists named templates but none called \"default\"",
                        )
                    })?,
            ),
            Some(_) => {
                return Err(EngineError::config(
                    &config_path,
                    "chat_template is neither a string nor a list of named templates",
                ))
            }
        };
        Ok(Self {
            template: template.map(|t| (t, origin)),
            bos,
            eos,
        })
    }
}

/// The ids that end an assistant turn: the model's EOS ids, the template's `eos_token`, and the
/// [`TURN_END_TOKENS`] the tokenizer has as added tokens. Sorted, without repeats.
pub fn turn_end_ids(
    model: &Model,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Vec<u32> {
    let mut ids: Vec<u32> = model.eos_token_ids().to_vec();
    if let Some(eos) = template.and_then(ChatTemplate::eos_token) {
        ids.extend(tokenizer.added_token_id(eos));
    }
    ids.extend(
        TURN_END_TOKENS
            .iter()
            .filter_map(|t| tokenizer.added_token_id(t)),
    );
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A conversation: its messages, and the KV cache of the ids the model has seen of it.
#[derive(Debug, Clone)]
pub struct Conversation {
    messages: Vec<ChatMessage>,
    cache: KvCache,
    /// The ids whose keys and values `cache` holds, in order (`cached.len() == cache.len()`).
    cached: Vec<u32>,
}

impl Conversation {
    /// An empty conversation for `model`, opened by `system` if given.
    pub fn new(model: &Model, system: Option<String>) -> Self {
        Self {
            messages: system
                .map(|s| vec![ChatMessage::new(Role::System, s)])
                .unwrap_or_default(),
            cache: model.new_cache(),
            cached: Vec::new(),
        }
    }

    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// The ids whose keys and values are cached.
    pub fn cached_ids(&self) -> &[u32] {
        &self.cached
    }

    /// Bytes the KV cache holds.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Completed user–assistant exchanges.
    pub fn turns(&self) -> usize {
        self.messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count()
    }

    /// Starts the turn in which the user says `message`: renders the conversation with it and
    /// the generation prompt, tokenizes that (the template writes the special tokens itself, so
    /// the tokenizer adds none), keeps the cached keys and values of the longest common prefix
    /// with what the model has seen, and prefills the rest. At least the last id is always
    /// prefilled, since its logits are what the reply starts from.
    ///
    /// The cache moves into the returned turn; until [`PendingTurn::run`] brings it back the
    /// conversation has an empty one, so a turn that fails or is dropped costs a full prefill
    /// next time, never a cache that disagrees with its ids.
    pub fn start_turn<'m>(
        &mut self,
        model: &'m Model,
        tokenizer: &'m Tokenizer,
        template: &ChatTemplate,
        message: &str,
        options: GenerateOptions,
    ) -> Result<PendingTurn<'m>> {
        let mut messages = self.messages.clone();
        messages.push(ChatMessage::new(Role::User, message));
        let text = template.render(&messages, true)?;
        let prompt = tokenizer.encode(&text, false)?;
        if prompt.is_empty() {
            return Err(EngineError::Invalid(
                "the chat template rendered the conversation to no tokens".into(),
            ));
        }
        let mut cache = std::mem::take(&mut self.cache);
        let cached = std::mem::take(&mut self.cached);
        // A cache that went with a turn that did not come back (an error) is empty and has no
        // layers; one whose ids are not known is not trusted.
        let usable = cached.len() == cache.len() && cache.layers() == model.layers().len();
        let common = if usable {
            cached
                .iter()
                .zip(&prompt)
                .take_while(|(a, b)| a == b)
                .count()
        } else {
            cache = model.new_cache();
            0
        };
        let reused = common.min(prompt.len() - 1);
        cache.truncate(reused);
        let mut generator = Generator::with_cache(model, Some(tokenizer), options, cache)?;
        let t0 = Instant::now();
        generator.prefill(&prompt[reused..])?;
        Ok(PendingTurn {
            generator,
            user: message.to_string(),
            prompt,
            reused,
            prefill_seconds: t0.elapsed().as_secs_f64(),
        })
    }
}

/// A turn whose prompt is prefilled and whose reply is still to be generated.
pub struct PendingTurn<'m> {
    generator: Generator<'m>,
    user: String,
    prompt: Vec<u32>,
    reused: usize,
    prefill_seconds: f64,
}

impl PendingTurn<'_> {
    /// The ids of the whole rendered conversation.
    pub fn prompt_ids(&self) -> &[u32] {
        &self.prompt
    }

    /// How many of them came from the cache.
    pub fn reused_tokens(&self) -> usize {
        self.reused
    }

    /// The logits the reply's first token is chosen from.
    pub fn next_logits(&self) -> Option<&[f32]> {
        self.generator.pending_logits()
    }

    /// Generates the reply (the callback sees every step and may stop it) and records the turn
    /// in `conversation`: the user's message, the reply as far as it got (a stopped reply is
    /// what was said), and the cache with the ids it now holds.
    pub fn run(
        mut self,
        conversation: &mut Conversation,
        callback: impl FnMut(&GenerationStep) -> StepControl,
    ) -> Result<ChatTurn> {
        let t1 = Instant::now();
        let (reply, stop_reason) = decode_loop(&mut self.generator, callback)?;
        let decode_seconds = t1.elapsed().as_secs_f64();
        let tokens = self.generator.generated().to_vec();
        let cache = self.generator.into_cache();
        let mut cached = self.prompt.clone();
        cached.extend_from_slice(&tokens);
        cached.truncate(cache.len());
        conversation.cache = cache;
        conversation.cached = cached;
        conversation
            .messages
            .push(ChatMessage::new(Role::User, self.user));
        conversation
            .messages
            .push(ChatMessage::new(Role::Assistant, reply.clone()));
        Ok(ChatTurn {
            reply,
            tokens,
            stop_reason,
            prompt_tokens: self.prompt.len(),
            reused_tokens: self.reused,
            prefill_seconds: self.prefill_seconds,
            decode_seconds,
        })
    }
}

/// A finished turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTurn {
    pub reply: String,
    /// The reply's ids (the id that ended the turn is not among them).
    pub tokens: Vec<u32>,
    pub stop_reason: StopReason,
    /// Ids of the whole rendered conversation up to the generation prompt.
    pub prompt_tokens: usize,
    /// How many of those came from the cache of earlier turns.
    pub reused_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl ChatTurn {
    /// Ids the model had to read this turn.
    pub fn prefilled_tokens(&self) -> usize {
        self.prompt_tokens - self.reused_tokens
    }
}

/// One turn: [`Conversation::start_turn`], then [`PendingTurn::run`]. The options' stop tokens
/// are extended by [`turn_end_ids`].
pub fn chat_turn(
    model: &Model,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    conversation: &mut Conversation,
    message: &str,
    options: &GenerateOptions,
    callback: impl FnMut(&GenerationStep) -> StepControl,
) -> Result<ChatTurn> {
    let mut options = options.clone();
    options
        .stop_tokens
        .extend(turn_end_ids(model, tokenizer, Some(template)));
    conversation
        .start_turn(model, tokenizer, template, message, options)?
        .run(conversation, callback)
}
