//! The seed workflows (shared/seeds/), run unchanged by the real `roadie`
//! binary against the real influxd and redis-server that scripts/setup.sh
//! installs.
//!
//! They bind fixed ports (influxd 8086 and 8088, redis-server 6379), so two
//! runs of the same seed must never overlap: .config/nextest.toml puts each
//! seed in a test group of one thread (filters `test(/^seed_influx/)` and
//! `test(/^seed_redis/)`), and under plain `cargo test`, where the tests of
//! one binary are threads of one process, a lock per port set does the same.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Held while influxd's ports are in use (plain `cargo test` only; nextest
/// runs every test in its own process and uses its test groups).
static INFLUX_PORTS: Mutex<()> = Mutex::new(());
/// Held while redis-server's port is in use.
static REDIS_PORTS: Mutex<()> = Mutex::new(());

#[track_caller]
fn require_free_ports(ports: &[u16], who: &str) {
    for &p in ports {
        assert!(
            !port_in_use(p),
            "port {p} is already in use: stop the {who} that holds it (scripts/setup.sh \
             leaves the system service stopped) before running this test"
        );
    }
}

/// daemon-step.yaml: influxd as a daemon, a database created through
/// `{{steps.influx.ip}}`, three parallel producers, a consumer that reads
/// back exactly the 41 points they wrote; influxd is gone afterwards.
#[test]
fn seed_influx_daemon_step() {
    let _ports = INFLUX_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    require_program("influxd");
    require_program("curl");
    require_free_ports(&[8086, 8088], "influxd");

    let mut env = Env::new();
    // influxd's package config puts its data in /var/lib/influxdb, shared by
    // every run; these variables give this run a fresh, private store.
    let data = env.dir().join("influxdb");
    for (var, dir) in [
        ("INFLUXDB_META_DIR", "meta"),
        ("INFLUXDB_DATA_DIR", "data"),
        ("INFLUXDB_DATA_WAL_DIR", "wal"),
    ] {
        env.vars
            .push((var.into(), data.join(dir).to_string_lossy().into_owned()));
    }
    let seed = shared_dir().join("seeds/daemon-step.yaml");
    let out = env.roadie_within(
        &[
            "run",
            &seed.to_string_lossy(),
            "--name",
            "influx-seed",
            "-o",
            "json",
        ],
        Duration::from_secs(120),
    );
    let wf: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON from roadie run ({e}); exit {:?}\n{}\n{}",
            out.code, out.stdout, out.stderr
        )
    });
    out.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);
    for step in [
        "init-database",
        "producer-1",
        "producer-2",
        "producer-3",
        "consumer",
    ] {
        assert_eq!(
            node(&wf, step)["phase"],
            "Succeeded",
            "{}",
            describe_nodes(&wf)
        );
    }

    // The daemon: one attempt, published at an address, torn down (a success)
    // only after the last step that used it.
    let influx = node(&wf, "influx(0)");
    assert_eq!(influx["phase"], "Succeeded", "{}", describe_nodes(&wf));
    assert!(
        influx["podIP"].as_str().is_some_and(|ip| !ip.is_empty()),
        "no address recorded: {}",
        describe_nodes(&wf)
    );
    assert!(
        influx["message"]
            .as_str()
            .unwrap_or("")
            .contains("torn down"),
        "{}",
        describe_nodes(&wf)
    );
    assert!(
        time(influx, "finishedAt") >= time(node(&wf, "consumer"), "finishedAt"),
        "influxd stopped before the consumer finished: {}",
        describe_nodes(&wf)
    );
    assert!(find_node(&wf, "influx(1)").is_none(), "influxd was retried");

    // The consumer's JSON holds the 20 + 20 + 1 points.
    let body = env.node_log("influx-seed", "consumer");
    let result: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the consumer did not print JSON ({e}):\n{body}"));
    let values = result["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no series values in the consumer's output:\n{body}"));
    assert_eq!(values.len(), 41, "points read back:\n{body}");
    let from_host = |h: &str| values.iter().filter(|v| v[1] == h).count();
    assert_eq!(
        (
            from_host("server01"),
            from_host("server02"),
            from_host("server03")
        ),
        (20, 20, 1)
    );
    // The data went to this test's directory, not to /var/lib/influxdb.
    assert!(data.join("meta").is_dir(), "INFLUXDB_META_DIR was not used");

    let left = wait_for(Duration::from_secs(5), || {
        processes_named_with_env(
            "influxd",
            "INFLUXDB_META_DIR",
            &data.join("meta").to_string_lossy(),
        )
        .is_empty()
        .then_some(())
    });
    assert!(
        left.is_some(),
        "influxd still runs after the workflow: {:?}",
        processes_named_with_env(
            "influxd",
            "INFLUXDB_META_DIR",
            &data.join("meta").to_string_lossy()
        )
    );
}

