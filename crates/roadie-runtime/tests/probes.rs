//! Probe attempts against real loopback services: a tokio listener, a Python HTTP server,
//! and host commands.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Harness, wait_file};
use roadie_runtime::RuntimeEvent;
use roadie_spec::{ExecAction, HttpGetAction, HttpHeader, IntOrString, Probe, TcpSocketAction};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A small HTTP server with one route per behaviour the probe must tell apart.
const SERVER: &str = r#"
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ok":
            self.reply(200)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/fail":
            self.reply(500)
        elif self.path == "/header":
            good = self.headers.get("X-Probe") == "yes" and self.headers.get("User-Agent") == "custom"
            self.reply(200 if good else 403)
        elif self.path == "/slow":
            time.sleep(5)
            self.reply(200)
        else:
            self.reply(404)

    def reply(self, code):
        body = b"body"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
"#;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn http_server(h: &Harness) -> Server {
    let script = h.path("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let port_file = h.path("port");
    let child = Command::new("python3")
        .arg(&script)
        .arg(&port_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let port = wait_file(&port_file, |t| !t.is_empty())
        .await
        .parse()
        .unwrap();
    Server { child, port }
}

fn http_probe(port: u16, path: &str) -> Probe {
    Probe {
        http_get: Some(HttpGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i64::from(port)),
            ..HttpGetAction::default()
        }),
        // Generous: a loaded test machine must not turn a success into a timeout.
        timeout_seconds: Some(10),
        ..Probe::default()
    }
}

fn tcp_probe(port: IntOrString) -> Probe {
    Probe {
        tcp_socket: Some(TcpSocketAction { port, host: None }),
        // Generous: a loaded test machine must not turn a success into a timeout.
        timeout_seconds: Some(10),
        ..Probe::default()
    }
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: command.iter().map(|s| s.to_string()).collect(),
        }),
        // Generous: a loaded test machine must not turn a success into a timeout.
        timeout_seconds: Some(10),
        ..Probe::default()
    }
}

