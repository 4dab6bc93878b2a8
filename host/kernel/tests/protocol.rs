//! The kernel over real ZeroMQ sockets, driven by a client built on the same protocol crates:
//! kernel_info, execute (outputs, errors, a panicking cell), completion, inspection,
//! is_complete, history, a message signed with the wrong key, and shutdown.

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use jupyter_protocol::{
    CompleteRequest, ConnectionInfo, ExecuteRequest, HistoryRequest, InspectRequest,
    IsCompleteRequest, JupyterMessage, JupyterMessageContent, KernelInfoRequest, ShutdownRequest,
    Transport,
};
use jupyter_zmq_client::{
    create_client_control_connection, create_client_iopub_connection,
    create_client_shell_connection_with_identity, peer_identity_for_session,
    wait_for_iopub_welcome, ClientIoPubConnection, ClientShellConnection,
};
use serde_json::Value;
use tritlab_kernel::KernelOptions;
use tritlab_session::{RustEvaluator, SessionConfig};

/// A Rust evaluator that panics on request, standing in for a command that panics.
struct Panicky;

impl RustEvaluator for Panicky {
    fn eval(&mut self, code: &str, _cancel: &AtomicBool) -> Result<String, String> {
        if code.contains("boom") {
            panic!("boom in a Rust cell");
        }
        Ok(format!("ran {}", code.trim()))
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn connection_info(key: &str) -> ConnectionInfo {
    let ports = free_ports(5);
    ConnectionInfo {
        transport: Transport::TCP,
        ip: "127.0.0.1".into(),
        shell_port: ports[0],
        iopub_port: ports[1],
        stdin_port: ports[2],
        control_port: ports[3],
        hb_port: ports[4],
        signature_scheme: "hmac-sha256".into(),
        key: key.into(),
        kernel_name: Some("tritlab".into()),
    }
}

struct Client {
    shell: ClientShellConnection,
    iopub: ClientIoPubConnection,
}

impl Client {
    async fn connect(info: &ConnectionInfo) -> Client {
        let session = format!("test-{}", info.key);
        let identity = peer_identity_for_session(&session).unwrap();
        let shell = create_client_shell_connection_with_identity(info, &session, identity)
            .await
            .unwrap();
        let mut iopub = create_client_iopub_connection(info, "", &session)
            .await
            .unwrap();
        wait_for_iopub_welcome(&mut iopub, Duration::from_secs(5))
            .await
            .unwrap();
        Client { shell, iopub }
    }

    /// Sends a request; returns its reply and the IOPub messages up to its `idle` status.
    async fn request(
        &mut self,
        content: impl Into<JupyterMessageContent>,
    ) -> (JupyterMessage, Vec<JupyterMessage>) {
        let request = JupyterMessage::new(content.into(), None);
        let id = request.header.msg_id.clone();
        self.shell.send(request).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(60), self.shell.read())
            .await
            .expect("a reply in time")
            .unwrap();
        assert_eq!(reply.parent_header.as_ref().unwrap().msg_id, id);
        let mut published = Vec::new();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.iopub.read())
                .await
                .expect("IOPub messages in time")
                .unwrap();
            if message.parent_header.as_ref().map(|h| &h.msg_id) != Some(&id) {
                continue;
            }
            let idle = matches!(&message.content, JupyterMessageContent::Status(s)
                if s.execution_state == jupyter_protocol::ExecutionState::Idle);
            published.push(message);
            if idle {
                return (reply, published);
            }
        }
    }
}

fn json(message: &JupyterMessage) -> Value {
    serde_json::to_value(&message.content).unwrap()
}

fn types(messages: &[JupyterMessage]) -> Vec<String> {
    messages.iter().map(|m| m.header.msg_type.clone()).collect()
}

fn execute(code: &str) -> ExecuteRequest {
    ExecuteRequest::new(code.to_string())
}

