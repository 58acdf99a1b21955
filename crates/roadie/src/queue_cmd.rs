//! Commands that go through the daemon's durable queue: submit, wait, and
//! the commands to running workflows (stop, terminate, suspend, resume),
//! retry and resubmit.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use roadie_daemon::worker::{open_store, wake_workers};
use roadie_engine::WorkflowRun;
use roadie_spec::WorkflowPhase;
use roadie_store::{NewWorkflow, Profile, Store, StoredWorkflow};

use crate::render::{LiveView, print_workflow};
use crate::runner::generated_name;
use crate::{EXIT_USAGE, OutputFormat};

fn open(profile: Option<&str>) -> Result<(Profile, Store)> {
    let profile = Profile::resolve(profile)?;
    profile.ensure_dirs()?;
    let store = open_store(&profile)?;
    Ok((profile, store))
}

fn daemon_running(profile: &Profile) -> bool {
    roadie_daemon::DaemonClient::new(profile.clone()).is_running()
}

#[allow(clippy::too_many_arguments)]
pub fn submit(
    profile: Option<&str>,
    file: &str,
    parameters: &[String],
    name: Option<String>,
    watch: bool,
    wait: bool,
    output: Option<OutputFormat>,
) -> Result<u8> {
    let (wf, params) = match crate::input::load_workflow(file, parameters, "submitted") {
        Ok((wf, params)) => (wf, params.into_iter().collect::<BTreeMap<_, _>>()),
        Err(crate::input::BadInput(code)) => return Ok(code),
    };
    // With generateName, a name already taken is drawn again (5 random
    // characters collide about once in 5,000 submissions).
    let generate_prefix = match name.is_none() && wf.metadata.name.is_none() {
        true => wf.metadata.generate_name.clone(),
        false => None,
    };
    let mut name = match name.or_else(|| wf.metadata.name.clone()) {
        Some(n) => n,
        None => match wf.metadata.generate_name.as_deref() {
            Some(prefix) => generated_name(prefix),
            None => {
                eprintln!(
                    "error: the workflow has neither metadata.name nor metadata.generateName; pass --name"
                );
                return Ok(EXIT_USAGE);
            }
        },
    };
    // Validate now (entrypoint, parameters), so a bad submission fails here, not in a worker.
    let uid = uuid::Uuid::new_v4().to_string();
    let (profile, store) = open(profile)?;
    let check = roadie_engine::RunOptions {
        name: Some(name.clone()),
        uid: uid.clone(),
        parameters: params.clone().into_iter().collect(),
        library: store.template_library()?,
    };
    if let Err(e) = WorkflowRun::new(wf.clone(), check, Utc::now()) {
        eprintln!("error: {e}");
        return Ok(EXIT_USAGE);
    }
    let mut record = NewWorkflow {
        uid: uid.clone(),
        name: name.clone(),
        namespace: wf.metadata.namespace.clone(),
        manifest: wf,
        parameters: params,
        created_at: Utc::now(),
    };
    let mut draws = 0;
    loop {
        match store.submit_workflow(&record) {
            Ok(()) => break,
            Err(roadie_store::StoreError::AlreadyExists { .. })
                if generate_prefix.is_some() && draws < 10 =>
            {
                draws += 1;
                name = generated_name(generate_prefix.as_deref().unwrap_or_default());
                record.name = name.clone();
            }
            Err(e) => return Err(e.into()),
        }
    }
    wake_workers(&profile);
    if !daemon_running(&profile) {
        eprintln!(
            "note: the daemon of profile '{}' is not running; {name} is queued and runs once it starts (`roadie daemon start`)",
            profile.name
        );
    }
    match output {
        Some(OutputFormat::Name) | None if !watch && !wait => println!("{name}"),
        _ => {}
    }
    if watch || wait {
        let phase = wait_for(&profile, &store, &uid, watch)?;
        if let Some(fmt) = output {
            let w = store
                .get_workflow(&uid)?
                .context("the workflow vanished from the store")?;
            print_workflow(&w, fmt)?;
        }
        return Ok(exit_code(phase));
    }
    if let Some(fmt) = output.filter(|f| *f != OutputFormat::Name) {
        let w = store
            .get_workflow(&uid)?
            .context("the workflow vanished from the store")?;
        print_workflow(&w, fmt)?;
    }
    Ok(0)
}

