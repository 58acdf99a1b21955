//! `roadie run`: the driver loop around the engine.
//!
//! It waits for a runtime event, the engine's next timer, or a signal to
//! roadie; hands it to the engine; writes what changed to the store; then
//! carries out the engine's actions. Persisting before acting is the
//! write-ahead rule of DESIGN.md: a step is recorded as Pending before its
//! process is started.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use roadie_engine::{Action, Event, RunOptions, StepExit, StepSignal, StopMode, WorkflowRun};
use roadie_runtime::{HostRuntime, RuntimeEvent, Signal};
use roadie_spec::{Workflow, WorkflowPhase};
use roadie_store::{NewWorkflow, Profile, Store, WorkflowStatusSummary};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::render::{LiveView, print_workflow};
use crate::{EXIT_USAGE, OutputFormat};

pub fn run_command(
    profile: Option<&str>,
    file: &str,
    parameters: &[String],
    name: Option<String>,
    output: Option<OutputFormat>,
    quiet: bool,
) -> Result<u8> {
    let src = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read {file}: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let diagnostics = crate::lint_file(&src, file);
    let mut failed_lint = false;
    for d in &diagnostics {
        eprintln!("{d}");
        failed_lint |= d.is_error();
    }
    if failed_lint {
        eprintln!("error: {file} has problems; nothing was run");
        return Ok(EXIT_USAGE);
    }
    let wf = match roadie_spec::parse_workflow(&src, file) {
        Ok(wf) => wf,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_USAGE);
        }
    };
    let mut params = Vec::new();
    for p in parameters {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => params.push((k.to_string(), v.to_string())),
            _ => {
                eprintln!("error: -p expects NAME=VALUE, got '{p}'");
                return Ok(EXIT_USAGE);
            }
        }
    }
    let profile = Profile::resolve(profile)?;
    profile.ensure_dirs()?;
    let store = Store::open_profile(&profile)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let phase = runtime.block_on(drive(&profile, &store, wf, params, name, output, quiet))?;
    Ok(match phase {
        Some(WorkflowPhase::Succeeded) => 0,
        Some(_) => 1,
        None => EXIT_USAGE,
    })
}

/// A name from `generateName`: Argo appends 5 random lowercase alphanumerics.
fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

