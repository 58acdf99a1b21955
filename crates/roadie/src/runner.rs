//! `roadie run`: one workflow through the driver loop of `roadie-daemon`,
//! with a live view and Ctrl-C handling.

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result};
use chrono::Utc;
use roadie_daemon::driver::{Driver, Processed};
use roadie_engine::{RunOptions, StopMode, WorkflowRun};
use roadie_spec::{Workflow, WorkflowPhase};
use roadie_store::{NewWorkflow, Profile, Store};
use tokio::signal::unix::{SignalKind, signal};

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
    let (wf, params) = match crate::input::load_workflow(file, parameters, "run") {
        Ok(loaded) => loaded,
        Err(crate::input::BadInput(code)) => return Ok(code),
    };
    let profile = Profile::resolve(profile)?;
    profile.ensure_dirs()?;
    let store = roadie_daemon::worker::open_store(&profile)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let phase = runtime.block_on(drive(&profile, store, wf, params, name, output, quiet))?;
    Ok(match phase {
        Some(WorkflowPhase::Succeeded) => 0,
        Some(_) => 1,
        None => EXIT_USAGE,
    })
}

/// A name from `generateName`: Argo appends 5 random lowercase alphanumerics.
pub fn generated_name(prefix: &str) -> String {
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
    store: Store,
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
    let run = match WorkflowRun::new(
        wf.clone(),
        RunOptions {
            name: Some(name.clone()),
            uid: uid.clone(),
            parameters: params.clone(),
            library: store.template_library()?,
        },
        now,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(None);
        }
    };
    match crate::orphans::mark_dead_runs(&store) {
        Ok(marked) if !marked.is_empty() => {
            eprintln!(
                "note: marked {} run(s) of roadie processes that died as Failed: {}",
                marked.len(),
                marked.join(", ")
            );
            // Their locks went with them: whoever waits for one asks again.
            roadie_daemon::worker::wake_workers(profile);
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not check for runs of dead roadie processes: {e}"),
    }
    let mut manifest = wf;
    manifest.metadata.annotations.insert(
        crate::orphans::DRIVER_ANNOTATION.into(),
        crate::orphans::this_driver(),
    );
    store.create_workflow(&NewWorkflow {
        uid: uid.clone(),
        name: name.clone(),
        namespace: manifest.metadata.namespace.clone(),
        manifest,
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

    let store = Arc::new(store);
    let mut driver =
        Driver::new(profile, store.clone(), usize::MAX).context("cannot start the host runtime")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupts = 0;
    let mut done = show(&mut view, driver.add(&uid, run)?);
    // `roadie stop|terminate|suspend|resume|set NAME` from another shell push a
    // command to the store and touch the wake file, as for daemon workers.
    let (_watcher, mut wake_rx) = roadie_daemon::worker::watch_wakes(profile, &store)?;
    done |= take_commands(&store, &mut driver, &uid, &mut view)?;
    // `roadie run` processes holding a lock this run waits for: when one
    // dies, its run is marked Failed (which gives its locks back).
    let (holder_died, mut holder_deaths) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watched: HashSet<String> = HashSet::new();
    while !done {
        watch_lock_holders(&store, &uid, &mut watched, &holder_died);
        if let Some(run) = driver.run(&uid) {
            view.draw(run.status(), &name);
        }
        let processed = tokio::select! {
            wake = driver.wait() => driver.process(wake?)?,
            Some(()) = wake_rx.recv() => {
                while wake_rx.try_recv().is_ok() {}
                if take_commands(&store, &mut driver, &uid, &mut view)? {
                    break;
                }
                // Another process may have given back a lock this run waits for.
                driver.retry_locks()?
            }
            Some(()) = holder_deaths.recv() => {
                while holder_deaths.try_recv().is_ok() {}
                match crate::orphans::mark_dead_runs(&store) {
                    // The wake file brings this loop (and every other waiter) back.
                    Ok(marked) if !marked.is_empty() => roadie_daemon::worker::wake_workers(profile),
                    Ok(_) => {}
                    Err(e) => view.note(&format!("warning: could not settle a dead run: {e}")),
                }
                Processed::default()
            }
            _ = sigint.recv() => interrupt(&mut driver, &uid, &mut interrupts, &mut view, "SIGINT").await?,
            _ = sigterm.recv() => interrupt(&mut driver, &uid, &mut interrupts, &mut view, "SIGTERM").await?,
        };
        done = show(&mut view, processed);
    }
    let stored = store
        .get_workflow(&uid)?
        .context("the workflow vanished from the store")?;
    view.finish(&stored.status, &name);
    match output {
        Some(fmt) => print_workflow(&stored, fmt)?,
        None => {
            if !quiet {
                println!(
                    "Logs: roadie logs {name}   (files in {})",
                    log_dir.display()
                );
            }
        }
    }
    Ok(Some(stored.status.phase))
}

/// Watches (once each) the `roadie run` processes that hold the locks run
/// `uid` waits for. Holders run by the daemon need nothing: its supervisor
/// hands a dead worker's workflows to another, which keeps their locks.
fn watch_lock_holders(
    store: &Arc<Store>,
    uid: &str,
    watched: &mut HashSet<String>,
    died: &tokio::sync::mpsc::UnboundedSender<()>,
) {
    let Ok(mine) = store.lock_rows(Some(uid), None) else {
        return;
    };
    for row in mine.iter().filter(|r| !r.held) {
        let Ok(holders) = store.lock_rows(None, Some(&row.lock)) else {
            continue;
        };
        for h in holders.iter().filter(|h| h.held && h.workflow_uid != uid) {
            if !watched.insert(h.workflow_uid.clone()) {
                continue;
            }
            let Ok(Some(w)) = store.get_workflow(&h.workflow_uid) else {
                continue;
            };
            let Some(driver) = w
                .manifest
                .metadata
                .annotations
                .get(crate::orphans::DRIVER_ANNOTATION)
            else {
                continue;
            };
            match crate::orphans::driver_exit(driver) {
                crate::orphans::DriverWatch::Alive(exit) => {
                    let died = died.clone();
                    tokio::spawn(async move {
                        exit.await;
                        let _ = died.send(());
                    });
                }
                crate::orphans::DriverWatch::Dead => {
                    let _ = died.send(());
                }
                crate::orphans::DriverWatch::Unknown => {}
            }
        }
    }
}

/// Applies the commands sent to this run; true once the workflow finished.
fn take_commands(
    store: &Store,
    driver: &mut Driver,
    uid: &str,
    view: &mut LiveView,
) -> Result<bool> {
    let mut done = false;
    for cmd in store.take_commands(uid)? {
        if let Some(action) = cmd.get("action").and_then(|a| a.as_str()) {
            view.note(&format!("received `roadie {action}`"));
        }
        let processed = roadie_daemon::worker::apply_command(driver, uid, &cmd)?;
        done |= show(view, processed);
    }
    Ok(done)
}

/// Shows what changed; true once the workflow finished.
fn show(view: &mut LiveView, processed: Processed) -> bool {
    for (_, nodes) in &processed.changed {
        view.changed(nodes);
    }
    !processed.finished.is_empty()
}

async fn interrupt(
    driver: &mut Driver,
    uid: &str,
    count: &mut u32,
    view: &mut LiveView,
    what: &str,
) -> Result<Processed> {
    *count += 1;
    if *count == 1 {
        view.note(&format!(
            "{what}: stopping the workflow (again to kill every step at once)"
        ));
        Ok(driver.stop(uid, StopMode::Terminate, &format!("terminated by {what}"))?)
    } else {
        view.note(&format!("{what} again: killing every step now"));
        driver.kill_all_steps(StdDuration::ZERO).await;
        Ok(Processed::default())
    }
}
