//! Readiness probes, one attempt at a time, as Kubernetes defines them.
//!
//! - `httpGet`: an HTTP/1.1 `GET` (hyper does the protocol); status 200..400 is success.
//!   Only `scheme: HTTP` and numeric ports: a host process has no named container ports.
//! - `tcpSocket`: success when a TCP connection opens.
//! - `exec`: the command runs in the step's mount namespace (when it has one) and its pod's
//!   network namespace (in the sandboxed network), in its own process group with the same
//!   no-orphan rules as a step; exit code 0 is success.
//!
//! Every attempt is bounded by `timeoutSeconds` (default and minimum 1 s). Timing between
//! attempts (initial delay, period, thresholds) belongs to the engine.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{ACCEPT, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use roadie_spec::{HttpGetAction, IntOrString, Probe, TcpSocketAction};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::RuntimeEvent;
use crate::host::{Shared, describe_status, into_receiver, kill_pipe_holders, read_chunk};
use crate::registry::Slot;
use crate::spawn::{self, Spawned, describe_spawn_error, kill_group};

/// An exec probe's output kept for the result message.
const MAX_EXEC_OUTPUT: usize = 1024;
/// After an exec probe's process exited, how long to wait for its output pipe to close.
const EXEC_DRAIN: Duration = Duration::from_millis(500);

/// `timeoutSeconds`, with Kubernetes' default and minimum of one second.
pub(crate) fn timeout_of(probe: &Probe) -> Duration {
    let seconds = probe
        .timeout_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s >= 1)
        .unwrap_or(1);
    Duration::from_secs(seconds)
}

/// One `httpGet` or `tcpSocket` attempt: `(ok, message)`.
pub(crate) async fn network_attempt(
    probe: &Probe,
    host: IpAddr,
    timeout: Duration,
) -> (bool, String) {
    let attempt = async {
        if let Some(action) = &probe.http_get {
            http_get(action, host).await
        } else if let Some(action) = &probe.tcp_socket {
            tcp_connect(action, host).await
        } else {
            Err("the probe has no httpGet, tcpSocket or exec action".to_owned())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(message)) => (true, message),
        Ok(Err(message)) => (false, message),
        Err(_) => (
            false,
            format!("probe timed out after {}s", timeout.as_secs()),
        ),
    }
}

/// A port number; named ports cannot be resolved without a pod spec.
fn port_of(port: &IntOrString, field: &str) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::Str(s) => s.trim().parse::<i64>().map_err(|_| {
            format!(
                "{field}.port: named port {s:?} cannot be resolved (a host step has no \
                 container ports); use the port number"
            )
        })?,
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{field}.port: {number} is not a valid port (1-65535)"))
}

/// Where a network probe connects: the action's own `host` if set, else the step's address.
enum Target {
    Name(String),
    Ip(IpAddr),
}

impl Target {
    fn new(action_host: Option<&str>, host: IpAddr) -> Self {
        match action_host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(name) => match name.parse() {
                Ok(ip) => Target::Ip(ip),
                Err(_) => Target::Name(name.to_owned()),
            },
            None => Target::Ip(host),
        }
    }

    async fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        match self {
            Target::Name(name) => TcpStream::connect((name.as_str(), port)).await,
            Target::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, port)).await,
        }
    }

    /// `host:port`, with IPv6 addresses in brackets (for messages and the Host header).
    fn authority(&self, port: u16) -> String {
        match self {
            Target::Name(name) => format!("{name}:{port}"),
            Target::Ip(ip) => SocketAddr::new(*ip, port).to_string(),
        }
    }
}

async fn tcp_connect(action: &TcpSocketAction, host: IpAddr) -> Result<String, String> {
    let port = port_of(&action.port, "tcpSocket")?;
    let target = Target::new(action.host.as_deref(), host);
    let authority = target.authority(port);
    match target.connect(port).await {
        Ok(_) => Ok(format!("tcp connect to {authority} succeeded")),
        Err(e) => Err(format!("tcp connect to {authority}: {e}")),
    }
}

