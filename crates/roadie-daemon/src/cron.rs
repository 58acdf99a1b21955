//! CronWorkflows: the scheduling rules (pure, with the clock passed in) and
//! the daemon's scheduler loop that applies them to the store.
//!
//! Semantics follow Argo's `workflow/cron` operator:
//!
//! - `schedule` / `schedules` are 5-field cron expressions (or `@hourly`,
//!   `@daily`, ...) read in `timezone` (default: this machine's local time
//!   zone, as Argo's default is the controller's;
//!   cluster; name a zone to get local wall-clock schedules);
//! - a workflow started for scheduled time `T` is named `NAME-<unix T>` and
//!   labelled `workflows.argoproj.io/cron-workflow: NAME`, so starting the
//!   same time twice (two daemons on one PostgreSQL, a crash between submit
//!   and bookkeeping) fails with `AlreadyExists` instead of running twice;
//! - `concurrencyPolicy`: `Allow` starts regardless, `Forbid` skips while a
//!   workflow it started still runs, `Replace` terminates those and starts;
//! - a time is started if the scheduler sees it within
//!   [`ON_TIME_GRACE`] of it, or within `startingDeadlineSeconds` when that
//!   is larger; older missed times are skipped (only the latest missed time
//!   is considered, as in Argo);
//! - `when` (expr-lang, optionally written `{{= ... }}`) is evaluated with
//!   `cronworkflow.name`, `.namespace`, `.labels`, `.annotations`,
//!   `.lastScheduledTime` (RFC 3339 or nil), `.succeeded` and `.failed`
//!   (counts of finished workflows it started); false skips the time;
//! - finished workflows beyond `successfulJobsHistoryLimit` (default 3) and
//!   `failedJobsHistoryLimit` (default 1) are deleted, oldest first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::TimeZone;
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use roadie_spec::{ObjectMeta, Time, Workflow, WorkflowPhase, WorkflowSpec};
use roadie_store::{ListFilter, NewWorkflow, Profile, Store, StoreError, StoredCron};
use serde::{Deserialize, Serialize};

/// The label on every workflow a CronWorkflow starts (Argo's).
pub const CRON_LABEL: &str = "workflows.argoproj.io/cron-workflow";
/// The annotation holding the scheduled time (RFC 3339) of such a workflow.
pub const SCHEDULED_TIME_ANNOTATION: &str = "workflows.argoproj.io/scheduled-time";
/// How late the scheduler may notice a scheduled time and still start it
/// when `startingDeadlineSeconds` is unset or smaller: the daemon's wake-up
/// latency, not a catch-up window.
pub const ON_TIME_GRACE: Duration = Duration::from_secs(30);
/// The longest the scheduler sleeps without looking at the store (covers
/// changes made on other machines, which no local file event announces).
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A CronWorkflow manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronWorkflow {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CronWorkflowSpec,
}

/// `spec` of a CronWorkflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronWorkflowSpec {
    /// Before Argo 3.6: one schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<i64>,
    #[serde(default)]
    pub suspend: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(default)]
    pub workflow_spec: WorkflowSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_metadata: Option<ObjectMeta>,
    /// Fields roadie accepts and ignores (`stopStrategy`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// What to do when a scheduled time comes while workflows it started run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    Forbid,
    Replace,
}

impl CronWorkflow {
    /// Reads a CronWorkflow from YAML or JSON; errors name `file:line:col`.
    pub fn parse(src: &str, file: &str) -> Result<CronWorkflow> {
        let cwf: CronWorkflow = serde_saphyr::from_str(src).map_err(|err| {
            let (line, column) = err
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            anyhow::anyhow!("{file}:{line}:{column}: {}", err.without_snippet())
        })?;
        if cwf.kind != "CronWorkflow" {
            bail!(
                "{file}: kind is {:?}, expected CronWorkflow",
                cwf.kind.as_str()
            );
        }
        if cwf.metadata.name.as_deref().unwrap_or("").is_empty() {
            bail!("{file}: metadata.name is required for a CronWorkflow");
        }
        cwf.schedule().with_context(|| file.to_string())?;
        Ok(cwf)
    }

