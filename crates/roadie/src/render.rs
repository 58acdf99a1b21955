//! What people see: the node tree (`roadie get`, the live view of
//! `roadie run`), tables, and Argo-shaped JSON/YAML.

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use chrono::Utc;
use roadie_spec::{NodePhase, NodeStatus, NodeType, WorkflowStatus};
use roadie_store::StoredWorkflow;

use crate::OutputFormat;

pub fn phase_symbol(p: NodePhase) -> &'static str {
    match p {
        NodePhase::Pending => "◷",
        NodePhase::Running => "●",
        NodePhase::Succeeded => "✔",
        NodePhase::Skipped => "○",
        NodePhase::Omitted => "○",
        NodePhase::Failed => "✖",
        NodePhase::Error => "⚠",
    }
}

pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m", secs / 3600, (secs % 3600) / 60)
    }
}

fn node_duration(n: &NodeStatus) -> String {
    match n.started_at {
        Some(s) => human_duration((n.finished_at.unwrap_or_else(Utc::now) - s).num_seconds()),
        None => String::new(),
    }
}

/// The node tree as `argo get` draws it: step groups folded into their
/// children, retries shown as parents of their attempts.
pub fn tree_lines(status: &WorkflowStatus, root: &str) -> Vec<String> {
    let mut rows: Vec<[String; 5]> = Vec::new();
    fn walk(
        status: &WorkflowStatus,
        id: &str,
        prefix: &str,
        last: bool,
        depth: usize,
        rows: &mut Vec<[String; 5]>,
    ) {
        let Some(n) = status.nodes.get(id) else {
            return;
        };
        // Step groups carry no information of their own: show their children in place.
        let kids: Vec<&String> = n.children.iter().collect();
        let (branch, child_prefix) = if depth == 0 {
            (String::new(), String::new())
        } else if last {
            (format!("{prefix}└─"), format!("{prefix}  "))
        } else {
            (format!("{prefix}├─"), format!("{prefix}│ "))
        };
        if n.node_type == NodeType::StepGroup {
            for (i, k) in kids.iter().enumerate() {
                let is_last = last && i + 1 == kids.len();
                walk(status, k, prefix, is_last, depth, rows);
            }
            return;
        }
        let mut message = n.message.clone().unwrap_or_default();
        if n.daemoned == Some(true) {
            let ip = n.pod_ip.clone().unwrap_or_default();
            message = if message.is_empty() {
                format!("daemoned at {ip}")
            } else {
                format!("daemoned at {ip}; {message}")
            };
        }
        if let Some(memo) = n.memoization_status.as_ref().filter(|m| m.hit) {
            let from = format!("outputs from cache {}, key {}", memo.cache_name, memo.key);
            message = if message.is_empty() {
                from
            } else {
                format!("{from}; {message}")
            };
        }
        let pod = if n.node_type == NodeType::Pod
            && n.memoization_status.as_ref().is_none_or(|m| !m.hit)
        {
            n.id.clone()
        } else {
            String::new()
        };
        rows.push([
            format!("{branch}{} {}", phase_symbol(n.phase), n.display_name),
            n.template_name.clone().unwrap_or_default(),
            pod,
            node_duration(n),
            message,
        ]);
        // Flatten step groups so steps of a group are siblings.
        let mut flat: Vec<&String> = Vec::new();
        for k in &kids {
            match status.nodes.get(*k) {
                Some(c) if c.node_type == NodeType::StepGroup => flat.extend(c.children.iter()),
                _ => flat.push(k),
            }
        }
        for (i, k) in flat.iter().enumerate() {
            walk(
                status,
                k,
                &child_prefix,
                i + 1 == flat.len(),
                depth + 1,
                rows,
            );
        }
    }
    walk(status, root, "", true, 0, &mut rows);
    // Exit handler nodes are not children of the root.
    let exit_id = status
        .nodes
        .values()
        .find(|n| n.name == format!("{root}.onExit"))
        .map(|n| n.id.clone());
    if let Some(e) = exit_id {
        walk(status, &e, "", true, 0, &mut rows);
    }
    let headers = ["STEP", "TEMPLATE", "PODNAME", "DURATION", "MESSAGE"];
    let mut widths = headers.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fmt_row = |r: &[String; 5]| {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![fmt_row(&headers.map(String::from))];
    out.extend(rows.iter().map(fmt_row));
    out
}

pub fn summary_lines(name: &str, status: &WorkflowStatus) -> Vec<String> {
    let mut out = vec![
        format!("Name:      {name}"),
        format!("Status:    {}", status.phase),
    ];
    if let Some(m) = &status.message {
        out.push(format!("Message:   {m}"));
    }
    if let Some(s) = status.started_at {
        out.push(format!(
            "Started:   {}",
            s.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %Z")
        ));
        let end = status.finished_at.unwrap_or_else(Utc::now);
        out.push(format!(
            "Duration:  {}",
            human_duration((end - s).num_seconds())
        ));
    }
    if let Some(p) = &status.progress {
        out.push(format!("Progress:  {p}"));
    }
    out.extend(synchronization_lines(status));
    out
}

/// The locks the workflow holds and those it waits for, with who holds them
/// (`status.synchronization`, filled by the store from its lock table).
fn synchronization_lines(status: &WorkflowStatus) -> Vec<String> {
    let Some(sync) = &status.synchronization else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let holders = |h: &str| {
        if h.is_empty() {
            "nobody".to_string()
        } else {
            h.to_string()
        }
    };
    if let Some(m) = &sync.mutex {
        for h in &m.holding {
            out.push(format!("Holding:   {} (by {})", h.mutex, h.holder));
        }
        for h in &m.waiting {
            out.push(format!(
                "Waiting:   {} (held by {})",
                h.mutex,
                holders(&h.holder)
            ));
        }
    }
    if let Some(s) = &sync.semaphore {
        for h in &s.holding {
            out.push(format!(
                "Holding:   {} (by {})",
                h.semaphore,
                h.holders.join(", ")
            ));
        }
        for h in &s.waiting {
            out.push(format!(
                "Waiting:   {} (held by {})",
                h.semaphore,
                holders(&h.holders.join(", "))
            ));
        }
    }
    out
}

/// The live display of `roadie run`: a redrawn tree on a terminal, one line
/// per node phase change otherwise.
pub struct LiveView {
    interactive: bool,
    silent: bool,
    drawn_lines: usize,
    last_draw: Option<Instant>,
    last_phase: HashMap<String, NodePhase>,
    plain_lines: Vec<String>,
}

impl LiveView {
    pub fn new(interactive: bool, silent: bool) -> LiveView {
        LiveView {
            interactive,
            silent,
            drawn_lines: 0,
            last_draw: None,
            last_phase: HashMap::new(),
            plain_lines: Vec::new(),
        }
    }

    pub fn note(&mut self, line: &str) {
        if self.silent {
            eprintln!("{line}");
            return;
        }
        self.clear();
        println!("{line}");
    }

    fn clear(&mut self) {
        if self.interactive && self.drawn_lines > 0 {
            print!("\x1b[{}A\x1b[J", self.drawn_lines);
            self.drawn_lines = 0;
        }
    }

    /// Nodes whose state changed: in plain mode, one line per phase change.
    pub fn changed(&mut self, nodes: &[NodeStatus]) {
        for n in nodes {
            if self.last_phase.get(&n.id) == Some(&n.phase) && n.daemoned != Some(true) {
                continue;
            }
            let was = self.last_phase.insert(n.id.clone(), n.phase);
            if self.silent || self.interactive || n.node_type == NodeType::StepGroup {
                continue;
            }
            if was == Some(n.phase) {
                // Same phase, newly daemoned.
                if n.daemoned == Some(true) && !self.plain_lines.contains(&n.id) {
                    self.plain_lines.push(n.id.clone());
                    println!(
                        "{} {} {} daemoned at {}",
                        Utc::now().format("%H:%M:%S"),
                        phase_symbol(n.phase),
                        n.name,
                        n.pod_ip.clone().unwrap_or_default()
                    );
                }
                continue;
            }
            let msg = n
                .message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            println!(
                "{} {} {} {}{msg}",
                Utc::now().format("%H:%M:%S"),
                phase_symbol(n.phase),
                n.name,
                n.phase
            );
        }
    }

    /// Redraw the tree (at most ten times a second on a terminal).
    pub fn draw(&mut self, status: &WorkflowStatus, name: &str) {
        if !self.interactive || self.silent {
            return;
        }
        if self
            .last_draw
            .is_some_and(|t| t.elapsed().as_millis() < 100)
            && !status.phase.is_completed()
        {
            return;
        }
        self.redraw(status, name);
    }

    fn redraw(&mut self, status: &WorkflowStatus, name: &str) {
        self.last_draw = Some(Instant::now());
        let mut lines = summary_lines(name, status);
        lines.push(String::new());
        lines.extend(tree_lines(status, name));
        self.clear();
        let mut out = std::io::stdout().lock();
        for l in &lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
        self.drawn_lines = lines.len();
    }

    pub fn finish(&mut self, status: &WorkflowStatus, name: &str) {
        if self.silent {
            return;
        }
        if self.interactive {
            self.redraw(status, name);
            return;
        }
        println!();
        for l in summary_lines(name, status) {
            println!("{l}");
        }
        println!();
        for l in tree_lines(status, name) {
            println!("{l}");
        }
    }
}

/// The workflow as Argo's API returns it.
pub fn argo_object(w: &StoredWorkflow) -> serde_json::Value {
    let mut metadata =
        serde_json::to_value(&w.manifest.metadata).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.insert("name".into(), w.name.clone().into());
        m.insert("uid".into(), w.uid.clone().into());
        m.insert(
            "namespace".into(),
            w.namespace
                .clone()
                .unwrap_or_else(|| "default".into())
                .into(),
        );
        m.insert(
            "creationTimestamp".into(),
            w.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into(),
        );
        let phase_label = w.status.phase.as_str();
        let labels = m.entry("labels").or_insert_with(|| serde_json::json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("workflows.argoproj.io/phase".into(), phase_label.into());
            l.insert(
                "workflows.argoproj.io/completed".into(),
                w.status.phase.is_completed().to_string().into(),
            );
        }
    }
    let mut spec = serde_json::to_value(&w.manifest.spec).unwrap_or_else(|_| serde_json::json!({}));
    if !w.parameters.is_empty()
        && let Some(params) = spec
            .pointer_mut("/arguments/parameters")
            .and_then(|p| p.as_array_mut())
    {
        for p in params.iter_mut() {
            let name = p.get("name").and_then(|n| n.as_str()).map(str::to_string);
            if let Some(v) = name.and_then(|n| w.parameters.get(&n)) {
                p["value"] = v.clone().into();
            }
        }
    }
    serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": spec,
        "status": w.status,
    })
}

pub fn print_workflow(w: &StoredWorkflow, fmt: OutputFormat) -> Result<()> {
    match fmt {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&argo_object(w))?),
        OutputFormat::Yaml => print!("{}", serde_saphyr::to_string(&argo_object(w))?),
        OutputFormat::Name => println!("{}", w.name),
        OutputFormat::Wide => {
            for l in summary_lines(&w.name, &w.status) {
                println!("{l}");
            }
            println!();
            for l in tree_lines(&w.status, &w.name) {
                println!("{l}");
            }
        }
    }
    Ok(())
}