fn exit_code(phase: WorkflowPhase) -> u8 {
    if phase == WorkflowPhase::Succeeded {
        0
    } else {
        1
    }
}

/// Waits for a workflow to finish, waking on writes to the profile's files
/// (the SQLite store lives there) and, for a shared PostgreSQL store, on a
/// one-second tick.
fn wait_for(profile: &Profile, store: &Store, uid: &str, watch: bool) -> Result<WorkflowPhase> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })
    .context("cannot watch the store")?;
    {
        use notify::Watcher;
        watcher
            .watch(&profile.dir, notify::RecursiveMode::NonRecursive)
            .context("cannot watch the profile directory")?;
    }
    let mut view = LiveView::new(std::io::IsTerminal::is_terminal(&std::io::stdout()), !watch);
    let mut seen: std::collections::HashMap<String, roadie_spec::NodeStatus> =
        std::collections::HashMap::new();
    loop {
        let w = store
            .get_workflow(uid)?
            .context("the workflow was deleted while waiting for it")?;
        if watch {
            let changed: Vec<roadie_spec::NodeStatus> = w
                .status
                .nodes
                .values()
                .filter(|n| seen.get(&n.id) != Some(*n))
                .cloned()
                .collect();
            for n in &changed {
                seen.insert(n.id.clone(), n.clone());
            }
            view.changed(&changed);
            view.draw(&w.status, &w.name);
        }
        if w.status.phase.is_completed() {
            if watch {
                view.finish(&w.status, &w.name);
            }
            return Ok(w.status.phase);
        }
        let _ = rx.recv_timeout(Duration::from_secs(1));
        while rx.try_recv().is_ok() {}
    }
}

fn find(store: &Store, name: &str) -> Result<StoredWorkflow> {
    store
        .get_workflow(name)?
        .with_context(|| format!("workflow '{name}' not found (see `roadie list`)"))
}

pub fn wait(profile: Option<&str>, names: &[String]) -> Result<u8> {
    let (profile, store) = open(profile)?;
    let mut code = 0;
    for name in names {
        let w = find(&store, name)?;
        let phase = wait_for(&profile, &store, &w.uid, false)?;
        println!("{}: {phase}", w.name);
        code = code.max(exit_code(phase));
    }
    Ok(code)
}

/// stop, terminate, suspend, resume: a command the owning worker carries out.
pub fn command(
    profile: Option<&str>,
    names: &[String],
    action: &str,
    node: Option<&str>,
) -> Result<u8> {
    let (profile, store) = open(profile)?;
    for name in names {
        let w = find(&store, name)?;
        if w.status.phase.is_completed() {
            bail!("workflow '{}' already {}", w.name, w.status.phase);
        }
        let mut cmd = serde_json::json!({ "action": action });
        if let Some(n) = node {
            cmd["node"] = n.into();
        }
        store.push_command(&w.uid, &cmd)?;
        println!("workflow {} {}", w.name, past(action));
    }
    wake_workers(&profile);
    note_if_undriven(&profile, &store, names);
    Ok(0)
}

/// Says when nothing will act on a command soon: the workflows are not run by
/// a `roadie run` process (which takes commands itself) and no daemon runs.
fn note_if_undriven(profile: &Profile, store: &Store, names: &[String]) {
    let by_run = names.iter().all(|n| {
        store.get_workflow(n).ok().flatten().is_some_and(|w| {
            w.manifest
                .metadata
                .annotations
                .contains_key(crate::orphans::DRIVER_ANNOTATION)
        })
    });
    if !by_run && !daemon_running(profile) {
        eprintln!(
            "note: the daemon is not running; the command takes effect when a worker picks the workflow up"
        );
    }
}

