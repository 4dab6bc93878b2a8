//! OpenAI's request bodies as clients send them, and their checks: every problem is a 400 that
//! names the field (`param`), a model other than the one served is a 404.
//!
//! Fields tritlab does not implement are refused when they would change the answer
//! (`n` > 1, penalties, `echo`, `logit_bias`), and ignored when they would not (`user`,
//! `service_tier`, …), as unknown fields are.

use crate::error::ApiError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Parses a request body: JSON, and an object.
pub fn parse_body(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

/// Reads the fields `T` declares from a request object (others are ignored), naming the field
/// at fault when one is missing or has the wrong type.
pub fn fields<T: DeserializeOwned>(body: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // "missing field `prompt`" is reported at the object that lacks it.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            let param = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return ApiError::invalid(param.clone(), format!("`{param}` is required"));
        }
        ApiError::invalid(path.clone(), format!("`{path}`: {message}"))
    })
}

/// `stop`: one string or a list of up to four.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `prompt` of a completion: text, a list holding one text, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a string, a list of one string, or a list of token ids"
)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The options completions and chat completions share (read from the same object as the
/// endpoint's own fields).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Not OpenAI's, but what llama.cpp's and vLLM's servers take (0 or -1: off).
    pub top_k: Option<i64>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// vLLM's: keep generating past the model's end-of-text ids.
    #[serde(default)]
    pub ignore_eos: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    /// How many top log-probabilities each token carries (0: only the chosen token's).
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
}

/// A message's content: text, or a list of parts of which tritlab reads the text ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a string or a list of content parts")]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    /// OpenAI's newer name for `max_tokens`.
    pub max_completion_tokens: Option<u64>,
}

/// `POST /tokenize`: a prompt, or messages rendered with the chat template.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<Message>>,
    /// Default: true for a prompt (as completions tokenise it), false for messages (the
    /// template writes the special tokens).
    pub add_special_tokens: Option<bool>,
}

/// `POST /detokenize`.
#[derive(Debug, Clone, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

/// The most `logprobs` / `top_logprobs` a request may ask for.
pub const MAX_TOP_LOGPROBS: u32 = 20;

impl Common {
    /// Refuses what tritlab does not do, naming the field.
    pub fn check_unsupported(&self) -> Result<(), ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid(
                    "n",
                    format!("`n` is {n}; this server generates one choice per request (n = 1)"),
                ));
            }
        }
        for (name, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if value.is_some_and(|v| v != 0.0) {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` is not supported (only 0)"),
                ));
            }
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(ApiError::invalid(
                "logit_bias",
                "`logit_bias` is not supported",
            ));
        }
        Ok(())
    }

    /// `temperature` (default 1, as OpenAI's), `top_p`, `top_k`.
    pub fn sampling(&self) -> Result<(f32, Option<f32>, Option<usize>), ApiError> {
        let temperature = self.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
            return Err(ApiError::invalid(
                "temperature",
                format!("`temperature` is {temperature}; it must be between 0 and 2"),
            ));
        }
        let top_p = match self.top_p {
            Some(p) if !(p > 0.0 && p <= 1.0) => {
                return Err(ApiError::invalid(
                    "top_p",
                    format!("`top_p` is {p}; it must be greater than 0 and at most 1"),
                ))
            }
            p => p,
        };
        let top_k = match self.top_k {
            None | Some(0) | Some(-1) => None,
            Some(k) if k > 0 => Some(k as usize),
            Some(k) => {
                return Err(ApiError::invalid(
                    "top_k",
                    format!("`top_k` is {k}; it must be at least 1 (0 or -1: no cut)"),
                ))
            }
        };
        Ok((temperature, top_p, top_k))
    }

    /// `stop` as a list: at most four non-empty strings.
    pub fn stop_strings(&self) -> Result<Vec<String>, ApiError> {
        let list = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if list.len() > 4 {
            return Err(ApiError::invalid(
                "stop",
                format!("`stop` has {} strings; at most 4", list.len()),
            ));
        }
        if list.iter().any(String::is_empty) {
            return Err(ApiError::invalid(
                "stop",
                "`stop` strings must not be empty",
            ));
        }
        Ok(list)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> ApiError {
        fields::<T>(&parse_body(body.as_bytes()).unwrap()).unwrap_err()
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = err::<Common>(r#"{"prompt":"x","temperature":"hot"}"#);
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e:?}");
        let e = err::<CompletionRequest>(r#"{"temperature":1}"#);
        assert_eq!(e.param.as_deref(), Some("prompt"), "{e:?}");
        let e = err::<ChatRequest>(r#"{"messages":[{"content":"hi"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"), "{e:?}");
        let e = err::<CompletionRequest>(r#"{"prompt":{"a":1}}"#);
        assert_eq!(e.param.as_deref(), Some("prompt"), "{e:?}");
        assert!(e.message.contains("list of token ids"), "{e:?}");
        let e = parse_body(br#"{"prompt":"x""#).unwrap_err();
        assert_eq!(e.param, None);
        assert!(e.message.contains("not valid JSON"), "{e:?}");
        let e = parse_body(b"[1]").unwrap_err();
        assert!(e.message.contains("JSON object"), "{e:?}");
    }
}