/// Runs one probe attempt and returns `(ok, message)`.
async fn attempt(h: &mut Harness, probe: &Probe) -> (bool, String) {
    h.rt.probe("daemon", probe, LOCALHOST);
    match h.next().await {
        RuntimeEvent::ProbeResult { key, ok, message } => {
            assert_eq!(key, "daemon");
            (ok, message)
        }
        other => panic!("expected a probe result, got {other:?}"),
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_socket_probes() {
    let mut h = Harness::new();
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ok, message) = attempt(&mut h, &tcp_probe(IntOrString::Int(i64::from(port)))).await;
    assert!(ok, "{message}");
    assert_eq!(
        message,
        format!("tcp connect to 127.0.0.1:{port} succeeded")
    );
    // Port given as a numeric string, as YAML sometimes has it.
    let (ok, _) = attempt(&mut h, &tcp_probe(IntOrString::Str(port.to_string()))).await;
    assert!(ok);
    drop(listener);

    let closed = closed_port();
    let (ok, message) = attempt(&mut h, &tcp_probe(IntOrString::Int(i64::from(closed)))).await;
    assert!(!ok);
    assert!(message.contains("refused"), "{message}");

    let (ok, message) = attempt(&mut h, &tcp_probe(IntOrString::Str("redis".into()))).await;
    assert!(!ok);
    assert!(message.contains("named port \"redis\""), "{message}");

    // The action's own host wins over the step address.
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut probe = tcp_probe(IntOrString::Int(i64::from(port)));
    probe.tcp_socket.as_mut().unwrap().host = Some("localhost".into());
    h.rt.probe("daemon", &probe, "192.0.2.1".parse().unwrap());
    match h.next().await {
        RuntimeEvent::ProbeResult { ok, message, .. } => assert!(ok, "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_probes() {
    let mut h = Harness::new();
    let server = http_server(&h).await;
    let port = server.port;

    let (ok, message) = attempt(&mut h, &http_probe(port, "/ok")).await;
    assert!(ok, "{message}");
    assert_eq!(message, format!("GET http://127.0.0.1:{port}/ok: 200 OK"));

    let (ok, message) = attempt(&mut h, &http_probe(port, "/redirect")).await;
    assert!(ok, "3xx counts as success: {message}");

    let (ok, message) = attempt(&mut h, &http_probe(port, "/fail")).await;
    assert!(!ok);
    assert!(message.ends_with("500 Internal Server Error"), "{message}");

    let (ok, message) = attempt(&mut h, &http_probe(port, "/nothing-here")).await;
    assert!(!ok);
    assert!(message.contains("404"), "{message}");

    // Headers: sent, and a user User-Agent replaces roadie's.
    let mut probe = http_probe(port, "/header");
    let (ok, _) = attempt(&mut h, &probe).await;
    assert!(!ok, "without headers the route refuses");
    probe.http_get.as_mut().unwrap().http_headers = vec![
        HttpHeader {
            name: "X-Probe".into(),
            value: "yes".into(),
        },
        HttpHeader {
            name: "User-Agent".into(),
            value: "custom".into(),
        },
    ];
    let (ok, message) = attempt(&mut h, &probe).await;
    assert!(ok, "{message}");

    // A path without a leading slash still works.
    let (ok, message) = attempt(&mut h, &http_probe(port, "ok")).await;
    assert!(ok, "{message}");

    // timeoutSeconds bounds the attempt.
    let mut slow = http_probe(port, "/slow");
    slow.timeout_seconds = Some(1);
    let (ok, message) = attempt(&mut h, &slow).await;
    assert!(!ok);
    assert_eq!(message, "probe timed out after 1s");

    let (ok, message) = attempt(&mut h, &http_probe(closed_port(), "/ok")).await;
    assert!(!ok);
    assert!(message.contains("refused"), "{message}");

    let mut https = http_probe(port, "/ok");
    https.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    let (ok, message) = attempt(&mut h, &https).await;
    assert!(!ok);
    assert!(message.contains("HTTPS is not supported"), "{message}");

    let mut named = http_probe(port, "/ok");
    named.http_get.as_mut().unwrap().port = IntOrString::Str("http".into());
    let (ok, message) = attempt(&mut h, &named).await;
    assert!(!ok);
    assert!(
        message.starts_with("httpGet.port: named port \"http\""),
        "{message}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probes() {
    let mut h = Harness::new();
    let (ok, message) = attempt(&mut h, &exec_probe(&["sh", "-c", "exit 0"])).await;
    assert!(ok, "{message}");
    assert_eq!(message, "exec probe succeeded");

    let (ok, message) = attempt(&mut h, &exec_probe(&["sh", "-c", "echo up"])).await;
    assert!(ok);
    assert_eq!(message, "up");

    let (ok, message) = attempt(
        &mut h,
        &exec_probe(&["sh", "-c", "echo not ready >&2; exit 1"]),
    )
    .await;
    assert!(!ok);
    assert_eq!(message, "exec probe failed: exit code 1: not ready");

    // The probe talks to a real service: exec runs on the host.
    let listener = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let check = format!(
        "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
    );
    let (ok, message) = attempt(&mut h, &exec_probe(&["python3", "-c", &check])).await;
    assert!(ok, "{message}");

    let bg_file = h.path("bg.pid");
    let script = format!("sleep 1000 & echo $! > '{}'; wait", bg_file.display());
    let mut slow = exec_probe(&["sh", "-c", &script]);
    slow.timeout_seconds = Some(1);
    let (ok, message) = attempt(&mut h, &slow).await;
    assert!(!ok);
    assert_eq!(message, "exec probe timed out after 1s");
    let bg: u32 = std::fs::read_to_string(&bg_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        common::wait_dead(bg).await,
        "the timed-out probe's child survived"
    );

    let (ok, message) = attempt(&mut h, &exec_probe(&["roadie-no-such-probe"])).await;
    assert!(!ok);
    assert_eq!(
        message,
        "exec probe: roadie-no-such-probe: command not found in PATH"
    );

    let (ok, message) = attempt(&mut h, &exec_probe(&[])).await;
    assert!(!ok);
    assert_eq!(message, "exec probe has an empty command");

    let (ok, message) = attempt(&mut h, &Probe::default()).await;
    assert!(!ok);
    assert_eq!(
        message,
        "the probe has no httpGet, tcpSocket or exec action"
    );

    // Exec probes leave nothing behind, not even the timed-out one's background sleep.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let records = common::live_records(h.rt.registry_dir()).len();
    assert_eq!(records, 0);
}