    /// The name (validated non-empty by [`CronWorkflow::parse`]).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// The parsed schedules in their time zone.
    pub fn schedule(&self) -> Result<Schedule> {
        let mut exprs: Vec<&str> = self.spec.schedules.iter().map(String::as_str).collect();
        if let Some(s) = self
            .spec
            .schedule
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            exprs.push(s);
        }
        Schedule::new(&exprs, self.spec.timezone.as_deref())
    }

    /// The workflow to start for scheduled time `scheduled`: `workflowSpec`
    /// with `workflowMetadata`, named `NAME-<unix time>`, with the cron label
    /// and the scheduled-time annotation.
    pub fn workflow_for(&self, scheduled: Time) -> Workflow {
        let mut metadata = self.spec.workflow_metadata.clone().unwrap_or_default();
        metadata.name = Some(child_name(self.name(), scheduled));
        metadata.generate_name = None;
        metadata.namespace = self.metadata.namespace.clone();
        metadata
            .labels
            .insert(CRON_LABEL.to_string(), self.name().to_string());
        let when = self.scheduled_time_text(scheduled);
        metadata
            .annotations
            .insert(SCHEDULED_TIME_ANNOTATION.to_string(), when.clone());
        Workflow {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Workflow".into(),
            metadata,
            spec: with_scheduled_time(&self.spec.workflow_spec, &when),
            extra: Default::default(),
        }
    }

    /// The scheduled time as Argo writes it (RFC 3339 in the cron's time zone).
    fn scheduled_time_text(&self, scheduled: Time) -> String {
        let named = self
            .spec
            .timezone
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .and_then(|t| Tz::from_str(t).ok());
        match named {
            Some(tz) => scheduled
                .with_timezone(&tz)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => scheduled
                .with_timezone(&chrono::Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// `spec` with `{{workflow.scheduledTime}}` replaced by `when`: the variable
/// only exists for workflows a CronWorkflow starts, so it is filled in here,
/// where the scheduled time is known (the engine knows no such variable).
fn with_scheduled_time(spec: &WorkflowSpec, when: &str) -> WorkflowSpec {
    const TAGS: [&str; 2] = ["{{workflow.scheduledTime}}", "{{ workflow.scheduledTime }}"];
    let Ok(text) = serde_json::to_string(spec) else {
        return spec.clone();
    };
    if !TAGS.iter().any(|t| text.contains(t)) {
        return spec.clone();
    }
    // `when` has no character JSON escapes, so it goes in as is.
    let replaced = TAGS.iter().fold(text, |acc, t| acc.replace(t, when));
    serde_json::from_str(&replaced).unwrap_or_else(|_| spec.clone())
}

/// The name of the workflow a CronWorkflow starts for `scheduled` (Argo's).
pub fn child_name(cron: &str, scheduled: Time) -> String {
    format!("{cron}-{}", scheduled.timestamp())
}

/// Whether `workflow` is named as a workflow of `cron` ([`child_name`]).
pub fn is_child_name(cron: &str, workflow: &str) -> bool {
    workflow
        .strip_prefix(cron)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One or more cron expressions read in one time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    crons: Vec<Cron>,
    tz: Zone,
}

/// Where the cron fields are read: a named zone, or the machine's own.
#[derive(Debug, Clone, Copy)]
enum Zone {
    Named(Tz),
    Local,
}

impl Schedule {
    /// Parses Argo's (robfig/cron standard) syntax: 5 fields or a
    /// descriptor (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`).
    /// `timezone` is an IANA name; `None` or empty is the machine's local
    /// time zone (`TZ`, `/etc/localtime`).
    pub fn new(exprs: &[&str], timezone: Option<&str>) -> Result<Schedule> {
        if exprs.is_empty() {
            bail!("spec.schedules is empty: a CronWorkflow needs at least one schedule");
        }
        let tz = match timezone.map(str::trim).filter(|t| !t.is_empty()) {
            None => Zone::Local,
            Some(name) => Zone::Named(Tz::from_str(name).map_err(|e| {
                anyhow::anyhow!("spec.timezone: {name:?} is not an IANA time zone ({e})")
            })?),
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let crons = exprs
            .iter()
            .map(|e| {
                let e = e.trim();
                if e.starts_with("@every") || e.starts_with("@reboot") {
                    bail!("spec.schedules: {e:?}: @every and @reboot are not supported");
                }
                parser
                    .parse(e)
                    .map_err(|err| anyhow::anyhow!("spec.schedules: {e:?}: {err}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Schedule { crons, tz })
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: Time) -> Option<Time> {
        match self.tz {
            Zone::Named(tz) => self.next_in(&t.with_timezone(&tz)),
            Zone::Local => self.next_in(&t.with_timezone(&chrono::Local)),
        }
    }

    /// The last scheduled time at or before `t`.
    pub fn latest_at_or_before(&self, t: Time) -> Option<Time> {
        match self.tz {
            Zone::Named(tz) => self.latest_in(&t.with_timezone(&tz)),
            Zone::Local => self.latest_in(&t.with_timezone(&chrono::Local)),
        }
    }

    fn next_in<Z: TimeZone>(&self, t: &chrono::DateTime<Z>) -> Option<Time> {
        self.crons
            .iter()
            .filter_map(|c| c.find_next_occurrence(t, false).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
            .min()
    }

    fn latest_in<Z: TimeZone>(&self, t: &chrono::DateTime<Z>) -> Option<Time> {
        self.crons
            .iter()
            .filter_map(|c| c.find_previous_occurrence(t, true).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
            .max()
    }
}

/// A workflow a CronWorkflow started, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub name: String,
    pub uid: String,
    pub phase: WorkflowPhase,
    pub created_at: Time,
}

/// What the scheduler knows of one CronWorkflow at `now`.
#[derive(Debug, Clone)]
pub struct CronState<'a> {
    pub cron: &'a CronWorkflow,
    pub suspended: bool,
    pub created_at: Time,
    pub last_scheduled_time: Option<Time>,
    /// The last scheduled time already decided.
    pub cursor: Option<Time>,
    /// Every workflow it started that is still stored.
    pub children: &'a [Child],
}

/// Why a scheduled time was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Seen more than the allowed delay after it (daemon down, suspended).
    Missed { late: Duration },
    /// `concurrencyPolicy: Forbid` and these still run.
    Forbidden { running: Vec<String> },
    /// `when` was false.
    WhenFalse,
    /// `when` could not be evaluated.
    WhenError(String),
}

/// The decision about one due scheduled time.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start a workflow for `scheduled`, after terminating `terminate`
    /// (`Replace`).
    Run {
        scheduled: Time,
        terminate: Vec<Child>,
    },
    /// Record `scheduled` as decided without starting anything.
    Skip { scheduled: Time, reason: SkipReason },
}

/// What [`plan`] tells the scheduler to do for one CronWorkflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `None` when no scheduled time is due (or the cron is suspended).
    pub decision: Option<Decision>,
    /// Finished workflows beyond the history limits, to delete.
    pub delete: Vec<Child>,
    /// When to look again: the next scheduled time after `now` (`None` when
    /// suspended or the schedule never fires again).
    pub next_wake: Option<Time>,
}

/// Decides, for one CronWorkflow at `now`, whether a scheduled time is due
/// and what to do about it, which old workflows to delete, and when to wake
/// next. Pure: the clock is `now`.
pub fn plan(state: &CronState<'_>, schedule: &Schedule, now: Time) -> Plan {
    let spec = &state.cron.spec;
    let delete = history_to_delete(state);
    if state.suspended {
        return Plan {
            decision: None,
            delete,
            next_wake: None,
        };
    }
    let base = state.cursor.unwrap_or(state.created_at);
    let due = schedule.latest_at_or_before(now).filter(|t| *t > base);
    let decision = due.map(|scheduled| {
        let late = (now - scheduled).to_std().unwrap_or_default();
        let deadline = spec
            .starting_deadline_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or_default()
            .max(ON_TIME_GRACE);
        if late > deadline {
            return Decision::Skip {
                scheduled,
                reason: SkipReason::Missed { late },
            };
        }
        match eval_when(state) {
            Ok(true) => {}
            Ok(false) => {
                return Decision::Skip {
                    scheduled,
                    reason: SkipReason::WhenFalse,
                };
            }
            Err(e) => {
                return Decision::Skip {
                    scheduled,
                    reason: SkipReason::WhenError(e),
                };
            }
        }
        let this = child_name(state.cron.name(), scheduled);
        let running: Vec<Child> = state
            .children
            .iter()
            .filter(|c| !c.phase.is_completed() && c.name != this)
            .cloned()
            .collect();
        match spec.concurrency_policy {
            ConcurrencyPolicy::Forbid if !running.is_empty() => Decision::Skip {
                scheduled,
                reason: SkipReason::Forbidden {
                    running: running.into_iter().map(|c| c.name).collect(),
                },
            },
            ConcurrencyPolicy::Replace => Decision::Run {
                scheduled,
                terminate: running,
            },
            _ => Decision::Run {
                scheduled,
                terminate: Vec::new(),
            },
        }
    });
    Plan {
        decision,
        delete,
        next_wake: schedule.next_after(now),
    }
}

/// Evaluates `spec.when` (true when absent).
fn eval_when(state: &CronState<'_>) -> Result<bool, String> {
    let Some(when) = state.cron.spec.when.as_deref() else {
        return Ok(true);
    };
    let mut expr = when.trim();
    if let Some(inner) = expr
        .strip_prefix("{{=")
        .and_then(|rest| rest.strip_suffix("}}"))
    {
        expr = inner.trim();
    }
    if expr.is_empty() {
        return Ok(true);
    }
    let count =
        |pred: fn(WorkflowPhase) -> bool| state.children.iter().filter(|c| pred(c.phase)).count();
    let meta = &state.cron.metadata;
    let env = serde_json::json!({
        "cronworkflow": {
            "name": state.cron.name(),
            "namespace": meta.namespace.clone().unwrap_or_else(|| "default".into()),
            "labels": meta.labels,
            "annotations": meta.annotations,
            "lastScheduledTime": state.last_scheduled_time
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "succeeded": count(|p| p == WorkflowPhase::Succeeded),
            "failed": count(|p| matches!(p, WorkflowPhase::Failed | WorkflowPhase::Error)),
        }
    });
    roadie_expr::eval_expr_bool(expr, &env).map_err(|e| format!("spec.when: {e}"))
}

/// Finished children beyond the history limits, oldest first.
fn history_to_delete(state: &CronState<'_>) -> Vec<Child> {
    let limit = |v: Option<i64>, default: usize| {
        v.map(|n| usize::try_from(n).unwrap_or(0))
            .unwrap_or(default)
    };
    let spec = &state.cron.spec;
    let keep_ok = limit(spec.successful_jobs_history_limit, 3);
    let keep_failed = limit(spec.failed_jobs_history_limit, 1);
    let mut newest_first: Vec<&Child> = state.children.iter().collect();
    newest_first.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.name.cmp(&a.name)));
    let mut out = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for c in newest_first {
        let (seen, keep) = match c.phase {
            WorkflowPhase::Succeeded => (&mut ok, keep_ok),
            WorkflowPhase::Failed | WorkflowPhase::Error => (&mut failed, keep_failed),
            _ => continue,
        };
        *seen += 1;
        if *seen > keep {
            out.push(c.clone());
        }
    }
    out.reverse();
    out
}

/// What one scheduler pass did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Workflows started (their names).
    pub started: Vec<String>,
    /// Scheduled times skipped: (cron name, reason).
    pub skipped: Vec<(String, SkipReason)>,
    /// Workflows terminated by `Replace`.
    pub terminated: Vec<String>,
    /// Workflows deleted by the history limits.
    pub deleted: Vec<String>,
    /// CronWorkflows that could not be read (name, error).
    pub errors: Vec<(String, String)>,
    /// The earliest next scheduled time of any CronWorkflow.
    pub next_wake: Option<Time>,
}

/// One scheduler pass over every stored CronWorkflow at `now`: starts due
/// workflows (queued for the workers), skips, terminates and deletes as
/// [`plan`] says. Safe to run on several machines at once against one
/// store: each scheduled time is decided by exactly one pass (the store's
/// compare-and-set on the cursor), and a workflow is started at most once
/// (its name is fixed by the scheduled time).
pub fn tick(store: &Store, profile: &Profile, now: Time) -> Result<TickReport> {
    let mut report = TickReport::default();
    for stored in store.list_crons()? {
        let name = stored.name.clone();
        if let Err(e) = tick_one(store, profile, &stored, now, &mut report) {
            report.errors.push((name, format!("{e:#}")));
        }
    }
    Ok(report)
}

/// The workflows `cron` started that are still stored.
pub fn children(store: &Store, cron: &str) -> Result<Vec<Child>> {
    let filter = ListFilter {
        name_prefix: Some(format!("{cron}-")),
        ..Default::default()
    };
    Ok(store
        .list_workflows(&filter)?
        .into_iter()
        .filter(|w| is_child_name(cron, &w.name))
        .map(|w| Child {
            name: w.name,
            uid: w.uid,
            phase: w.phase,
            created_at: w.created_at,
        })
        .collect())
}

fn tick_one(
    store: &Store,
    profile: &Profile,
    stored: &StoredCron,
    now: Time,
    report: &mut TickReport,
) -> Result<()> {
    let cron: CronWorkflow = serde_json::from_value(stored.manifest.clone())
        .with_context(|| format!("CronWorkflow {}: stored manifest", stored.name))?;
    let schedule = cron.schedule()?;
    let kids = children(store, &stored.name)?;
    let state = CronState {
        cron: &cron,
        suspended: stored.suspended,
        created_at: stored.created_at,
        last_scheduled_time: stored.last_scheduled_time,
        cursor: stored.cursor,
        children: &kids,
    };
    let plan = plan(&state, &schedule, now);
    report.next_wake = match (report.next_wake, plan.next_wake) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut woke = false;
    for c in &plan.delete {
        // The store forgets the log records; the files are ours to remove.
        let logs = store.node_logs(&c.uid)?;
        if store.delete_workflow(&c.uid)? {
            for l in logs {
                let _ = std::fs::remove_file(&l.path);
            }
            report.deleted.push(c.name.clone());
        }
    }
    match plan.decision {
        None => {}
        Some(Decision::Skip { scheduled, reason }) => {
            let decided =
                store.advance_cron(&stored.name, stored.cursor.as_ref(), &scheduled, None)?;
            if decided {
                report.skipped.push((stored.name.clone(), reason));
            }
        }
        Some(Decision::Run {
            scheduled,
            terminate,
        }) => {
            for c in &terminate {
                match store.push_command(&c.uid, &serde_json::json!({ "action": "terminate" })) {
                    Ok(()) => report.terminated.push(c.name.clone()),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let wf = cron.workflow_for(scheduled);
            let wf_name = child_name(&stored.name, scheduled);
            let rec = NewWorkflow {
                uid: uuid::Uuid::new_v4().to_string(),
                name: wf_name.clone(),
                namespace: wf.metadata.namespace.clone(),
                manifest: wf,
                parameters: Default::default(),
                created_at: now,
            };
            // Submit first, then record: a crash in between leaves a
            // workflow whose second submission fails as already there.
            let started = match store.submit_workflow(&rec) {
                Ok(()) => true,
                Err(StoreError::AlreadyExists { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            store.advance_cron(
                &stored.name,
                stored.cursor.as_ref(),
                &scheduled,
                Some(&scheduled),
            )?;
            if started {
                report.started.push(wf_name);
            }
            woke = true;
        }
    }
    if woke || !report.terminated.is_empty() {
        crate::worker::wake_workers(profile);
    }
    Ok(())
}

/// The file whose changes wake the scheduler: `roadie cron create`,
/// `delete`, `suspend` and `resume` touch it.
pub fn wake_file(profile: &Profile) -> PathBuf {
    crate::worker::wake_dir(profile).join("cron")
}

/// Tells the scheduler of `profile` that CronWorkflows changed.
pub fn wake_scheduler(profile: &Profile) {
    // Best effort: the scheduler also looks every MAX_SLEEP.
    let _ = std::fs::create_dir_all(crate::worker::wake_dir(profile));
    let _ = std::fs::write(wake_file(profile), chrono::Utc::now().to_rfc3339());
}

/// Starts the scheduler thread of a supervisor: it runs [`tick`] at each
/// next scheduled time, at most [`MAX_SLEEP`] apart, and at once when the
/// wake file changes.
pub fn spawn_scheduler(profile: Profile) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cron".into())
        .stack_size(512 * 1024)
        .spawn(move || scheduler_loop(&profile))
        .map(|_| ())
}

fn log(msg: impl std::fmt::Display) {
    eprintln!(
        "{} roadie cron: {msg}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
}

/// Test-only: the scheduler thread's clock runs this many seconds ahead of
/// the real one, so an end-to-end test can bring a scheduled time seconds
/// away without waiting for it. Never set it in normal use.
pub const TEST_OFFSET_ENV: &str = "ROADIE_CRON_TEST_OFFSET_SECS";

fn scheduler_loop(profile: &Profile) {
    use notify::Watcher;
    let offset = std::env::var(TEST_OFFSET_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(chrono::Duration::seconds)
        .unwrap_or_default();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let wake_path = wake_file(profile);
    let watched_name = wake_path.file_name().map(|n| n.to_os_string());
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == watched_name)
        {
            let _ = tx.send(());
        }
    });
    // Kept alive for the thread's life; without it the loop still ticks.
    let _watcher = match watcher {
        Ok(mut w) => {
            match std::fs::create_dir_all(crate::worker::wake_dir(profile)).and_then(|()| {
                w.watch(
                    &crate::worker::wake_dir(profile),
                    notify::RecursiveMode::NonRecursive,
                )
                .map_err(std::io::Error::other)
            }) {
                Ok(()) => Some(w),
                Err(e) => {
                    log(format_args!(
                        "cannot watch {}: {e}",
                        crate::worker::wake_dir(profile).display()
                    ));
                    None
                }
            }
        }
        Err(e) => {
            log(format_args!("cannot watch for CronWorkflow changes: {e}"));
            None
        }
    };
    let mut store = None;
    loop {
        let mut sleep = MAX_SLEEP;
        if store.is_none() {
            match crate::worker::open_store(profile) {
                Ok(s) => store = Some(s),
                Err(e) => log(format_args!("cannot open the store: {e:#}")),
            }
        }
        if let Some(s) = &store {
            let now = chrono::Utc::now() + offset;
            match tick(s, profile, now) {
                Ok(r) => {
                    for n in &r.started {
                        log(format_args!("started {n}"));
                    }
                    for (n, why) in &r.skipped {
                        log(format_args!("{n}: skipped a scheduled time: {why:?}"));
                    }
                    for (n, e) in &r.errors {
                        log(format_args!("{n}: {e}"));
                    }
                    if let Some(next) = r.next_wake {
                        // A little after the time, so `latest_at_or_before` sees it.
                        let until =
                            (next - now).to_std().unwrap_or_default() + Duration::from_millis(20);
                        sleep = sleep.min(until);
                    }
                }
                Err(e) => {
                    log(format_args!("scheduler pass failed: {e:#}"));
                    store = None;
                    sleep = Duration::from_secs(5);
                }
            }
        }
        match rx.recv_timeout(sleep) {
            Ok(()) => while rx.try_recv().is_ok() {},
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(sleep);
            }
        }
    }
}

/// A time in UTC from RFC 3339 text (for the hidden `roadie cron tick --now`).
pub fn parse_time(s: &str) -> Result<Time> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| format!("{s:?} is not an RFC 3339 time"))
}

/// `chrono::Utc.timestamp_opt` for tests and callers holding unix seconds.
pub fn from_unix(secs: i64) -> Option<Time> {
    chrono::Utc.timestamp_opt(secs, 0).single()
}

#[cfg(test)]
mod tests;
