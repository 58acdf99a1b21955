//! The scheduling rules with an injected clock: every `now` is a value.

use chrono::{TimeZone, Utc};

use super::*;

fn at(h: u32, m: u32, s: u32) -> Time {
    Utc.with_ymd_and_hms(2026, 3, 2, h, m, s).unwrap()
}

/// A CronWorkflow named `c` (in UTC unless `yaml_spec` names a zone, so the
/// tests do not depend on the machine's time zone).
fn cron(yaml_spec: &str) -> CronWorkflow {
    let zone = if yaml_spec.contains("timezone:") {
        ""
    } else {
        "  timezone: UTC\n"
    };
    let yaml_spec = format!("{yaml_spec}{zone}");
    let src = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\nmetadata:\n  name: c\nspec:\n{yaml_spec}  workflowSpec:\n    entrypoint: main\n"
    );
    CronWorkflow::parse(&src, "c.yaml").unwrap()
}

fn child(name: &str, phase: WorkflowPhase, created: Time) -> Child {
    Child {
        name: name.into(),
        uid: format!("uid-{name}"),
        phase,
        created_at: created,
    }
}

struct Fixture {
    cron: CronWorkflow,
    suspended: bool,
    created_at: Time,
    last: Option<Time>,
    cursor: Option<Time>,
    children: Vec<Child>,
}

impl Fixture {
    fn new(spec: &str) -> Fixture {
        Fixture {
            cron: cron(spec),
            suspended: false,
            created_at: at(10, 0, 30),
            last: None,
            cursor: None,
            children: Vec::new(),
        }
    }

    fn plan(&self, now: Time) -> Plan {
        let state = CronState {
            cron: &self.cron,
            suspended: self.suspended,
            created_at: self.created_at,
            last_scheduled_time: self.last,
            cursor: self.cursor,
            children: &self.children,
        };
        plan(&state, &self.cron.schedule().unwrap(), now)
    }
}

fn run_at(t: Time) -> Option<Decision> {
    Some(Decision::Run {
        scheduled: t,
        terminate: vec![],
    })
}

#[test]
fn nothing_is_due_before_the_first_scheduled_time_after_creation() {
    let f = Fixture::new("  schedules: ['* * * * *']\n");
    let p = f.plan(at(10, 0, 59));
    assert_eq!(p.decision, None);
    assert_eq!(p.next_wake, Some(at(10, 1, 0)));
}

#[test]
fn a_due_time_runs_and_is_not_run_again_once_decided() {
    let mut f = Fixture::new("  schedules: ['* * * * *']\n");
    assert_eq!(f.plan(at(10, 1, 0)).decision, run_at(at(10, 1, 0)));
    assert_eq!(f.plan(at(10, 1, 5)).decision, run_at(at(10, 1, 0)));
    f.cursor = Some(at(10, 1, 0));
    let p = f.plan(at(10, 1, 20));
    assert_eq!(p.decision, None);
    assert_eq!(p.next_wake, Some(at(10, 2, 0)));
    assert_eq!(f.plan(at(10, 2, 0)).decision, run_at(at(10, 2, 0)));
}

#[test]
fn the_names_are_fixed_by_the_scheduled_time_and_labelled() {
    let f = Fixture::new("  schedules: ['* * * * *']\n");
    let wf = f.cron.workflow_for(at(10, 1, 0));
    assert_eq!(
        wf.metadata.name.as_deref(),
        Some(format!("c-{}", at(10, 1, 0).timestamp()).as_str())
    );
    assert_eq!(wf.metadata.labels[CRON_LABEL], "c");
    assert_eq!(
        wf.metadata.annotations[SCHEDULED_TIME_ANNOTATION],
        "2026-03-02T10:01:00Z"
    );
    assert_eq!(wf.kind, "Workflow");
    assert_eq!(wf.spec.entrypoint.as_deref(), Some("main"));
    assert!(is_child_name("c", &child_name("c", at(10, 1, 0))));
    assert!(!is_child_name("c", "c-x"));
    assert!(!is_child_name("c", "c-5-1700000000"));
    assert!(!is_child_name("c", "cc-1700000000"));
}

#[test]
fn missed_times_older_than_the_grace_are_skipped_and_only_the_latest_counts() {
    let mut f = Fixture::new("  schedule: '*/5 * * * *'\n");
    f.cursor = Some(at(10, 5, 0));
    // Down from 10:06 to 10:21: 10:10, 10:15, 10:20 were missed; 10:20 is
    // the one considered, 60 s late, past the 30 s grace.
    let p = f.plan(at(10, 21, 0));
    assert_eq!(
        p.decision,
        Some(Decision::Skip {
            scheduled: at(10, 20, 0),
            reason: SkipReason::Missed {
                late: Duration::from_secs(60)
            }
        })
    );
    // Within the grace it still runs.
    assert_eq!(f.plan(at(10, 20, 29)).decision, run_at(at(10, 20, 0)));
}

