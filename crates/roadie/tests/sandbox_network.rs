//! `ROADIE_NETWORK=sandbox` end to end: each pod in its own network namespace with its
//! own address, so two daemons can listen on one port; nothing is left behind, not even
//! after `roadie run` is killed with SIGKILL; and the daemon's workers share the subnet.
//!
//! Real namespaces need root and iproute2's `ip`: without them every test here prints
//! `SKIPPED` and passes.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use common::*;

/// `Some(reason)` when this machine cannot run sandboxed steps.
fn cannot_sandbox() -> Option<String> {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!("not root (uid {uid})"));
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
        let _serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    };
}

/// The tests here run one at a time: every roadie start reclaims dead owners' leases, which
/// must not happen while the kill test looks at what its killed run left.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sandbox_env() -> Env {
    let mut env = Env::new();
    env.vars.push(("ROADIE_NETWORK".into(), "sandbox".into()));
    env
}

fn in_default_subnet(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    (a, b) == (10, 213) && ip != Ipv4Addr::new(10, 213, 0, 1)
}

fn ns_path(ip: Ipv4Addr) -> std::path::PathBuf {
    Path::new("/run/netns").join(format!("rn-{:08x}", u32::from(ip)))
}

fn veth_path(ip: Ipv4Addr) -> std::path::PathBuf {
    Path::new("/sys/class/net").join(format!("rv-{:08x}", u32::from(ip)))
}

fn lease_path(ip: Ipv4Addr) -> std::path::PathBuf {
    Path::new("/run/roadie-net/leases").join(ip.to_string())
}

/// Namespace, veth or lease of `ip` that still exist.
fn leftovers(ip: Ipv4Addr) -> Vec<String> {
    [ns_path(ip), veth_path(ip), lease_path(ip)]
        .into_iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

/// Waits (bounded) until nothing of these pods' networks is left; the kernel destroys a
/// veth a moment after its namespace goes.
#[track_caller]
fn assert_no_pod_network_left(ips: &[Ipv4Addr]) {
    let gone = wait_for(Duration::from_secs(10), || {
        ips.iter().all(|ip| leftovers(*ip).is_empty()).then_some(())
    });
    assert!(
        gone.is_some(),
        "pod networks left behind: {:?}",
        ips.iter().flat_map(|ip| leftovers(*ip)).collect::<Vec<_>>()
    );
}

/// The addresses leased by process `pid` (lease files hold `"<pid> <starttime>"`).
fn leases_of(pid: u32) -> Vec<Ipv4Addr> {
    let owner = format!("{pid} ");
    std::fs::read_dir("/run/roadie-net/leases")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.starts_with(&owner)))
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn pod_ip(wf: &serde_json::Value, display: &str) -> Ipv4Addr {
    let ip = node(wf, display)["podIP"]
        .as_str()
        .unwrap_or_else(|| panic!("{display} has no podIP: {}", describe_nodes(wf)));
    ip.parse()
        .unwrap_or_else(|_| panic!("{display}'s podIP {ip:?} is not an IPv4 address"))
}

#[test]
fn two_daemons_on_one_port_each_reached_at_its_own_address() {
    require_sandbox!();
    let env = sandbox_env();
    let (out, wf) = env.run_json(
        &fixture("sandbox-same-port.yaml"),
        "same-port",
        &["-p", "port=9999"],
    );
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    let red = pod_ip(&wf, "red");
    let blue = pod_ip(&wf, "blue");
    assert_ne!(red, blue, "the two daemons got one address");
    for ip in [red, blue] {
        assert!(
            in_default_subnet(ip),
            "{ip} is not a pod address of 10.213.0.0/16"
        );
    }
    // Each consumer got its own daemon's answer at the address it was handed.
    assert_eq!(
        env.node_log("same-port", "to-red").trim(),
        format!("{red} red")
    );
    assert_eq!(
        env.node_log("same-port", "to-blue").trim(),
        format!("{blue} blue")
    );
    // Every pod's network is gone (nodes other than daemons may not record an address).
    let ips: Vec<Ipv4Addr> = nodes(&wf)
        .iter()
        .filter_map(|n| n["podIP"].as_str()?.parse().ok())
        .collect();
    assert!(ips.contains(&red) && ips.contains(&blue));
    assert_no_pod_network_left(&ips);
}

