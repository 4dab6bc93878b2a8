//! The server over real sockets on 127.0.0.1: answers equal the engine's own generation, whether
//! streamed, whole or batched with others; every error path answers with an OpenAI error object;
//! auth, the bounded queue, disconnects, time limits and panics behave.

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tritlab_engine::{
    chat_turn, generate, ChatTemplate, Conversation, GenerateOptions, SamplingOptions, StepControl,
};
use tritlab_server::ServerConfig;

/// What `generate` (the engine's, as `tritlab generate` runs it) says for a prompt.
fn generated(prompt: &str, max_tokens: usize, sampling: SamplingOptions) -> (String, usize) {
    let (model, tokenizer) = load();
    let options = GenerateOptions {
        max_tokens,
        sampling,
        ..GenerateOptions::default()
    };
    let g = generate(&model, &tokenizer, prompt, &options, |_| {
        StepControl::Continue
    })
    .unwrap();
    (g.text, g.tokens.len())
}

fn sampled(seed: u64) -> SamplingOptions {
    SamplingOptions {
        temperature: 0.8,
        top_k: Some(40),
        top_p: Some(0.9),
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_whole_and_streamed_equal_generate() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (want, n) = generated("To be, or not to be", 24, SamplingOptions::greedy());
    let request = json!({"model": "default", "prompt": "To be, or not to be", "max_tokens": 24, "temperature": 0});
    let (status, body) = server.post("/v1/completions", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], want.as_str());
    assert_eq!(body["usage"]["completion_tokens"], n);
    let finish = if n == 24 { "length" } else { "stop" };
    assert_eq!(body["choices"][0]["finish_reason"], finish);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, events) = server.stream("/v1/completions", &streamed).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(streamed_text(&events), want);
    let usage = parse(&events[events.len() - 2]);
    assert_eq!(usage["usage"]["completion_tokens"], n, "{usage}");

    // Seeded sampling: the same sampler as `generate --seed`.
    let (want, _) = generated("Once upon a time", 20, sampled(7));
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0.8,
                    "top_k": 40, "top_p": 0.9, "seed": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["choices"][0]["text"], want.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_renders_the_template_like_chat() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (model, tokenizer) = load();
    let template = ChatTemplate::new(template_source(), "2b4t fixture").unwrap();
    let mut conversation = Conversation::new(&model, None);
    let options = GenerateOptions {
        max_tokens: 20,
        sampling: SamplingOptions::greedy(),
        ..GenerateOptions::default()
    };
    let turn = chat_turn(
        &model,
        &tokenizer,
        &template,
        &mut conversation,
        "Who art thou?",
        &options,
        |_| StepControl::Continue,
    )
    .unwrap();
    let request = json!({"model": "default", "messages": [{"role": "user", "content": "Who art thou?"}],
                         "max_tokens": 20, "temperature": 0, "stream": true});
    let (status, events) = server.stream("/v1/chat/completions", &request).await;
    assert_eq!(status, StatusCode::OK);
    let first = parse(&events[0]);
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&events), turn.reply);
    // Content parts are read as text.
    let parts = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "Who art thou?"}]}],
                       "max_tokens": 20, "temperature": 0});
    let (status, body) = server.post("/v1/chat/completions", &parts).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        turn.reply.as_str()
    );
    assert_eq!(body["usage"]["prompt_tokens"], turn.prompt_tokens);
    server.stop().await;
}