#[test]
fn starting_deadline_seconds_widens_the_window_for_a_missed_time() {
    let mut f = Fixture::new("  schedule: '*/5 * * * *'\n  startingDeadlineSeconds: 120\n");
    f.cursor = Some(at(10, 5, 0));
    assert_eq!(f.plan(at(10, 21, 59)).decision, run_at(at(10, 20, 0)));
    assert!(matches!(
        f.plan(at(10, 22, 1)).decision,
        Some(Decision::Skip {
            reason: SkipReason::Missed { .. },
            ..
        })
    ));
}

#[test]
fn forbid_skips_while_one_runs_and_runs_once_it_finished() {
    let mut f = Fixture::new("  schedules: ['* * * * *']\n  concurrencyPolicy: Forbid\n");
    f.cursor = Some(at(10, 1, 0));
    f.children = vec![child("c-1", WorkflowPhase::Running, at(10, 1, 0))];
    assert_eq!(
        f.plan(at(10, 2, 0)).decision,
        Some(Decision::Skip {
            scheduled: at(10, 2, 0),
            reason: SkipReason::Forbidden {
                running: vec!["c-1".into()]
            }
        })
    );
    f.children[0].phase = WorkflowPhase::Succeeded;
    assert_eq!(f.plan(at(10, 2, 0)).decision, run_at(at(10, 2, 0)));
}

#[test]
fn allow_runs_alongside_and_replace_terminates_the_running_ones() {
    let mut f = Fixture::new("  schedules: ['* * * * *']\n");
    f.cursor = Some(at(10, 1, 0));
    f.children = vec![
        child("c-1", WorkflowPhase::Running, at(10, 1, 0)),
        child("c-0", WorkflowPhase::Succeeded, at(10, 0, 0)),
    ];
    assert_eq!(f.plan(at(10, 2, 0)).decision, run_at(at(10, 2, 0)));
    f.cron.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    assert_eq!(
        f.plan(at(10, 2, 0)).decision,
        Some(Decision::Run {
            scheduled: at(10, 2, 0),
            terminate: vec![f.children[0].clone()]
        })
    );
    // The workflow for this very time (already submitted by a pass that
    // crashed before recording it) is neither replaced nor forbidding.
    let own = child_name("c", at(10, 2, 0));
    f.children = vec![child(&own, WorkflowPhase::Running, at(10, 2, 0))];
    assert_eq!(f.plan(at(10, 2, 0)).decision, run_at(at(10, 2, 0)));
}

#[test]
fn suspended_fires_nothing_and_a_resume_skips_what_was_missed() {
    let mut f = Fixture::new("  schedules: ['* * * * *']\n");
    f.suspended = true;
    let p = f.plan(at(10, 1, 0));
    assert_eq!(p.decision, None);
    assert_eq!(p.next_wake, None);
    f.suspended = false;
    assert!(matches!(
        f.plan(at(10, 3, 40)).decision,
        Some(Decision::Skip {
            scheduled,
            reason: SkipReason::Missed { .. },
        }) if scheduled == at(10, 3, 0)
    ));
}

#[test]
fn when_reads_the_cronworkflow_variables() {
    let mut f = Fixture::new(
        "  schedules: ['* * * * *']\n  when: \"{{= cronworkflow.lastScheduledTime == nil || cronworkflow.succeeded < 2 }}\"\n",
    );
    assert_eq!(f.plan(at(10, 1, 0)).decision, run_at(at(10, 1, 0)));
    f.last = Some(at(10, 1, 0));
    f.cursor = Some(at(10, 1, 0));
    f.children = vec![
        child("c-1", WorkflowPhase::Succeeded, at(10, 1, 0)),
        child("c-0", WorkflowPhase::Succeeded, at(10, 0, 0)),
    ];
    assert_eq!(
        f.plan(at(10, 2, 0)).decision,
        Some(Decision::Skip {
            scheduled: at(10, 2, 0),
            reason: SkipReason::WhenFalse
        })
    );
    f.cron.spec.when = Some("cronworkflow.name == 'c' && cronworkflow.failed == 0".into());
    assert_eq!(f.plan(at(10, 2, 0)).decision, run_at(at(10, 2, 0)));
    f.cron.spec.when = Some("cronworkflow.name +".into());
    assert!(matches!(
        f.plan(at(10, 2, 0)).decision,
        Some(Decision::Skip {
            reason: SkipReason::WhenError(_),
            ..
        })
    ));
}

#[test]
fn history_limits_delete_the_oldest_finished_workflows() {
    let mut f = Fixture::new("  schedules: ['* * * * *']\n  successfulJobsHistoryLimit: 2\n");
    let t = |m| at(9, m, 0);
    f.children = vec![
        child("ok-1", WorkflowPhase::Succeeded, t(1)),
        child("ok-2", WorkflowPhase::Succeeded, t(2)),
        child("ok-3", WorkflowPhase::Succeeded, t(3)),
        child("bad-1", WorkflowPhase::Failed, t(4)),
        child("bad-2", WorkflowPhase::Error, t(5)),
        child("run", WorkflowPhase::Running, t(0)),
    ];
    let names: Vec<String> = f
        .plan(at(10, 0, 40))
        .delete
        .into_iter()
        .map(|c| c.name)
        .collect();
    // Keep 2 succeeded and (default) 1 failed; running ones are never deleted.
    assert_eq!(names, ["ok-1", "bad-1"]);
}

