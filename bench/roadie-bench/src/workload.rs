//! The generated workloads: Argo YAML for roadie, and the same process shape
//! done with bare fork/exec for the baseline.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// One benchmark shape. Every step runs `true`, so what is measured is the
/// cost of starting, supervising and recording a step, not the step's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A DAG of `n` independent tasks: all start at once.
    Wide(usize),
    /// A DAG of one root task and `n - 1` tasks that depend on it.
    Rooted(usize),
    /// A steps template with `n` groups of one step: strictly sequential.
    Chain(usize),
}

impl Workload {
    /// Short name used in file names, tables and the `baseline` subcommand.
    pub fn kind(self) -> &'static str {
        match self {
            Workload::Wide(_) => "wide",
            Workload::Rooted(_) => "rooted",
            Workload::Chain(_) => "chain",
        }
    }

    /// Number of `true` processes the workload runs.
    pub fn steps(self) -> usize {
        match self {
            Workload::Wide(n) | Workload::Rooted(n) | Workload::Chain(n) => n,
        }
    }

    /// Human label for the table.
    pub fn label(self) -> String {
        match self {
            Workload::Wide(n) => format!("dag wide {n}"),
            Workload::Rooted(n) => format!("dag root+{}", n.saturating_sub(1)),
            Workload::Chain(n) => format!("steps chain {n}"),
        }
    }

    pub fn parse(kind: &str, n: usize) -> Result<Workload> {
        if n == 0 {
            bail!("a workload needs at least one step");
        }
        Ok(match kind {
            "wide" => Workload::Wide(n),
            "rooted" => Workload::Rooted(n),
            "chain" => Workload::Chain(n),
            other => bail!("unknown workload kind '{other}' (expected wide, rooted or chain)"),
        })
    }

    /// The workflow as Argo YAML. The step template has an image because Argo
    /// requires one; roadie's host runtime ignores it and runs the command.
    pub fn yaml(self) -> String {
        let mut y = String::new();
        let name = format!("bench-{}-{}", self.kind(), self.steps());
        // Writing to a String cannot fail; the results are ignored on purpose.
        let _ = writeln!(y, "apiVersion: argoproj.io/v1alpha1");
        let _ = writeln!(y, "kind: Workflow");
        let _ = writeln!(y, "metadata:\n  name: {name}");
        let _ = writeln!(y, "spec:\n  entrypoint: main\n  templates:");
        let _ = writeln!(y, "  - name: main");
        match self {
            Workload::Wide(n) => {
                let _ = writeln!(y, "    dag:\n      tasks:");
                for i in 0..n {
                    let _ = writeln!(y, "      - name: t{i}\n        template: noop");
                }
            }
            Workload::Rooted(n) => {
                let _ = writeln!(y, "    dag:\n      tasks:");
                let _ = writeln!(y, "      - name: root\n        template: noop");
                for i in 1..n {
                    let _ = writeln!(
                        y,
                        "      - name: t{i}\n        template: noop\n        dependencies: [root]"
                    );
                }
            }
            Workload::Chain(n) => {
                let _ = writeln!(y, "    steps:");
                for i in 0..n {
                    let _ = writeln!(y, "    - - name: s{i}\n        template: noop");
                }
            }
        }
        let _ = writeln!(y, "  - name: noop");
        let _ = writeln!(
            y,
            "    container:\n      image: alpine:3\n      command: [\"true\"]"
        );
        y
    }

    /// The baseline: the same processes with bare `std::process::Command`,
    /// in the same order and parallelism as the workflow (all of a wave
    /// spawned, then all of it waited for). Output goes to /dev/null.
    pub fn run_baseline(self) -> Result<()> {
        match self {
            Workload::Wide(n) => wave(n),
            Workload::Rooted(n) => {
                wave(1)?;
                wave(n - 1)
            }
            Workload::Chain(n) => {
                for _ in 0..n {
                    wave(1)?;
                }
                Ok(())
            }
        }
    }
}

/// Spawn `n` `true` processes, then wait for all of them.
fn wave(n: usize) -> Result<()> {
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        let child = Command::new("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot spawn `true`")?;
        children.push(child);
    }
    for mut c in children {
        let st = c.wait().context("cannot wait for `true`")?;
        if !st.success() {
            bail!("`true` failed: {st}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_workflows_parse_and_lint_clean() {
        for w in [Workload::Wide(5), Workload::Rooted(5), Workload::Chain(5)] {
            let y = w.yaml();
            let diags = roadie_spec::lint(&y, "gen.yaml");
            assert!(diags.iter().all(|d| !d.is_error()), "{w:?}: {diags:?}\n{y}");
            let wf = roadie_spec::parse_workflow(&y, "gen.yaml").expect("parses");
            assert_eq!(wf.spec.templates.len(), 2);
        }
    }

    #[test]
    fn baseline_runs_real_processes() {
        Workload::Rooted(3).run_baseline().expect("baseline runs");
        Workload::Chain(2).run_baseline().expect("baseline runs");
    }
}
