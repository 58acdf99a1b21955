//! The query commands: lint, list, get, logs, delete.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use roadie_spec::WorkflowPhase;
use roadie_store::{ListFilter, Profile, Store, StoredWorkflow};

use crate::render::{argo_object, human_duration, print_workflow};
use crate::{EXIT_USAGE, OutputFormat};

pub fn lint(files: &[String]) -> Result<u8> {
    let mut problems = 0;
    let mut unreadable = false;
    for file in files {
        let src = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{file}: error: cannot read: {e}");
                unreadable = true;
                continue;
            }
        };
        for d in crate::lint_file(&src, file) {
            println!("{d}");
            if d.is_error() {
                problems += 1;
            }
        }
    }
    if unreadable {
        return Ok(EXIT_USAGE);
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) found");
        return Ok(1);
    }
    Ok(0)
}

fn open(profile: Option<&str>) -> Result<(Profile, Store)> {
    let profile = Profile::resolve(profile)?;
    profile.ensure_dirs()?;
    let store = roadie_daemon::worker::open_store(&profile)?;
    // A record left "Running" by a roadie that died is settled before anyone reads it.
    if let Err(e) = crate::orphans::mark_dead_runs(&store) {
        eprintln!("warning: could not check for runs of dead roadie processes: {e}");
    }
    Ok((profile, store))
}

/// A workflow by name or uid; `@latest` is the newest.
fn find(store: &Store, name: &str) -> Result<StoredWorkflow> {
    let key = if name == "@latest" {
        let newest = store.list_workflows(&ListFilter {
            limit: Some(1),
            ..Default::default()
        })?;
        newest
            .first()
            .map(|w| w.uid.clone())
            .context("no workflows recorded in this profile yet")?
    } else {
        name.to_string()
    };
    store
        .get_workflow(&key)?
        .with_context(|| format!("workflow '{name}' not found (see `roadie list`)"))
}

pub fn list(
    profile: Option<&str>,
    running: bool,
    completed: bool,
    limit: Option<usize>,
    output: OutputFormat,
) -> Result<u8> {
    let (_, store) = open(profile)?;
    let mut phases = Vec::new();
    if running {
        phases.extend([WorkflowPhase::Pending, WorkflowPhase::Running]);
    }
    if completed {
        phases.extend([
            WorkflowPhase::Succeeded,
            WorkflowPhase::Failed,
            WorkflowPhase::Error,
        ]);
    }
    let rows = store.list_workflows(&ListFilter {
        phases,
        limit,
        ..Default::default()
    })?;
    match output {
        OutputFormat::Json | OutputFormat::Yaml => {
            let mut items = Vec::new();
            for r in &rows {
                if let Some(w) = store.get_workflow(&r.uid)? {
                    items.push(argo_object(&w));
                }
            }
            let list = serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowList", "items": items});
            if output == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", serde_saphyr::to_string(&list)?);
            }
        }
        OutputFormat::Name => {
            for r in &rows {
                println!("{}", r.name);
            }
        }
        OutputFormat::Wide => {
            let mut table = vec![[
                "NAME".to_string(),
                "STATUS".into(),
                "AGE".into(),
                "DURATION".into(),
                "PROGRESS".into(),
                "MESSAGE".into(),
            ]];
            for r in &rows {
                let age = human_duration((Utc::now() - r.created_at).num_seconds());
                let dur = r
                    .started_at
                    .map(|s| {
                        human_duration((r.finished_at.unwrap_or_else(Utc::now) - s).num_seconds())
                    })
                    .unwrap_or_default();
                table.push([
                    r.name.clone(),
                    r.phase.to_string(),
                    age,
                    dur,
                    r.progress.clone().unwrap_or_default(),
                    r.message.clone().unwrap_or_default(),
                ]);
            }
            if rows.is_empty() {
                println!("No workflows recorded yet. Run one with `roadie run FILE`.");
                return Ok(0);
            }
            let mut widths = [0usize; 6];
            for row in &table {
                for (i, c) in row.iter().enumerate() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
            for row in &table {
                let mut line = String::new();
                for (i, c) in row.iter().enumerate() {
                    line.push_str(c);
                    if i < 5 {
                        line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
                    }
                }
                println!("{}", line.trim_end());
            }
        }
    }
    Ok(0)
}

pub fn get(profile: Option<&str>, name: &str, output: OutputFormat) -> Result<u8> {
    let (_, store) = open(profile)?;
    let w = find(&store, name)?;
    print_workflow(&w, output)?;
    Ok(0)
}

