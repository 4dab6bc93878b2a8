//! `tritlab serve` as a process: SIGTERM while a stream is in flight lets the stream finish,
//! then the server exits 0; new connections are refused once it has stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_drains_the_stream_in_flight_and_exits_zero() {
    let scratch = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tritlab"))
        .args(["serve", "default", "--port", "0", "--max-batch", "2"])
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", scratch.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // `listening on http://127.0.0.1:PORT`
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let body = r#"{"prompt": "To be", "max_tokens": 600, "ignore_eos": true, "stream": true}"#;
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Once the first token has arrived, ask the server to stop.
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data: {") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        received.extend_from_slice(&buf[..n]);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    stream.read_to_end(&mut received).unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("\"finish_reason\":\"length\""),
        "the stream did not finish: {text}"
    );
    assert!(text.contains("data: [DONE]"), "{text}");
    let chunks = text.matches("\"object\":\"text_completion\"").count();
    assert!(chunks >= 600, "{chunks} chunks for 600 tokens");

    let started = Instant::now();
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code}");
    assert!(TcpStream::connect(&addr).is_err(), "still listening");
}