#[test]
fn a_kernel_serves_a_real_client() {
    let info = connection_info("a-secret-key");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kernel.json");
    std::fs::write(&file, serde_json::to_string(&info).unwrap()).unwrap();
    let options = KernelOptions {
        session: SessionConfig::default(),
        rust: Arc::new(|| Some(Box::new(Panicky) as Box<dyn RustEvaluator>)),
    };
    let kernel = std::thread::spawn(move || tritlab_kernel::run(&file, options));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Give the kernel a moment to bind its sockets.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut client = Client::connect(&info).await;

        let (reply, published) = client.request(KernelInfoRequest {}).await;
        let info_json = json(&reply);
        assert_eq!(info_json["protocol_version"], "5.3");
        assert_eq!(info_json["language_info"]["name"], "tritlab");
        assert_eq!(types(&published), ["status", "status"]);

        // A command: its text is a stdout stream, the reply counts it.
        let (reply, published) = client.request(execute("help")).await;
        assert_eq!(json(&reply)["status"], "ok");
        assert_eq!(json(&reply)["execution_count"], 1);
        assert_eq!(
            types(&published),
            ["status", "execute_input", "stream", "status"]
        );
        assert!(json(&published[2])["text"]
            .as_str()
            .unwrap()
            .contains("generate"));

        // A failing command: an `error` on IOPub and an error reply, same ename/evalue.
        let (reply, published) = client
            .request(execute("generate \"x\" --max-tokens 2"))
            .await;
        let reply_json = json(&reply);
        assert_eq!(reply_json["status"], "error");
        assert_eq!(reply_json["execution_count"], 2);
        // The ename says the kind of the session's error.
        assert_eq!(reply_json["ename"], "NoModelError");
        assert!(reply_json["evalue"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("no model is loaded"));
        let error = published
            .iter()
            .find(|m| m.header.msg_type == "error")
            .expect("an error output");
        assert_eq!(json(error)["evalue"], reply_json["evalue"]);

        // A panicking cell fails; the kernel and its session live on.
        let (reply, _) = client.request(execute(":rust\nboom();")).await;
        assert_eq!(json(&reply)["status"], "error");
        let (reply, published) = client.request(execute(":rust\nlet x = 1;")).await;
        assert_eq!(json(&reply)["status"], "ok", "{published:?}");

        // Completion, inspection, is_complete, history.
        let (reply, _) = client
            .request(CompleteRequest {
                code: "gen".into(),
                cursor_pos: 3,
            })
            .await;
        let complete = json(&reply);
        assert_eq!(complete["cursor_start"], 0);
        assert!(complete["matches"]
            .as_array()
            .unwrap()
            .contains(&Value::from("generate")));
        let (reply, _) = client
            .request(InspectRequest {
                code: "generate --max-tokens 3".into(),
                cursor_pos: 2,
                detail_level: Some(0),
            })
            .await;
        assert_eq!(json(&reply)["found"], true);
        let (reply, _) = client
            .request(IsCompleteRequest {
                code: "generate --prompt \"open".into(),
            })
            .await;
        assert_eq!(json(&reply)["status"], "incomplete");
        let (reply, _) = client
            .request(HistoryRequest::Tail {
                n: 2,
                output: false,
                raw: true,
            })
            .await;
        let history = json(&reply)["history"].clone();
        assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
        assert_eq!(history[1][2], ":rust\nlet x = 1;");

        // A request signed with another key is dropped; the kernel keeps serving.
        let mut wrong = info.clone();
        wrong.key = "not-the-key".into();
        let identity = peer_identity_for_session("intruder").unwrap();
        let mut intruder =
            create_client_shell_connection_with_identity(&wrong, "intruder", identity)
                .await
                .unwrap();
        intruder
            .send(JupyterMessage::new(execute("help"), None))
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_millis(700), intruder.read()).await;
        assert!(answer.is_err(), "the kernel answered a forged request");
        let (reply, _) = client.request(execute("help generate")).await;
        assert_eq!(json(&reply)["status"], "ok");
        assert_eq!(
            json(&reply)["execution_count"],
            5,
            "the forged request did not run"
        );

        // Shutdown on the control channel.
        let mut control = create_client_control_connection(&info, "test-control")
            .await
            .unwrap();
        control
            .send(JupyterMessage::new(
                ShutdownRequest { restart: false },
                None,
            ))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), control.read())
            .await
            .expect("a shutdown reply")
            .unwrap();
        assert_eq!(reply.header.msg_type, "shutdown_reply");
    });
    let result = kernel.join().expect("the kernel thread did not panic");
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn bad_connection_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let err =
        tritlab_kernel::run(&missing, KernelOptions::new(SessionConfig::default())).unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"ip\": 3}").unwrap();
    let err = tritlab_kernel::run(&bad, KernelOptions::new(SessionConfig::default())).unwrap_err();
    assert!(
        err.to_string().contains("not a Jupyter connection file"),
        "{err}"
    );
    let mut info = connection_info("k");
    info.signature_scheme = "hmac-md5".into();
    let md5 = dir.path().join("md5.json");
    std::fs::write(&md5, serde_json::to_string(&info).unwrap()).unwrap();
    let err = tritlab_kernel::run(&md5, KernelOptions::new(SessionConfig::default())).unwrap_err();
    assert!(err.to_string().contains("hmac-md5"), "{err}");
}