/// `roadie run` killed with SIGKILL while its pods run: their namespaces and leases stay
/// (the owner is dead), and the next roadie start removes them.
#[test]
fn pod_networks_of_a_killed_run_are_removed_by_the_next_start() {
    require_sandbox!();
    let env = sandbox_env();
    let roadie = env.spawn(&[
        "run",
        &fixture("sandbox-same-port.yaml"),
        "--name",
        "killed",
        "-p",
        "port=9998",
        "-p",
        "hold=300",
    ]);
    let pid = roadie.pid();
    // The two daemons and the holding step run (the consumers are done).
    let holding = wait_for(Duration::from_secs(30), || {
        let wf = env.get_json_if_any("killed")?;
        (find_node(&wf, "hold")?["phase"] == "Running").then_some(())
    });
    assert!(
        holding.is_some(),
        "the holding step did not start; roadie stderr:\n{}",
        roadie.stderr_so_far()
    );
    let ips = leases_of(pid);
    assert_eq!(
        ips.len(),
        3,
        "expected three live pods (red, blue, hold): {ips:?}"
    );
    roadie.signal("KILL");
    drop(roadie.wait(Duration::from_secs(10)));
    // A roadie of another test binary starting meanwhile may reclaim them first; that is
    // the same rule at work, so only say so.
    let left: Vec<&Ipv4Addr> = ips
        .iter()
        .filter(|ip| lease_path(**ip).exists() && ns_path(**ip).exists())
        .collect();
    if left.len() != ips.len() {
        eprintln!("note: some pod networks of the killed run were already reclaimed: {ips:?}");
    }

    // The next start (on the host network, even) reclaims them.
    let mut host = env;
    host.vars.clear();
    host.roadie(&["run", &fixture("hello.yaml"), "--quiet"])
        .expect_code(0);
    assert_no_pod_network_left(&ips);
}

/// The daemon's two workers share the subnet: two workflows, each with daemons on the
/// same port, run at once and both succeed.
#[test]
fn two_workers_run_workflows_with_daemons_on_the_same_port() {
    require_sandbox!();
    let env = sandbox_env();
    env.roadie(&["daemon", "start", "--workers", "2"])
        .expect_code(0);
    let names: Vec<String> = (0..2)
        .map(|_| {
            let out = env.roadie(&[
                "submit",
                &fixture("sandbox-same-port.yaml"),
                "-p",
                "port=9997",
                "-p",
                "hold=1",
            ]);
            out.expect_code(0);
            out.stdout.trim().to_owned()
        })
        .collect();
    let waited = env.roadie_within(&["wait", &names[0], &names[1]], Duration::from_secs(90));
    let stopped = env.roadie(&["daemon", "stop", "--timeout", "20"]);
    waited.expect_code(0);
    stopped.expect_code(0);
    let mut ips = Vec::new();
    for name in &names {
        let wf = env.get_json(name);
        assert_eq!(phase(&wf), "Succeeded", "{name}: {}", describe_nodes(&wf));
        ips.push(pod_ip(&wf, "red"));
        ips.push(pod_ip(&wf, "blue"));
    }
    ips.sort();
    ips.dedup();
    assert_eq!(
        ips.len(),
        4,
        "daemons of two workflows shared an address: {ips:?}"
    );
    assert_no_pod_network_left(&ips);
}

/// An unknown value of `ROADIE_NETWORK` is refused before anything runs, naming the
/// variable (as a sandbox without root or `ip` is, which this root machine cannot show).
#[test]
fn a_bad_network_setting_is_refused_with_the_variable_named() {
    let mut env = Env::new();
    env.vars.push(("ROADIE_NETWORK".into(), "bridge".into()));
    let out = env.roadie(&["run", &fixture("hello.yaml"), "--quiet"]);
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stderr.contains("ROADIE_NETWORK") && out.stderr.contains("\"bridge\""),
        "{}",
        out.stderr
    );
}