pub fn delete(profile: Option<&str>, names: &[String], completed: bool) -> Result<u8> {
    let (profile, store) = open(profile)?;
    let mut targets: Vec<String> = names.to_vec();
    if completed {
        let done = store.list_workflows(&ListFilter {
            phases: vec![
                WorkflowPhase::Succeeded,
                WorkflowPhase::Failed,
                WorkflowPhase::Error,
            ],
            ..Default::default()
        })?;
        targets.extend(done.into_iter().map(|w| w.name));
    }
    if targets.is_empty() {
        eprintln!("error: name a workflow to delete, or pass --completed");
        return Ok(EXIT_USAGE);
    }
    let mut missing = 0;
    for t in &targets {
        let Some(w) = store.get_workflow(t)? else {
            eprintln!("workflow '{t}' not found");
            missing += 1;
            continue;
        };
        if !w.status.phase.is_completed() {
            eprintln!(
                "workflow '{}' is still {}; stop it first",
                w.name, w.status.phase
            );
            missing += 1;
            continue;
        }
        store.delete_workflow(&w.uid)?;
        let dir = profile.workflow_log_dir(&w.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove logs in {}", dir.display()))?;
        }
        println!("Workflow '{}' deleted", w.name);
    }
    Ok(if missing > 0 { 1 } else { 0 })
}

/// Prints step logs. `container` is `main` or the name of an init container or sidecar,
/// whose log sits next to the step's (`roadie_runtime::container_log_path`).
pub fn logs(
    profile: Option<&str>,
    name: &str,
    node: Option<&str>,
    container: &str,
    follow: bool,
) -> Result<u8> {
    let (_, store) = open(profile)?;
    let w = find(&store, name)?;
    let selected = |w: &StoredWorkflow| -> Result<Vec<(String, PathBuf)>> {
        let all = store.node_logs(&w.uid)?;
        Ok(all
            .into_iter()
            .filter(|l| {
                node.is_none_or(|n| {
                    let full = w.status.nodes.get(&l.node_id);
                    l.node_id == n
                        || l.display_name == n
                        || full.is_some_and(|f| f.name == n || f.display_name == n)
                })
            })
            .map(|l| {
                let label = w
                    .status
                    .nodes
                    .get(&l.node_id)
                    .map(|f| f.display_name.clone())
                    .unwrap_or(l.display_name);
                if container == "main" {
                    (label, l.path)
                } else {
                    (
                        format!("{label}/{container}"),
                        roadie_runtime::container_log_path(&l.path, container),
                    )
                }
            })
            .collect())
    };
    let files = selected(&w)?;
    if container != "main" && !follow && !files.iter().any(|(_, p)| p.exists()) {
        eprintln!(
            "no logs of container '{container}' in workflow '{}'{}",
            w.name,
            node.map(|n| format!(" node '{n}'")).unwrap_or_default()
        );
        return Ok(1);
    }
    if files.is_empty() && !follow {
        match node {
            Some(n) => eprintln!("no logs for node '{n}' in workflow '{}'", w.name),
            None => eprintln!("workflow '{}' has no step logs yet", w.name),
        }
        return Ok(1);
    }
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    let mut stdout = std::io::stdout().lock();
    let mut print_new =
        |files: &[(String, PathBuf)], stdout: &mut std::io::StdoutLock<'_>| -> Result<()> {
            for (label, path) in files {
                let Ok(mut f) = std::fs::File::open(path) else {
                    continue;
                };
                let off = offsets.entry(path.clone()).or_insert(0);
                f.seek(SeekFrom::Start(*off))?;
                let mut buf = String::new();
                let n = f.read_to_string(&mut buf)?;
                // Only whole lines; a partial last line waits for its end.
                let complete = match buf.rfind('\n') {
                    Some(i) => i + 1,
                    None => 0,
                };
                let complete = if n > 0 && complete == 0 && !follow {
                    buf.len()
                } else {
                    complete
                };
                for line in buf[..complete].lines() {
                    writeln!(stdout, "{label}: {line}")?;
                }
                *off += complete as u64;
            }
            stdout.flush()?;
            Ok(())
        };
    print_new(&files, &mut stdout)?;
    if !follow {
        return Ok(0);
    }
    // Follow: wake on file-system events in the log directory (inotify), with
    // a slow fallback tick for the workflow's end recorded by another process.
    let log_dir = files
        .first()
        .and_then(|(_, p)| p.parent().map(PathBuf::from));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |res| {
        let _ = tx.send(res);
    })
    .context("cannot watch log files")?;
    if let Some(dir) = &log_dir {
        use notify::Watcher;
        std::fs::create_dir_all(dir).ok();
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .context("cannot watch the log directory")?;
    }
    loop {
        let _ = rx.recv_timeout(Duration::from_secs(1));
        while rx.try_recv().is_ok() {}
        let Some(now) = store.get_workflow(&w.uid)? else {
            break;
        };
        let files = selected(&now)?;
        print_new(&files, &mut stdout)?;
        if now.status.phase.is_completed() {
            break;
        }
    }
    Ok(0)
}