/// Requests that run together (batched decode steps, prompts prefilled in chunks beside the
/// others) answer exactly what each answers alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_answer_what_they_answer_alone() {
    let config = ServerConfig {
        max_batch: 4,
        prefill_chunk: 8,
        ..ServerConfig::default()
    };
    let server = std::sync::Arc::new(TestServer::start(config).await);
    let long_prompt =
        "Now is the winter of our discontent made glorious summer by this sun of York";
    let requests: Vec<Value> = (0..6)
        .map(|i| {
            let prompt = match i % 3 {
                0 => long_prompt.to_string(),
                1 => "To be".to_string(),
                _ => format!("My lord, {i}"),
            };
            if i % 2 == 0 {
                json!({"prompt": prompt, "max_tokens": 32, "temperature": 0, "ignore_eos": true})
            } else {
                json!({"prompt": prompt, "max_tokens": 32, "temperature": 0.9, "seed": i, "ignore_eos": true})
            }
        })
        .collect();
    let mut alone = Vec::new();
    for r in &requests {
        let (status, body) = server.post("/v1/completions", r).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        alone.push(body["choices"][0]["text"].as_str().unwrap().to_string());
    }
    let before = server.metric("tritlab_batch_size_count").await;
    let before_sum = server.metric("tritlab_batch_size_sum").await;
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|r| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut r = r;
                r["stream"] = json!(true);
                let (status, events) = server.stream("/v1/completions", &r).await;
                assert_eq!(status, StatusCode::OK);
                streamed_text(&events)
            })
        })
        .collect();
    for (task, want) in tasks.into_iter().zip(&alone) {
        assert_eq!(&task.await.unwrap(), want);
    }
    let steps = server.metric("tritlab_batch_size_count").await - before;
    let rows = server.metric("tritlab_batch_size_sum").await - before_sum;
    assert!(
        rows / steps > 1.5,
        "{rows} sequences in {steps} steps: not batched"
    );
    std::sync::Arc::try_unwrap(server)
        .ok()
        .unwrap()
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_is_an_error_object_naming_the_field() {
    let config = ServerConfig {
        context: Some(64),
        max_body_bytes: 4096,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let bad = StatusCode::BAD_REQUEST;
    let cases: Vec<(&str, Value, StatusCode, Option<&str>)> = vec![
        (
            "/v1/completions",
            json!({"prompt": "x", "temperature": "hot"}),
            bad,
            Some("temperature"),
        ),
        (
            "/v1/completions",
            json!({"max_tokens": 3}),
            bad,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "temperature": 3}),
            bad,
            Some("temperature"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "top_p": 0}),
            bad,
            Some("top_p"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "top_k": -5}),
            bad,
            Some("top_k"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "n": 2}),
            bad,
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "max_tokens": 0}),
            bad,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "max_tokens": 100}),
            bad,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x ".repeat(200)}),
            bad,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [5, 999999]}),
            bad,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": ["a", "b"]}),
            bad,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}),
            bad,
            Some("stop"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 21}),
            bad,
            Some("logprobs"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "presence_penalty": 1}),
            bad,
            Some("presence_penalty"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "echo": true}),
            bad,
            Some("echo"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "model": "gpt-4"}),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": []}),
            bad,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            bad,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"content": "x"}]}),
            bad,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}),
            bad,
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            bad,
            Some("messages[0].content[0]"),
        ),
        (
            "/detokenize",
            json!({"tokens": [1, 100000]}),
            bad,
            Some("tokens"),
        ),
        ("/tokenize", json!({}), bad, Some("prompt")),
    ];
    for (path, body, want, param) in cases {
        let (status, answer) = server.post(path, &body).await;
        assert_error(status, &answer, want, param);
    }
    // Not JSON, not an object, too large, no such endpoint or method.
    let (status, _, text) = server
        .send("POST", "/v1/completions", &[], "{\"prompt\": ")
        .await;
    assert_error(status, &parse(&text), bad, None);
    let (status, _, text) = server.send("POST", "/v1/completions", &[], "[1, 2]").await;
    assert_error(status, &parse(&text), bad, None);
    let big = json!({"prompt": "x".repeat(5000)}).to_string();
    let (status, _, text) = server.send("POST", "/v1/completions", &[], &big).await;
    assert_error(status, &parse(&text), StatusCode::PAYLOAD_TOO_LARGE, None);
    let (status, _, text) = server.send("GET", "/v1/nothing", &[], "").await;
    assert_error(status, &parse(&text), StatusCode::NOT_FOUND, None);
    let (status, _, text) = server.send("GET", "/v1/completions", &[], "").await;
    assert_error(status, &parse(&text), StatusCode::METHOD_NOT_ALLOWED, None);
    let (status, text) = server.get("/v1/models/gpt-4").await;
    assert_error(status, &parse(&text), StatusCode::NOT_FOUND, Some("model"));
    // The server still answers.
    let (status, text) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_guards_everything_but_health() {
    let config = ServerConfig {
        api_key: Some("sesame".into()),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let body = json!({"prompt": "To be", "max_tokens": 2}).to_string();
    for headers in [
        vec![],
        vec![("authorization", "Bearer open")],
        vec![("authorization", "sesame")],
    ] {
        let (status, _, text) = server
            .send("POST", "/v1/completions", &headers, &body)
            .await;
        assert_error(status, &parse(&text), StatusCode::UNAUTHORIZED, None);
        let (status, _, _) = server.send("GET", "/v1/models", &headers, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = server.send("GET", "/metrics", &headers, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let ok = [("authorization", "bearer sesame")];
    let (status, _, text) = server.send("POST", "/v1/completions", &ok, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, text) = server.send("GET", "/v1/models", &ok, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parse(&text)["data"][0]["id"], "default");
    let (status, _, _) = server.send("GET", "/health", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

/// With one sequence running and one waiting, a third request is refused with 429 and
/// `Retry-After`; the running one's client leaving cancels it at the next step, and the waiting
/// one then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_and_a_departed_client_cancels() {
    let config = ServerConfig {
        max_batch: 1,
        max_queue: 1,
        ..ServerConfig::default()
    };
    let server = std::sync::Arc::new(TestServer::start(config).await);
    // Long enough to be running while the others arrive.
    let long = json!({"prompt": "To be", "max_tokens": 2000, "ignore_eos": true, "stream": true});
    let mut running = server
        .open("POST", "/v1/completions", &[], &long.to_string())
        .await;
    assert_eq!(running.status(), StatusCode::OK);
    {
        use http_body_util::BodyExt;
        let frame = running.body_mut().frame().await.unwrap().unwrap();
        assert!(frame.data_ref().is_some_and(|d| d.starts_with(b"data:")));
    }
    let waiting = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .post(
                    "/v1/completions",
                    &json!({"prompt": "My lord", "max_tokens": 4}),
                )
                .await
        })
    };
    // Until the second one is queued.
    for _ in 0..200 {
        if server.metric("tritlab_queue_depth").await == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.metric("tritlab_queue_depth").await, 1.0);
    let (status, headers, text) = server
        .send(
            "POST",
            "/v1/completions",
            &[],
            &json!({"prompt": "x"}).to_string(),
        )
        .await;
    assert_error(status, &parse(&text), StatusCode::TOO_MANY_REQUESTS, None);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(server.metric("tritlab_requests_rejected_total").await, 1.0);

    drop(running);
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting request runs once the departed one is dropped")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.metric("tritlab_requests_cancelled_total").await, 1.0);
    let generated = server.metric("tritlab_generated_tokens_total").await;
    assert!(
        generated < 2000.0,
        "the cancelled sequence ran on: {generated} tokens"
    );
    std::sync::Arc::try_unwrap(server)
        .ok()
        .unwrap()
        .stop()
        .await;
}

/// A client that closes its connection while waiting for a whole (not streamed) answer cancels
/// its sequence too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_client_of_a_whole_answer_cancels() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(ServerConfig::default()).await;
    let body = json!({"prompt": "To be", "max_tokens": 2000, "ignore_eos": true}).to_string();
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    for _ in 0..200 {
        if server.metric("tritlab_generated_tokens_total").await > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(socket);
    for _ in 0..200 {
        if server.metric("tritlab_requests_cancelled_total").await == 1.0
            && server.metric("tritlab_active_sequences").await == 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.metric("tritlab_requests_cancelled_total").await, 1.0);
    assert_eq!(server.metric("tritlab_active_sequences").await, 0.0);
    let generated = server.metric("tritlab_generated_tokens_total").await;
    assert!(
        generated < 2000.0,
        "the cancelled sequence ran on: {generated} tokens"
    );
    server.stop().await;
}

/// A panic in the engine thread fails that request with a 500 (or an error event) and the server
/// goes on serving, others in the same batch included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_500_and_the_server_lives_on() {
    let config = ServerConfig {
        fault_prompt: Some("PANIC".into()),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"prompt": "PANIC", "max_tokens": 4}),
        )
        .await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR, None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{body}"
    );
    let (status, events) = server
        .stream(
            "/v1/completions",
            &json!({"prompt": "PANIC", "stream": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(parse(&events[0])["error"]["code"], "internal_error");
    assert_eq!(events[1], "[DONE]");
    let (want, _) = generated("To be", 8, SamplingOptions::greedy());
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"prompt": "To be", "max_tokens": 8, "temperature": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["choices"][0]["text"], want.as_str());
    assert_eq!(server.metric("tritlab_requests_failed_total").await, 2.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_time_limit_is_a_504() {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"prompt": "To be", "max_tokens": 2000, "ignore_eos": true}),
        )
        .await;
    assert_error(status, &body, StatusCode::GATEWAY_TIMEOUT, None);
    assert_eq!(server.metric("tritlab_requests_timed_out_total").await, 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_stop_strings_tokenize_and_metrics() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (full, _) = generated("To be, or not to be", 24, SamplingOptions::greedy());
    // Greedy: the chosen token is the most likely one.
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"prompt": "To be, or not to be", "max_tokens": 24, "temperature": 0, "logprobs": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lp = &body["choices"][0]["logprobs"];
    let n = body["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), n, "{lp}");
    for (chosen, top) in lp["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(lp["top_logprobs"].as_array().unwrap())
    {
        let top = top.as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3, "{lp}");
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        let chosen = chosen.as_f64().unwrap();
        assert!(chosen <= 0.0 && (chosen - best).abs() < 1e-5, "{lp}");
    }
    // Chat logprobs.
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0,
                    "logprobs": true, "top_logprobs": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let content = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert!(
        !content.is_empty() && content[0]["top_logprobs"].as_array().unwrap().len() == 2,
        "{body}"
    );

    // A stop string ends the text before it.
    let cut = full.char_indices().nth(full.chars().count() / 2).unwrap().0;
    let stop: String = full[cut..].chars().take(3).collect();
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"prompt": "To be, or not to be", "max_tokens": 24, "temperature": 0, "stop": stop}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["choices"][0]["text"],
        full[..full.find(&stop).unwrap()]
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    // Tokenize and back.
    let (status, body) = server
        .post("/tokenize", &json!({"prompt": "To be, or not to be"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tokens = body["tokens"].clone();
    let (status, body) = server.post("/detokenize", &json!({"tokens": tokens})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["prompt"]
            .as_str()
            .unwrap()
            .contains("To be, or not to be"),
        "{body}"
    );

    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "# TYPE tritlab_requests_total counter",
        "tritlab_requests_total{endpoint=\"completions\",status=\"200\"}",
        "# TYPE tritlab_time_to_first_token_seconds histogram",
        "# TYPE tritlab_inter_token_latency_seconds histogram",
        "# TYPE tritlab_batch_size histogram",
        "tritlab_queue_depth 0",
        "tritlab_generated_tokens_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    server.stop().await;
}
