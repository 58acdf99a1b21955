//! `roadie cron` end to end: the real binary, a real daemon and its workers.
//! Scheduled times are injected with the hidden, test-only `roadie cron tick
//! --now TIME` (one scheduler pass at that time), so nothing waits for real
//! minutes; the schedules fire once a year, so the daemon's own scheduler,
//! on the real clock, never fires during a test.

mod common;

use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use common::{Env, wait_for};
use serde_json::Value;

/// Midnight UTC on 1 January of `years` years after this one.
fn new_year(years: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(Utc::now().year() + years, 1, 1, 0, 0, 0)
        .unwrap()
}

fn cron_file(env: &Env, name: &str, extra: &str, command: &str) -> String {
    let path = env.dir().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\nmetadata:\n  name: {name}\n\
             spec:\n  schedules: ['0 0 1 1 *']\n  timezone: UTC\n{extra}  workflowSpec:\n    entrypoint: main\n\
             \x20   templates:\n    - name: main\n      container:\n        command: {command}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// One scheduler pass at `t` plus `secs` seconds; returns its stdout.
fn tick(env: &Env, t: DateTime<Utc>, secs: i64) -> String {
    let now = (t + chrono::Duration::seconds(secs)).to_rfc3339();
    let out = env.roadie(&["cron", "tick", "--now", &now]);
    out.expect_code(0);
    out.stdout.clone()
}

fn child(cron: &str, t: DateTime<Utc>) -> String {
    format!("{cron}-{}", t.timestamp())
}

#[test]
fn two_scheduled_times_start_two_labelled_workflows_that_succeed() {
    let env = Env::new();
    let file = cron_file(&env, "yearly", "", "[\"true\"]");
    env.roadie(&["cron", "create", &file]).expect_code(0);
    // The same name again is refused.
    let again = env.roadie(&["cron", "create", &file]);
    assert_ne!(again.code, Some(0));
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let _daemon = env.start_daemon(&["--workers", "1"]);

    let (t1, t2) = (new_year(1), new_year(2));
    // Before the first scheduled time nothing starts.
    assert_eq!(tick(&env, t1, -30), "");
    assert_eq!(
        tick(&env, t1, 5),
        format!("started {}\n", child("yearly", t1))
    );
    // The same time is never started twice.
    assert_eq!(tick(&env, t1, 10), "");
    assert_eq!(
        tick(&env, t2, 1),
        format!("started {}\n", child("yearly", t2))
    );

    for t in [t1, t2] {
        let name = child("yearly", t);
        let out = env.roadie_within(&["wait", &name], Duration::from_secs(60));
        out.expect_code(0);
        let wf = env.get_json(&name);
        assert_eq!(wf["status"]["phase"], "Succeeded");
        assert_eq!(
            wf["metadata"]["labels"]["workflows.argoproj.io/cron-workflow"],
            "yearly"
        );
    }

    let out = env.roadie(&["cron", "get", "yearly", "-o", "json"]);
    out.expect_code(0);
    let got: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        got["status"]["lastScheduledTime"],
        t2.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(got["status"]["succeeded"], 2);
    let list = env.roadie(&["cron", "list", "-o", "name"]);
    assert_eq!(list.stdout, "yearly\n");

    env.roadie(&["cron", "delete", "yearly"]).expect_code(0);
    assert_eq!(env.roadie(&["cron", "get", "yearly"]).code, Some(1));
}

#[test]
fn forbid_skips_while_one_runs_and_suspend_stops_firing() {
    let env = Env::new();
    let file = cron_file(
        &env,
        "forbid",
        "  concurrencyPolicy: Forbid\n",
        "[sleep, \"300\"]",
    );
    env.roadie(&["cron", "create", &file]).expect_code(0);
    let _daemon = env.start_daemon(&["--workers", "1"]);

    let (t1, t2, t3, t4) = (new_year(1), new_year(2), new_year(3), new_year(4));
    let first = child("forbid", t1);
    assert_eq!(tick(&env, t1, 0), format!("started {first}\n"));
    wait_for(Duration::from_secs(60), || {
        (env.get_json_if_any(&first)?["status"]["phase"] == "Running").then_some(())
    })
    .expect("the first workflow runs");

    // Forbid: the second time is skipped while the first runs.
    let out = tick(&env, t2, 0);
    assert!(out.starts_with("skipped forbid: Forbidden"), "{out}");
    assert!(env.get_json_if_any(&child("forbid", t2)).is_none());

    env.roadie(&["terminate", &first]).expect_code(0);
    let out = env.roadie_within(&["wait", &first], Duration::from_secs(60));
    assert_eq!(out.code, Some(1), "terminated: {}", out.stdout);

    // Suspended: nothing fires; resumed: the next time fires again.
    env.roadie(&["cron", "suspend", "forbid"]).expect_code(0);
    assert_eq!(tick(&env, t3, 0), "");
    let got = env.roadie(&["cron", "get", "forbid", "-o", "json"]);
    let got: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(got["spec"]["suspend"], true);
    env.roadie(&["cron", "resume", "forbid"]).expect_code(0);
    assert_eq!(
        tick(&env, t4, 0),
        format!("started {}\n", child("forbid", t4))
    );
    env.roadie(&["terminate", &child("forbid", t4)])
        .expect_code(0);
}

#[test]
fn the_daemon_scheduler_starts_a_workflow_on_time_after_a_create_wakes_it() {
    let mut env = Env::new();
    // The daemon's scheduler clock runs ahead (test-only knob) so that it
    // reads 3 s before a whole minute now: "* * * * *" fires in seconds.
    let real = Utc::now().timestamp();
    // At least a minute ahead, so the scheduled time is after the
    // CronWorkflow's creation (real clock) whatever the second is now.
    let offset = 60 + 57 - real.rem_euclid(60);
    env.vars
        .push(("ROADIE_CRON_TEST_OFFSET_SECS".into(), offset.to_string()));
    let due = real + offset + 3;
    assert_eq!(due.rem_euclid(60), 0);
    let _daemon = env.start_daemon(&["--workers", "1"]);
    // Created after the daemon started: the scheduler, idle with nothing to
    // schedule, must be woken by the create, or it would look only a
    // minute later, past the grace, and skip the time.
    let file = cron_file(&env, "minutely", "", "[\"true\"]");
    let path = std::path::Path::new(&file);
    let src = std::fs::read_to_string(path)
        .unwrap()
        .replace("'0 0 1 1 *'", "'* * * * *'");
    std::fs::write(path, src).unwrap();
    env.roadie(&["cron", "create", &file]).expect_code(0);

    let name = format!("minutely-{due}");
    let wf = wait_for(Duration::from_secs(45), || {
        let wf = env.get_json_if_any(&name)?;
        (wf["status"]["phase"] == "Succeeded").then_some(wf)
    });
    let wf = wf.unwrap_or_else(|| {
        let out = env.roadie(&["list"]);
        let log = env.roadie(&["daemon", "logs"]);
        panic!(
            "{name} did not succeed\n{}\n--- daemon log\n{}",
            out.stdout, log.stdout
        )
    });
    assert_eq!(
        wf["metadata"]["labels"]["workflows.argoproj.io/cron-workflow"],
        "minutely"
    );
}

#[test]
fn the_argo_example_runs_with_its_scheduled_time() {
    let env = Env::new();
    let file = common::shared_dir().join("argo-examples/cron-workflow.yaml");
    let file = file.display().to_string();
    env.roadie(&["cron", "create", &file]).expect_code(0);
    // Decide a far-future time before the daemon starts, so its scheduler
    // (on the real clock, with "* * * * *") has nothing left to fire.
    let t = new_year(1);
    let name = child("hello-world", t);
    assert_eq!(tick(&env, t, 0), format!("started {name}\n"));
    let _daemon = env.start_daemon(&["--workers", "1"]);
    env.roadie_within(&["wait", &name], Duration::from_secs(60))
        .expect_code(0);
    let out = env.roadie(&["logs", &name]);
    out.expect_code(0);
    // Los Angeles is UTC-8 on 1 January.
    let local = t.with_timezone(&chrono::FixedOffset::west_opt(8 * 3600).unwrap());
    let expected = format!(
        "Scheduled on: {}",
        local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(out.stdout.contains(&expected), "{}", out.stdout);
}