async fn http_get(action: &HttpGetAction, host: IpAddr) -> Result<String, String> {
    let port = port_of(&action.port, "httpGet")?;
    let scheme = action.scheme.as_deref().unwrap_or("HTTP");
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "httpGet.scheme: {scheme} is not supported by roadie's probes (only HTTP)"
        ));
    }
    let target = Target::new(action.host.as_deref(), host);
    let authority = target.authority(port);
    let path = match action.path.as_deref().map(str::trim) {
        None | Some("") => "/".to_owned(),
        Some(p) if p.starts_with('/') => p.to_owned(),
        Some(p) => format!("/{p}"),
    };
    let url = format!("http://{authority}{path}");

    let mut request = Request::get(path.as_str())
        .header(HOST, authority.as_str())
        .header(
            USER_AGENT,
            concat!("roadie-probe/", env!("CARGO_PKG_VERSION")),
        )
        .header(ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("httpGet.path: {path:?} is not a valid request path: {e}"))?;
    // As in Kubernetes, user headers replace the defaults of the same name.
    let mut replaced = HashSet::new();
    for header in &action.http_headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("httpGet.httpHeaders: invalid header name {:?}", header.name))?;
        let value = HeaderValue::from_str(&header.value).map_err(|_| {
            format!(
                "httpGet.httpHeaders: invalid value for header {:?}",
                header.name
            )
        })?;
        if replaced.insert(name.clone()) {
            request.headers_mut().remove(&name);
        }
        request.headers_mut().append(name, value);
    }

    let stream = target
        .connect(port)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    // Only the status line matters; the body is never read.
    connection.abort();
    let status = response.map_err(|e| format!("GET {url}: {e}"))?.status();
    if (200..400).contains(&status.as_u16()) {
        Ok(format!("GET {url}: {status}"))
    } else {
        Err(format!("GET {url}: {status}"))
    }
}

/// An exec probe waiting for the spawner thread.
pub(crate) struct ExecProbe {
    pub key: String,
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Set when the probe was asked for, so time spent queued counts.
    pub deadline: Instant,
}

/// Spawns an exec probe (on the spawner thread) and hands it to a watching task.
pub(crate) fn launch_exec(shared: &Arc<Shared>, job: ExecProbe) {
    match spawn_exec(shared, &job.key, &job.argv) {
        Ok((spawned, reader, slot)) => {
            shared
                .handle
                .spawn(watch_exec(Arc::clone(shared), job, spawned, reader, slot));
        }
        Err(message) => {
            let _ = shared.events.send(RuntimeEvent::ProbeResult {
                key: job.key,
                ok: false,
                message,
            });
        }
    }
}

fn spawn_exec(
    shared: &Shared,
    key: &str,
    argv: &[String],
) -> Result<(Spawned, OwnedFd, Slot), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("exec probe has an empty command".to_owned());
    };
    let (reader, writer) =
        std::io::pipe().map_err(|e| format!("exec probe: cannot create a pipe: {e}"))?;
    let writer_copy = writer
        .try_clone()
        .map_err(|e| format!("exec probe: cannot duplicate a pipe: {e}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(writer_copy)
        .stderr(writer);
    // Run where the step's files are: in its mount namespace when it has its own. The
    // handle stays open (in this scope) until the child has entered it.
    let step_ns = shared
        .running_pid(key)
        .and_then(crate::mounts::foreign_mount_ns);
    if let Some(ns) = &step_ns {
        let fd = std::os::fd::AsRawFd::as_raw_fd(ns);
        // SAFETY: `enter_ns` only calls setns on a handle that outlives the spawn.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                crate::mounts::enter_ns(fd)
            });
        }
    }
    // And in its pod's network namespace, so `localhost` is the step's own.
    let _pod_network = crate::netns::join(shared.network.as_deref(), key, &mut cmd, false)?;
    let mut slot = shared
        .registry
        .begin()
        .map_err(|e| format!("exec probe: cannot record the process: {e}"))?;
    // `cmd` (holding our copies of the pipe's write end) is dropped on return, so the
    // reader sees end-of-file once the probe's processes are gone.
    let spawned = slot
        .file()
        .and_then(|record| spawn::spawn_recorded(&mut cmd, record, shared.use_pidfd));
    slot.close();
    match spawned {
        Ok(spawned) => Ok((spawned, reader.into(), slot)),
        Err(e) => {
            shared.registry.end(slot);
            Err(format!(
                "exec probe: {}",
                describe_spawn_error(program, None, &e)
            ))
        }
    }
}