/// `roadie set` (Argo's `argo node set`): output parameters of a waiting
/// suspend node, declared with `valueFrom.supplied`. `node` is a display
/// name, node name or ID, or Argo's `displayName=X` / `name=X` / `id=X`
/// field selector.
pub fn set(profile: Option<&str>, name: &str, node: &str, outputs: &[String]) -> Result<u8> {
    let node = ["displayName=", "name=", "id="]
        .iter()
        .find_map(|k| node.strip_prefix(k))
        .unwrap_or(node);
    let mut params = serde_json::Map::new();
    for p in outputs {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k.to_string(), v.into());
            }
            _ => {
                eprintln!("error: --output-parameter expects NAME=VALUE, got '{p}'");
                return Ok(EXIT_USAGE);
            }
        }
    }
    let (profile, store) = open(profile)?;
    let w = find(&store, name)?;
    if w.status.phase.is_completed() {
        bail!("workflow '{}' already {}", w.name, w.status.phase);
    }
    // The node may not exist yet (the workflow has not reached it); the
    // engine checks again when it applies the command.
    if let Some(n) = w
        .status
        .nodes
        .values()
        .find(|n| n.id == node || n.name == node || n.display_name == node)
    {
        if n.node_type != roadie_spec::NodeType::Suspend {
            bail!(
                "node '{node}' of workflow '{}' is not a suspend node",
                w.name
            );
        }
        if n.phase.is_completed() {
            bail!(
                "node '{node}' of workflow '{}' is already {}",
                w.name,
                n.phase
            );
        }
    }
    let cmd = serde_json::json!({"action": "set", "node": node, "parameters": params});
    store.push_command(&w.uid, &cmd)?;
    println!(
        "workflow {} node {node}: set {}",
        w.name,
        params.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    wake_workers(&profile);
    note_if_undriven(&profile, &store, std::slice::from_ref(&w.name));
    Ok(0)
}

fn past(action: &str) -> &'static str {
    match action {
        "stop" => "stopping (exit handlers run)",
        "terminate" => "terminating",
        "suspend" => "suspended",
        "resume" => "resumed",
        _ => "updated",
    }
}

/// Re-runs the failed steps of a finished workflow (and the daemons they need).
pub fn retry(profile: Option<&str>, names: &[String]) -> Result<u8> {
    let (profile, store) = open(profile)?;
    for name in names {
        let w = find(&store, name)?;
        match w.status.phase {
            WorkflowPhase::Failed | WorkflowPhase::Error => {}
            other => bail!(
                "workflow '{}' is {other}: only Failed or Error workflows can be retried",
                w.name
            ),
        }
        let status = WorkflowRun::retry_status(&w.status);
        store.replace_status(&w.uid, &status)?;
        store.enqueue_workflow(&w.uid)?;
        println!("workflow {} queued for retry", w.name);
    }
    wake_workers(&profile);
    if !daemon_running(&profile) {
        eprintln!("note: the daemon is not running; retried workflows run once it starts");
    }
    Ok(0)
}

/// Submits a finished workflow again, as a new workflow.
pub fn resubmit(profile: Option<&str>, names: &[String]) -> Result<u8> {
    let (profile, store) = open(profile)?;
    for name in names {
        let w = find(&store, name)?;
        let prefix = w
            .manifest
            .metadata
            .generate_name
            .clone()
            .unwrap_or_else(|| format!("{}-", w.name));
        let new_name = generated_name(&prefix);
        store.submit_workflow(&NewWorkflow {
            uid: uuid::Uuid::new_v4().to_string(),
            name: new_name.clone(),
            namespace: w.namespace.clone(),
            manifest: w.manifest.clone(),
            parameters: w.parameters.clone(),
            created_at: Utc::now(),
        })?;
        println!("{new_name}");
    }
    wake_workers(&profile);
    Ok(0)
}
