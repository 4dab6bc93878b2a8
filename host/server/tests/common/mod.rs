//! A server on 127.0.0.1 (a free port) over the shipped default model, and an HTTP/1.1 client
//! made of hyper's own connection: real sockets, nothing mocked.

#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tritlab_engine::{ChatTemplate, HeadPrecision, Model, OutputHead, Tokenizer};
use tritlab_server::{Engine, Server, ServerConfig, ServerError};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn default_model() -> PathBuf {
    repo().join("assets/default-model")
}

/// BitNet b1.58 2B-4T's chat template (the default model has none).
pub fn template_source() -> String {
    let path = repo().join("tests/fixtures/chat/bitnet-2b4t/tokenizer_config.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["chat_template"].as_str().unwrap().to_string()
}

/// The model as `tritlab serve` loads it (int8 head, the default).
pub fn load() -> (Model, Tokenizer) {
    let dir = default_model();
    let model = Model::load_with(&dir, OutputHead::Quantized(HeadPrecision::Int8)).unwrap();
    let tokenizer = Tokenizer::for_model(&dir).unwrap();
    (model, tokenizer)
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let (model, tokenizer) = load();
        let template = ChatTemplate::new(template_source(), "2b4t fixture").unwrap();
        let engine = Engine {
            model,
            tokenizer,
            template: Some(template),
            plugins: None,
            tracer: None,
        };
        let server = Server::new(engine, config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts down gracefully and waits (bounded) for the server to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("the server stops")
                .unwrap()
                .unwrap();
        }
    }

    pub async fn open(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response<Incoming> {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        sender.send_request(request).await.unwrap()
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let response = self.open(method, path, headers, body).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// POSTs JSON; the status and the parsed answer.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let (status, _, text) = self.send("POST", path, &[], &body.to_string()).await;
        (status, parse(&text))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let (status, _, text) = self.send("GET", path, &[], "").await;
        (status, text)
    }

    /// A streamed request: the data of every event (`[DONE]` included).
    pub async fn stream(&self, path: &str, body: &Value) -> (StatusCode, Vec<String>) {
        let (status, _, text) = self.send("POST", path, &[], &body.to_string()).await;
        (status, events(&text))
    }

    /// A number from /metrics (a line `NAME VALUE`).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    }
}

pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The data fields of a server-sent event stream.
pub fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The text of a streamed completion or chat completion.
pub fn streamed_text(events: &[String]) -> String {
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| parse(e))
        .filter_map(|c| {
            let choice = c["choices"].get(0)?.clone();
            choice["text"]
                .as_str()
                .or_else(|| choice["delta"]["content"].as_str())
                .map(str::to_string)
        })
        .collect()
}

/// Asserts an OpenAI error object with `status` and `param`.
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode, param: Option<&str>) {
    assert_eq!(status, want, "{body}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert_eq!(e["param"].as_str(), param, "{body}");
    assert!(e.get("code").is_some(), "{body}");
}