async fn watch_exec(
    shared: Arc<Shared>,
    job: ExecProbe,
    spawned: Spawned,
    reader: OwnedFd,
    slot: Slot,
) {
    let Spawned {
        mut child,
        pgid,
        pidfd,
        ..
    } = spawned;
    let mut output = into_receiver(reader);
    let mut collected = Vec::new();
    let mut buf = vec![0u8; 4096];
    let exited = spawn::leader_exited(pgid, pidfd);
    tokio::pin!(exited);
    let deadline = tokio::time::sleep_until(job.deadline);
    tokio::pin!(deadline);
    let drain = tokio::time::sleep(EXEC_DRAIN);
    tokio::pin!(drain);
    let mut status = None;
    let mut timed_out = false;

    while status.is_none() || output.is_some() {
        tokio::select! {
            n = read_chunk(output.as_mut(), &mut buf) => match n {
                Some(n) => {
                    let room = MAX_EXEC_OUTPUT.saturating_sub(collected.len());
                    collected.extend_from_slice(&buf[..n.min(room)]);
                }
                None => output = None,
            },
            () = &mut exited, if status.is_none() => {
                kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
                status = Some(spawn::reap(&mut child).await);
                drain.as_mut().reset(Instant::now() + EXEC_DRAIN);
            }
            () = &mut deadline, if status.is_none() && !timed_out => {
                timed_out = true;
                kill_group(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            () = &mut drain, if status.is_some() => {
                let killed = kill_pipe_holders([output.as_ref(), None]).await;
                tracing::warn!(key = job.key, ?killed, "killed processes that left an exec \
                    probe's process group but kept its output open");
                break;
            }
        }
    }
    shared.registry.end(slot);

    let text = String::from_utf8_lossy(&collected).trim().to_owned();
    let (ok, message) = if timed_out {
        (
            false,
            format!("exec probe timed out after {}s", job.timeout.as_secs()),
        )
    } else {
        match status {
            Some(Ok(status)) if status.code() == Some(0) => (
                true,
                if text.is_empty() {
                    "exec probe succeeded".to_owned()
                } else {
                    text
                },
            ),
            Some(Ok(status)) => {
                let (_, _, what) = describe_status(status);
                if text.is_empty() {
                    (false, format!("exec probe failed: {what}"))
                } else {
                    (false, format!("exec probe failed: {what}: {text}"))
                }
            }
            Some(Err(e)) => (
                false,
                format!("exec probe: cannot collect exit status: {e}"),
            ),
            None => (false, "exec probe: exit status lost".to_owned()),
        }
    };
    let _ = shared.events.send(RuntimeEvent::ProbeResult {
        key: job.key,
        ok,
        message,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_must_be_numbers() {
        assert_eq!(port_of(&IntOrString::Int(8080), "httpGet"), Ok(8080));
        assert_eq!(
            port_of(&IntOrString::Str("8080".into()), "httpGet"),
            Ok(8080)
        );
        let named = port_of(&IntOrString::Str("http".into()), "httpGet").unwrap_err();
        assert!(named.contains("named port \"http\""), "{named}");
        assert!(port_of(&IntOrString::Int(70000), "tcpSocket").is_err());
        assert!(port_of(&IntOrString::Int(0), "tcpSocket").is_err());
    }

    #[test]
    fn timeout_defaults_to_one_second() {
        let mut probe = Probe::default();
        assert_eq!(timeout_of(&probe), Duration::from_secs(1));
        probe.timeout_seconds = Some(0);
        assert_eq!(timeout_of(&probe), Duration::from_secs(1));
        probe.timeout_seconds = Some(5);
        assert_eq!(timeout_of(&probe), Duration::from_secs(5));
    }

    #[test]
    fn ipv6_authority_gets_brackets() {
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(Target::new(None, v6).authority(80), "[::1]:80");
        assert_eq!(Target::new(Some("example"), v6).authority(80), "example:80");
        assert_eq!(Target::new(Some("::2"), v6).authority(80), "[::2]:80");
    }
}
