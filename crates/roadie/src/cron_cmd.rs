//! `roadie cron`: CronWorkflows kept in the profile's store, which the
//! daemon's scheduler starts on schedule (as `argo cron` does in a cluster).

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Subcommand;
use roadie_daemon::cron::{self, CronWorkflow, wake_scheduler};
use roadie_daemon::worker::open_store;
use roadie_engine::WorkflowRun;
use roadie_spec::WorkflowPhase;
use roadie_store::{Profile, Store, StoredCron};

use crate::{EXIT_USAGE, OutputFormat};

#[derive(Subcommand)]
pub enum CronCommand {
    /// Store CronWorkflows from files (YAML or JSON, kind: CronWorkflow); the
    /// daemon starts their workflows on schedule.
    #[command(
        after_help = "Examples:\n  roadie cron create nightly.yaml\n  roadie cron create crons/*.yaml\n\nA CronWorkflow of the same name must be deleted first. Schedules are read in spec.timezone, this machine's time zone when unset."
    )]
    Create {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// List CronWorkflows with their last and next scheduled times.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  roadie cron list\n  roadie cron list -o name"
    )]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value = "wide")]
        output: OutputFormat,
    },
    /// Show a CronWorkflow: its manifest and status (last scheduled time, active workflows).
    #[command(
        after_help = "Examples:\n  roadie cron get nightly\n  roadie cron get nightly -o json | jq .status.lastScheduledTime"
    )]
    Get {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value = "wide")]
        output: OutputFormat,
    },
    /// Delete CronWorkflows (the workflows they started stay, see `roadie delete`).
    #[command(
        visible_alias = "rm",
        after_help = "Examples:\n  roadie cron delete nightly"
    )]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop starting workflows (those running go on).
    #[command(
        after_help = "Examples:\n  roadie cron suspend nightly\n  roadie cron resume nightly"
    )]
    Suspend {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Start workflows on schedule again (scheduled times missed while suspended
    /// are skipped unless within startingDeadlineSeconds).
    #[command(after_help = "Examples:\n  roadie cron resume nightly")]
    Resume {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Test-only: run one scheduler pass as if the time were NOW (RFC 3339),
    /// so tests need not wait for real minutes. Not for normal use.
    #[command(hide = true)]
    Tick {
        #[arg(long)]
        now: String,
    },
}

/// Runs one `roadie cron` subcommand.
pub fn run(profile: Option<&str>, cmd: CronCommand) -> Result<u8> {
    let profile = Profile::resolve(profile)?;
    profile.ensure_dirs()?;
    let store = open_store(&profile)?;
    match cmd {
        CronCommand::Create { files } => {
            let mut code = 0;
            for file in &files {
                match create_one(&store, file) {
                    Ok(Some(name)) => println!("CronWorkflow {name} created"),
                    Ok(None) => code = EXIT_USAGE,
                    Err(e) => {
                        eprintln!("error: {file}: {e:#}");
                        code = code.max(1);
                    }
                }
            }
            wake_scheduler(&profile);
            Ok(code)
        }
        CronCommand::List { output } => list(&store, output),
        CronCommand::Get { name, output } => get(&store, &name, output),
        CronCommand::Delete { names } => {
            each(&profile, &names, "deleted", |n| Ok(store.delete_cron(n)?))
        }
        CronCommand::Suspend { names } => each(&profile, &names, "suspended", |n| {
            Ok(store.set_cron_suspended(n, true)?)
        }),
        CronCommand::Resume { names } => each(&profile, &names, "resumed", |n| {
            Ok(store.set_cron_suspended(n, false)?)
        }),
        CronCommand::Tick { now } => {
            let now = cron::parse_time(&now)?;
            let report = cron::tick(&store, &profile, now)?;
            for n in &report.started {
                println!("started {n}");
            }
            for (n, why) in &report.skipped {
                println!("skipped {n}: {why:?}");
            }
            for n in &report.terminated {
                println!("terminated {n}");
            }
            for n in &report.deleted {
                println!("deleted {n}");
            }
            for (n, e) in &report.errors {
                eprintln!("error: {n}: {e}");
            }
            Ok(u8::from(!report.errors.is_empty()))
        }
    }
}

/// Applies `f` to each name; exit 1 if any was not found.
fn each(
    profile: &Profile,
    names: &[String],
    done: &str,
    f: impl Fn(&str) -> Result<bool>,
) -> Result<u8> {
    let mut code = 0;
    for name in names {
        if f(name)? {
            println!("CronWorkflow {name} {done}");
        } else {
            eprintln!("error: CronWorkflow '{name}' not found (see `roadie cron list`)");
            code = 1;
        }
    }
    wake_scheduler(profile);
    Ok(code)
}

/// Lints, parses, checks and stores one file; `None` after printing why it is refused.
fn create_one(store: &Store, file: &str) -> Result<Option<String>> {
    let src = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    let mut bad = false;
    for d in crate::lint_file(&src, file) {
        eprintln!("{d}");
        bad |= d.is_error();
    }
    if bad {
        eprintln!("error: {file} has problems; nothing was stored");
        return Ok(None);
    }
    let cwf = match CronWorkflow::parse(&src, file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(None);
        }
    };
    for key in cwf.spec.extra.keys() {
        eprintln!("note: {file}: spec.{key} is accepted and not acted on by roadie");
    }
    // The workflow it will start must be valid now, not at 3 a.m.
    let now = Utc::now();
    let check = roadie_engine::RunOptions {
        name: Some(cron::child_name(cwf.name(), now)),
        uid: "check".into(),
        parameters: Default::default(),
        library: store.template_library()?,
    };
    if let Err(e) = WorkflowRun::new(cwf.workflow_for(now), check, now) {
        eprintln!("error: {file}: spec.workflowSpec: {e}");
        return Ok(None);
    }
    let name = cwf.name().to_string();
    store.create_cron(&StoredCron {
        name: name.clone(),
        manifest: serde_json::to_value(&cwf)?,
        suspended: cwf.spec.suspend,
        created_at: now,
        last_scheduled_time: None,
        cursor: None,
    })?;
    Ok(Some(name))
}

/// The manifest with `spec.suspend` as stored and an Argo-shaped `status`.
fn with_status(store: &Store, c: &StoredCron) -> Result<serde_json::Value> {
    let kids = cron::children(store, &c.name)?;
    let mut m = c.manifest.clone();
    if let Some(spec) = m.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert("suspend".into(), c.suspended.into());
    }
    let active: Vec<&str> = kids
        .iter()
        .filter(|k| !k.phase.is_completed())
        .map(|k| k.name.as_str())
        .collect();
    let count = |f: fn(WorkflowPhase) -> bool| kids.iter().filter(|k| f(k.phase)).count();
    m["status"] = serde_json::json!({
        "active": active,
        "lastScheduledTime": c.last_scheduled_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "succeeded": count(|p| p == WorkflowPhase::Succeeded),
        "failed": count(|p| matches!(p, WorkflowPhase::Failed | WorkflowPhase::Error)),
    });
    Ok(m)
}