/// daemon-step-hera.py: the same workflow written with Hera (PyPI `hera`);
/// `w.to_yaml()` gives a workflow roadie runs to the same 41 points.
#[test]
fn seed_influx_hera_to_yaml() {
    let _ports = INFLUX_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    require_program("influxd");
    require_program("curl");
    require_free_ports(&[8086, 8088], "influxd");
    let mut env = Env::new();
    let script = shared_dir().join("seeds/daemon-step-hera.py");
    let yaml = env.dir().join("hera.yaml");
    let generated = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "exec(open({:?}).read()); open({:?}, 'w').write(w.to_yaml())",
            script.to_string_lossy(),
            yaml.to_string_lossy()
        ))
        .output()
        .expect("python3 runs");
    assert!(
        generated.status.success(),
        "Hera could not write the workflow (scripts/setup.sh installs the `hera` package):\n{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let data = env.dir().join("influxdb");
    for (var, dir) in [
        ("INFLUXDB_META_DIR", "meta"),
        ("INFLUXDB_DATA_DIR", "data"),
        ("INFLUXDB_DATA_WAL_DIR", "wal"),
    ] {
        env.vars
            .push((var.into(), data.join(dir).to_string_lossy().into_owned()));
    }
    let out = env.roadie_within(
        &[
            "run",
            &yaml.to_string_lossy(),
            "--name",
            "hera-seed",
            "-o",
            "json",
        ],
        Duration::from_secs(120),
    );
    out.expect_code(0);
    let wf: Value =
        serde_json::from_str(&out.stdout).expect("roadie run -o json prints the workflow");
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    let body = env.node_log("hera-seed", "consumer");
    let result: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("the consumer did not print JSON ({e}):\n{body}"));
    let values = result["results"][0]["series"][0]["values"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(values, 41, "points read back:\n{body}");
    let left = wait_for(Duration::from_secs(5), || {
        processes_named_with_env(
            "influxd",
            "INFLUXDB_META_DIR",
            &data.join("meta").to_string_lossy(),
        )
        .is_empty()
        .then_some(())
    });
    assert!(left.is_some(), "influxd outlived the run");
}

/// daemon-redis.yaml: redis-server as a daemon beside a 60 s test step in the
/// same step group. Its tcpSocket probe (first at 5 s) marks it daemoned while
/// the test step runs; when the group is done it gets SIGTERM, shuts down
/// cleanly and counts as Succeeded; no redis-server is left.
#[test]
fn seed_redis_daemon() {
    let _ports = REDIS_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    require_program("redis-server");
    require_free_ports(&[6379], "redis-server");

    // redis-server writes dump.rdb into its cwd, which it inherits from
    // roadie: the Env's private working directory.
    let env = Env::new();
    let seed = shared_dir().join("seeds/daemon-redis.yaml");
    let roadie = env.spawn(&["run", &seed.to_string_lossy(), "--quiet"]);

    // While it runs: the daemon node becomes daemoned, with an address.
    let ready = wait_for(Duration::from_secs(30), || {
        let out = env.roadie(&["get", "daemon-workflow", "-o", "json"]);
        if out.code != Some(0) {
            return None;
        }
        let wf: Value = serde_json::from_str(&out.stdout).ok()?;
        let db = find_node(&wf, "start-database")?;
        (db["daemoned"] == true).then(|| db.clone())
    });
    let ready = ready.unwrap_or_else(|| {
        panic!(
            "start-database never became daemoned (tcpSocket probe on 6379); roadie stderr:\n{}",
            roadie.stderr_so_far()
        )
    });
    assert_eq!(ready["phase"], "Running");
    assert!(
        ready["podIP"].as_str().is_some_and(|ip| !ip.is_empty()),
        "daemoned without an address: {ready}"
    );
    assert!(port_in_use(6379), "daemoned, but nothing listens on 6379");

    let out = roadie.wait(Duration::from_secs(150));
    out.expect_code(0);
    let wf = env.get_json("daemon-workflow");
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_all_nodes_completed(&wf);
    assert_times_nest(&wf);

    let tests = node(&wf, "run-tests");
    let db = node(&wf, "start-database");
    assert_eq!(tests["phase"], "Succeeded", "{}", describe_nodes(&wf));
    assert_eq!(db["phase"], "Succeeded", "{}", describe_nodes(&wf));
    assert!(
        db["message"].as_str().unwrap_or("").contains("torn down"),
        "the daemon did not end by teardown: {}",
        describe_nodes(&wf)
    );
    assert_eq!(db["podIP"], ready["podIP"], "the address changed");
    assert!(
        time(db, "finishedAt") >= time(tests, "finishedAt")
            && time(db, "finishedAt") > time(tests, "startedAt"),
        "redis was stopped before the test step ended: {}",
        describe_nodes(&wf)
    );
    assert!(
        env.node_log("daemon-workflow", "run-tests")
            .contains("Testing against database..."),
    );
    let db_log = env.node_log("daemon-workflow", "start-database");
    assert!(
        db_log.contains("Ready to accept connections") && db_log.contains("Received SIGTERM"),
        "redis did not start and stop gracefully:\n{db_log}"
    );

    let left = wait_for(Duration::from_secs(5), || {
        processes_named("redis-server").is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "redis-server still runs after the workflow: {:?}",
        processes_named("redis-server")
    );
    assert!(!port_in_use(6379), "something still listens on 6379");
}
