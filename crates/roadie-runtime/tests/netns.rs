//! The sandboxed network with real namespaces: each pod its own address and ports, probes
//! that reach it, and nothing left behind. Needs root and iproute2's `ip`; without them
//! every test here prints `SKIPPED` and passes.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use common::{Harness, PATIENCE};
use roadie_runtime::{Network, RuntimeEvent, Signal, Subnet};
use roadie_spec::{ExecAction, IntOrString, Probe, TcpSocketAction};

/// `Some(reason)` when this machine cannot run sandboxed steps.
fn cannot_sandbox() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let has_ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .any(|p| Path::new(p).is_file());
    if !has_ip {
        return Some("iproute2's `ip` is not installed (scripts/setup.sh installs it)".into());
    }
    None
}

macro_rules! require_sandbox {
    () => {
        if let Some(why) = cannot_sandbox() {
            eprintln!("SKIPPED: sandboxed network tests need root and `ip`: {why}");
            return;
        }
    };
}

fn subnet() -> Subnet {
    Subnet::parse(roadie_runtime::DEFAULT_SUBNET).unwrap()
}

fn sandbox() -> Harness {
    Harness::with_network(Network::Sandbox(subnet()))
}

async fn started_ip(h: &mut Harness, key: &str) -> Ipv4Addr {
    match h.next().await {
        RuntimeEvent::Started { key: k, ip, .. } if k == key => match ip {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => panic!("expected an IPv4 pod address, got {ip}"),
        },
        other => panic!("expected Started for {key}, got {other:?}"),
    }
}

fn tcp_probe(port: u16) -> Probe {
    Probe {
        tcp_socket: Some(TcpSocketAction {
            port: IntOrString::Int(port.into()),
            host: None,
        }),
        timeout_seconds: Some(10),
        ..Probe::default()
    }
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: command.iter().map(|s| s.to_string()).collect(),
        }),
        timeout_seconds: Some(10),
        ..Probe::default()
    }
}