fn next_run(c: &StoredCron) -> Option<String> {
    if c.suspended {
        return None;
    }
    let cwf: CronWorkflow = serde_json::from_value(c.manifest.clone()).ok()?;
    let next = cwf.schedule().ok()?.next_after(Utc::now())?;
    Some(next.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn schedules(c: &StoredCron) -> String {
    serde_json::from_value::<CronWorkflow>(c.manifest.clone())
        .map(|cwf| {
            let mut s = cwf.spec.schedules.clone();
            s.extend(cwf.spec.schedule.clone());
            // Not ",": cron fields use commas themselves.
            s.join("; ")
        })
        .unwrap_or_default()
}

fn list(store: &Store, output: OutputFormat) -> Result<u8> {
    let rows = store.list_crons()?;
    match output {
        OutputFormat::Json | OutputFormat::Yaml => {
            let items = rows
                .iter()
                .map(|c| with_status(store, c))
                .collect::<Result<Vec<_>>>()?;
            if output == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print!("{}", serde_saphyr::to_string(&items)?);
            }
        }
        OutputFormat::Name => rows.iter().for_each(|c| println!("{}", c.name)),
        OutputFormat::Wide => {
            let width = rows.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
            println!(
                "{:width$}  {:20}  {:20}  {:9}  SCHEDULES",
                "NAME", "LAST SCHEDULED", "NEXT", "SUSPENDED"
            );
            for c in &rows {
                println!(
                    "{:width$}  {:20}  {:20}  {:9}  {}",
                    c.name,
                    c.last_scheduled_time
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "-".into()),
                    next_run(c).unwrap_or_else(|| "-".into()),
                    c.suspended,
                    schedules(c)
                );
            }
        }
    }
    Ok(0)
}

fn get(store: &Store, name: &str, output: OutputFormat) -> Result<u8> {
    let Some(c) = store.get_cron(name)? else {
        eprintln!("error: CronWorkflow '{name}' not found (see `roadie cron list`)");
        return Ok(1);
    };
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&with_status(store, &c)?)?
        ),
        OutputFormat::Yaml => print!("{}", serde_saphyr::to_string(&with_status(store, &c)?)?),
        OutputFormat::Name => println!("{}", c.name),
        OutputFormat::Wide => {
            let m = with_status(store, &c)?;
            let spec = &m["spec"];
            let status = &m["status"];
            let show = |v: &serde_json::Value| match v {
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) if a.is_empty() => "-".to_string(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            println!("Name:                {}", c.name);
            println!("Schedules:           {}", schedules(&c));
            println!(
                "Timezone:            {}",
                spec["timezone"].as_str().unwrap_or("UTC")
            );
            println!(
                "Concurrency policy:  {}",
                spec["concurrencyPolicy"].as_str().unwrap_or("Allow")
            );
            println!("Suspended:           {}", c.suspended);
            println!(
                "Created:             {}",
                c.created_at.format("%Y-%m-%dT%H:%M:%SZ")
            );
            println!(
                "Last scheduled:      {}",
                show(&status["lastScheduledTime"])
            );
            println!(
                "Next scheduled:      {}",
                next_run(&c).unwrap_or_else(|| "-".into())
            );
            println!("Active:              {}", show(&status["active"]));
            println!(
                "Succeeded / failed:  {} / {}",
                status["succeeded"], status["failed"]
            );
        }
    }
    Ok(0)
}