async fn drive(
    profile: &Profile,
    store: &Store,
    wf: Workflow,
    params: Vec<(String, String)>,
    name: Option<String>,
    output: Option<OutputFormat>,
    quiet: bool,
) -> Result<Option<WorkflowPhase>> {
    // Whatever a crashed roadie left running is killed before anything new starts.
    match roadie_runtime::reap_leftovers(&profile.state_dir()) {
        Ok(killed) if !killed.is_empty() => {
            eprintln!(
                "note: killed {} process(es) left over by an earlier roadie that died",
                killed.len()
            )
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not check for leftover processes: {e}"),
    }
    let name = match name.or_else(|| wf.metadata.name.clone()) {
        Some(n) => n,
        None => match wf.metadata.generate_name.as_deref() {
            Some(prefix) => generated_name(prefix),
            None => {
                eprintln!(
                    "error: the workflow has neither metadata.name nor metadata.generateName; pass --name"
                );
                return Ok(None);
            }
        },
    };
    let uid = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    let ignored = roadie_spec::ignored_fields(&wf);
    let uses_images = wf.spec.templates.iter().any(|t| {
        t.container
            .as_ref()
            .and_then(|c| c.image.as_ref())
            .is_some()
            || t.script
                .as_ref()
                .and_then(|s| s.container.image.as_ref())
                .is_some()
    });
    let mut run = match WorkflowRun::new(
        wf.clone(),
        RunOptions {
            name: Some(name.clone()),
            uid: uid.clone(),
            parameters: params.clone(),
        },
        now,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(None);
        }
    };
    store.create_workflow(&NewWorkflow {
        uid: uid.clone(),
        name: name.clone(),
        namespace: wf.metadata.namespace.clone(),
        manifest: wf,
        parameters: params.into_iter().collect::<BTreeMap<_, _>>(),
        created_at: now,
    })?;
    let log_dir = profile.workflow_log_dir(&name);
    let interactive = std::io::stdout().is_terminal() && !quiet && output.is_none();
    let mut view = LiveView::new(interactive, quiet || output.is_some());
    view.note(&format!(
        "Workflow {name} started (profile {}, store {})",
        profile.name,
        profile.db_path().display()
    ));
    if uses_images {
        view.note("note: container images are not used by the host runtime: each step runs its command on this machine");
    }
    if !ignored.is_empty() {
        view.note(&format!(
            "note: fields that only matter to Kubernetes are ignored: {}",
            ignored.join(", ")
        ));
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let host =
        HostRuntime::new(&profile.state_dir(), tx).context("cannot start the host runtime")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupts = 0;
    let mut batch = Vec::new();
    loop {
        persist(store, &uid, &mut run, &mut view)?;
        while let Some(action) = run.poll_action() {
            execute(&host, store, &uid, &log_dir, action)?;
        }
        view.draw(run.status(), run.name());
        if run.is_completed() && host.live_steps() == 0 {
            break;
        }
        let wake = run.poll_timeout();
        let sleep = async {
            match wake {
                Some(t) => {
                    let d = (t - Utc::now()).to_std().unwrap_or(StdDuration::ZERO);
                    tokio::time::sleep(d).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { bail!("the host runtime stopped unexpectedly") };
                batch.push(ev);
                // Take everything already queued: one reconcile for a burst of exits.
                while let Ok(ev) = rx.try_recv() {
                    batch.push(ev);
                }
                let events: Vec<Event> = batch.drain(..).filter_map(to_engine_event).collect();
                run.handle_all(Utc::now(), events);
            }
            _ = sleep => run.handle_timeout(Utc::now()),
            _ = sigint.recv() => interrupt(&mut run, &host, &mut interrupts, &mut view, "SIGINT").await,
            _ = sigterm.recv() => interrupt(&mut run, &host, &mut interrupts, &mut view, "SIGTERM").await,
        }
    }
    persist(store, &uid, &mut run, &mut view)?;
    view.finish(run.status(), run.name());
    let status = run.status().clone();
    match output {
        Some(fmt) => {
            let stored = store
                .get_workflow(&uid)?
                .context("the workflow vanished from the store")?;
            print_workflow(&stored, fmt)?;
        }
        None => {
            if !quiet {
                println!(
                    "Logs: roadie logs {name}   (files in {})",
                    log_dir.display()
                );
            }
        }
    }
    Ok(Some(status.phase))
}

async fn interrupt(
    run: &mut WorkflowRun,
    host: &HostRuntime,
    count: &mut u32,
    view: &mut LiveView,
    what: &str,
) {
    *count += 1;
    if *count == 1 {
        view.note(&format!(
            "{what}: stopping the workflow (again to kill every step at once)"
        ));
        run.stop(
            Utc::now(),
            StopMode::Terminate,
            &format!("terminated by {what}"),
        );
    } else {
        view.note(&format!("{what} again: killing every step now"));
        host.shutdown(StdDuration::ZERO).await;
    }
}

fn to_engine_event(ev: RuntimeEvent) -> Option<Event> {
    Some(match ev {
        RuntimeEvent::Started { key, .. } => Event::StepStarted {
            node: key,
            ip: "127.0.0.1".into(),
        },
        RuntimeEvent::StartFailed { key, message } => Event::StepStartFailed { node: key, message },
        RuntimeEvent::Exited { key, exit } => Event::StepExited {
            node: key,
            exit: StepExit {
                code: exit.code,
                signal: exit.signal,
                stdout: exit.stdout,
                outputs: exit.outputs,
            },
        },
        RuntimeEvent::ProbeResult { key, ok, message } => Event::ProbeResult {
            node: key,
            ok,
            message,
        },
    })
}

fn persist(store: &Store, uid: &str, run: &mut WorkflowRun, view: &mut LiveView) -> Result<()> {
    let (wf_changed, nodes) = run.take_changes();
    if !wf_changed && nodes.is_empty() {
        return Ok(());
    }
    let s = run.status();
    let summary = WorkflowStatusSummary {
        phase: s.phase,
        started_at: s.started_at,
        finished_at: s.finished_at,
        message: s.message.clone(),
        progress: s.progress.clone(),
    };
    store
        .save_progress(uid, &summary, &nodes)
        .context("cannot record progress in the store")?;
    view.changed(&nodes);
    Ok(())
}

fn execute(
    host: &HostRuntime,
    store: &Store,
    uid: &str,
    log_dir: &std::path::Path,
    action: Action,
) -> Result<()> {
    match action {
        Action::StartStep(step) => {
            let log_path = log_dir.join(format!("{}.log", step.node));
            let display = step
                .name
                .rsplit('.')
                .next()
                .unwrap_or(&step.name)
                .to_string();
            store.set_node_log(uid, &step.node, &display, &log_path)?;
            host.start(roadie_runtime::StepLaunch {
                key: step.node,
                argv: step.argv,
                script: step.script,
                env: step.env,
                working_dir: step.working_dir.map(PathBuf::from),
                log_path,
                output_files: step
                    .output_files
                    .into_iter()
                    .map(|(k, v)| (k, PathBuf::from(v)))
                    .collect(),
            });
        }
        Action::Probe {
            node,
            probe,
            host: addr,
        } => {
            let ip: IpAddr = addr.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            host.probe(&node, &probe, ip);
        }
        Action::Signal { node, signal } => host.signal(
            &node,
            match signal {
                StepSignal::Term => Signal::Term,
                StepSignal::Kill => Signal::Kill,
            },
        ),
    }
    Ok(())
}