#[test]
fn several_schedules_fire_at_the_earliest_of_them() {
    let mut f = Fixture::new("  schedules: ['*/3 * * * *', '*/2 * * * *']\n");
    f.cursor = Some(at(10, 0, 0));
    let p = f.plan(at(10, 1, 0));
    assert_eq!(p.decision, None);
    assert_eq!(p.next_wake, Some(at(10, 2, 0)));
    f.cursor = Some(at(10, 2, 0));
    assert_eq!(f.plan(at(10, 2, 30)).next_wake, Some(at(10, 3, 0)));
}

#[test]
fn the_timezone_moves_the_wall_clock_schedule() {
    // 09:00 in Los Angeles on 2 March 2026 (PST, UTC-8) is 17:00 UTC.
    let mut f = Fixture::new("  schedule: '0 9 * * *'\n  timezone: America/Los_Angeles\n");
    f.created_at = at(0, 0, 0);
    let p = f.plan(at(12, 0, 0));
    assert_eq!(p.decision, None);
    assert_eq!(p.next_wake, Some(at(17, 0, 0)));
    assert_eq!(f.plan(at(17, 0, 1)).decision, run_at(at(17, 0, 0)));
}

#[test]
fn descriptors_parse_and_bad_input_names_the_field() {
    let s = Schedule::new(&["@hourly"], Some("UTC")).unwrap();
    assert_eq!(s.next_after(at(10, 0, 0)), Some(at(11, 0, 0)));
    let s = Schedule::new(&["@daily"], Some("UTC")).unwrap();
    assert_eq!(s.latest_at_or_before(at(10, 0, 0)), Some(at(0, 0, 0)));
    let err = Schedule::new(&["* * *"], None).unwrap_err().to_string();
    assert!(err.contains("spec.schedules"), "{err}");
    let err = Schedule::new(&["0 0 0 * * *"], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.schedules"), "{err}");
    let err = Schedule::new(&["* * * * *"], Some("Mars/Base"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.timezone"), "{err}");
    let err = Schedule::new(&[], None).unwrap_err().to_string();
    assert!(err.contains("spec.schedules"), "{err}");
    let src = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: x}\nspec: {}\n";
    let err = CronWorkflow::parse(src, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("x.yaml") && err.contains("CronWorkflow"),
        "{err}"
    );
}

#[test]
fn the_argo_examples_parse() {
    for f in [
        "cron-workflow.yaml",
        "cron-workflow-multiple-schedules.yaml",
    ] {
        let path = format!(
            "{}/../../../shared/argo-examples/{f}",
            env!("CARGO_MANIFEST_DIR")
        );
        let Ok(src) = std::fs::read_to_string(&path) else {
            continue; // the examples live outside the repository
        };
        let c = CronWorkflow::parse(&src, f).unwrap();
        assert_eq!(c.spec.concurrency_policy, ConcurrencyPolicy::Replace);
        assert_eq!(c.spec.successful_jobs_history_limit, Some(4));
        assert!(c.schedule().unwrap().next_after(at(0, 0, 0)).is_some());
    }
}

#[test]
fn workflow_scheduled_time_is_filled_in_the_cron_time_zone() {
    let mut f = Fixture::new("  schedule: '0 9 * * *'\n  timezone: America/Los_Angeles\n");
    f.cron.spec.workflow_spec = roadie_spec::parse_workflow(
        "spec:\n  entrypoint: main\n  templates:\n  - name: main\n    container:\n      command: [echo]\n      args: ['at {{workflow.scheduledTime}}', '{{ workflow.scheduledTime }}']\n",
        "w.yaml",
    )
    .unwrap()
    .spec;
    let wf = f.cron.workflow_for(at(17, 0, 0));
    let args = &wf.spec.templates[0].container.as_ref().unwrap().args;
    assert_eq!(
        args,
        &["at 2026-03-02T09:00:00-08:00", "2026-03-02T09:00:00-08:00"]
    );
    assert_eq!(
        wf.metadata.annotations[SCHEDULED_TIME_ANNOTATION],
        "2026-03-02T09:00:00-08:00"
    );
}

#[test]
fn without_a_timezone_the_machine_local_zone_is_used() {
    use chrono::Timelike;
    let s = Schedule::new(&["0 9 * * *"], None).unwrap();
    let next = s.next_after(at(0, 0, 0)).unwrap();
    let local = next.with_timezone(&chrono::Local);
    assert_eq!((local.hour(), local.minute()), (9, 0));
    assert!(next > at(0, 0, 0) && next <= at(0, 0, 0) + chrono::Duration::days(1));
}