/// Repeats a probe attempt until it succeeds (bounded by [`PATIENCE`]); returns the last
/// message.
async fn probe_until_ok(h: &mut Harness, key: &str, probe: &Probe, ip: Ipv4Addr) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        h.rt.probe(key, probe, IpAddr::V4(ip));
        let (ok, message) = match h.next().await {
            RuntimeEvent::ProbeResult {
                key: k,
                ok,
                message,
            } if k == key => (ok, message),
            other => panic!("expected a probe result for {key}, got {other:?}"),
        };
        if ok {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe of {key} never passed: {message}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ns_name(ip: Ipv4Addr) -> String {
    format!("rn-{:08x}", u32::from(ip))
}

fn veth_name(ip: Ipv4Addr) -> String {
    format!("rv-{:08x}", u32::from(ip))
}

/// Waits (bounded) until the pod network of `ip` is gone: namespace name, lease and veth
/// (the kernel destroys the veth when the namespace is freed, a moment later).
async fn assert_pod_network_gone(ip: Ipv4Addr) {
    let ns = Path::new("/run/netns").join(ns_name(ip));
    let lease = Path::new("/run/roadie-net/leases").join(ip.to_string());
    let veth = Path::new("/sys/class/net").join(veth_name(ip));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ns.exists() || lease.exists() || veth.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod network of {ip} left behind: netns {} lease {} veth {}",
            ns.exists(),
            lease.exists(),
            veth.exists()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_listen_on_the_same_port_at_their_own_addresses() {
    require_sandbox!();
    let mut h = sandbox();
    // Each server answers with its own name, so the test knows whom it reached.
    let server = |name: &str| {
        format!(
            "import socket\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('0.0.0.0', 9999)); s.listen(8)\n\
             while True:\n    c, _ = s.accept(); c.sendall(b'{name}'); c.close()\n"
        )
    };
    let mut ips = Vec::new();
    for name in ["one", "two"] {
        h.rt.start(h.launch(name, &["python3", "-c", &server(name)]));
        ips.push(started_ip(&mut h, name).await);
    }
    assert_ne!(ips[0], ips[1], "two pods got the same address");
    for ip in &ips {
        assert!(subnet().contains(*ip), "{ip} is not in {}", subnet());
        assert_ne!(*ip, subnet().bridge_ip());
    }
    // Readiness from roadie's side: a tcpSocket probe to each pod's address.
    for (name, ip) in ["one", "two"].iter().zip(&ips) {
        let message = probe_until_ok(&mut h, name, &tcp_probe(9999), *ip).await;
        assert!(message.contains(&format!("{ip}:9999")), "{message}");
    }
    // Each pod's address reaches its own server, from the host.
    for (name, ip) in ["one", "two"].iter().zip(&ips) {
        let mut stream = std::net::TcpStream::connect((*ip, 9999)).unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut stream, &mut got).unwrap();
        assert_eq!(got, *name);
    }
    // An exec probe runs inside the pod: its localhost is the pod's own server, and its
    // eth0 has the pod's address.
    let check = format!(
        "import socket\n\
         c = socket.create_connection(('127.0.0.1', 9999)); assert c.recv(10) == b'two'\n\
         import fcntl, struct\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         a = fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', b'eth0'))[20:24]\n\
         assert socket.inet_ntoa(a) == '{}', socket.inet_ntoa(a)\n",
        ips[1]
    );
    let message = probe_until_ok(
        &mut h,
        "two",
        &exec_probe(&["python3", "-c", &check]),
        ips[1],
    )
    .await;
    assert_eq!(message, "exec probe succeeded");
    // A pod reaches another pod by address, and the host through the bridge address.
    let host_side = std::net::TcpListener::bind((subnet().bridge_ip(), 0)).unwrap();
    let host_port = host_side.local_addr().unwrap().port();
    let client = h.launch(
        "client",
        &[
            "python3",
            "-c",
            &format!(
                "import socket\n\
                 c = socket.create_connection(('{}', 9999)); print(c.recv(10).decode())\n\
                 h = socket.create_connection(('{}', {host_port})); h.sendall(b'from a pod')\n",
                ips[0],
                subnet().bridge_ip()
            ),
        ],
    );
    h.rt.start(client);
    let client_ip = started_ip(&mut h, "client").await;
    let exit = h.exited("client").await;
    assert!(exit.success(), "{} / {}", exit.message, h.log("client"));
    assert_eq!(exit.stdout, "one");
    let (mut from_pod, peer) = host_side.accept().unwrap();
    assert_eq!(
        peer.ip(),
        IpAddr::V4(client_ip),
        "the host saw the pod's own address"
    );
    let mut got = String::new();
    std::io::Read::read_to_string(&mut from_pod, &mut got).unwrap();
    assert_eq!(got, "from a pod");
    assert_pod_network_gone(client_ip).await;

    for name in ["one", "two"] {
        h.rt.signal(name, Signal::Kill);
    }
    for _ in 0..2 {
        match h.next().await {
            RuntimeEvent::Exited { .. } => {}
            other => panic!("expected Exited, got {other:?}"),
        }
    }
    for ip in ips {
        assert_pod_network_gone(ip).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fails_to_start_leaves_no_pod_network() {
    require_sandbox!();
    let mut h = sandbox();
    let launch = h.launch("missing", &["/nonexistent/program"]);
    let message = h.start_failed(launch).await;
    assert!(message.contains("/nonexistent/program"), "{message}");
    // Whatever address it had, no lease of this process remains.
    let me = format!("{} ", std::process::id());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mine: Vec<String> = std::fs::read_dir("/run/roadie-net/leases")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|owner| owner.starts_with(&me)))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if mine.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leases left: {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pod's init containers and sidecars share its network, as in Kubernetes: the sidecar
/// listens on the pod's loopback, where the main process finds it; the init container saw
/// the pod's own address on eth0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_and_sidecars_share_the_pod_network() {
    require_sandbox!();
    let mut h = sandbox();
    let eth0_address = "import socket, fcntl, struct\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         print(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', b'eth0'))[20:24]))\n";
    let init_out = h.path("init-saw");
    let server = "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', 7777)); s.listen(8)\n\
         while True:\n    c, _ = s.accept(); c.sendall(b'sidecar'); c.close()\n";
    let main = "import socket, time\n\
         for _ in range(300):\n\
         \x20   try:\n\
         \x20       print(socket.create_connection(('127.0.0.1', 7777)).recv(16).decode()); break\n\
         \x20   except OSError:\n\
         \x20       time.sleep(0.1)\n";
    let mut launch = h.launch("pod", &["python3", "-c", main]);
    launch.init_containers = vec![roadie_runtime::ContainerLaunch {
        name: "init".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!("python3 -c \"$0\" > {}", init_out.display()),
            eth0_address.into(),
        ],
        log_path: h.path("logs/pod.init.log"),
        ..Default::default()
    }];
    launch.sidecars = vec![roadie_runtime::ContainerLaunch {
        name: "server".into(),
        argv: vec!["python3".into(), "-c".into(), server.into()],
        log_path: h.path("logs/pod.server.log"),
        ..Default::default()
    }];
    launch.sidecar_grace = Duration::from_secs(5);
    h.rt.start(launch);
    let ip = started_ip(&mut h, "pod").await;
    let exit = h.exited("pod").await;
    assert!(exit.success(), "{} / {}", exit.message, h.log("pod"));
    assert_eq!(
        exit.stdout, "sidecar",
        "main did not reach its sidecar on the pod's loopback"
    );
    let init_saw = std::fs::read_to_string(&init_out).unwrap();
    assert_eq!(
        init_saw.trim(),
        ip.to_string(),
        "the init container ran in another network"
    );
    assert_pod_network_gone(ip).await;
}

#[test]
fn subnets_parse_with_clear_errors() {
    let s = Subnet::parse("10.213.7.9/16").unwrap();
    assert_eq!(s.network, Ipv4Addr::new(10, 213, 0, 0));
    assert_eq!(s.bridge_ip(), Ipv4Addr::new(10, 213, 0, 1));
    assert!(s.contains(Ipv4Addr::new(10, 213, 255, 3)));
    assert!(!s.contains(Ipv4Addr::new(10, 214, 0, 3)));
    assert!(
        Subnet::parse("10.0.0.0")
            .unwrap_err()
            .contains("not a subnet")
    );
    assert!(
        Subnet::parse("10.0.0.0/31")
            .unwrap_err()
            .contains("8 to 30")
    );
    assert!(Subnet::parse("x/16").unwrap_err().contains("not an IPv4"));
}
