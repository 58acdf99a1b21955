//! `roadie-bench`: how much roadie costs per step, next to bare fork/exec.
//!
//! It generates wide DAGs and a sequential steps chain of `true`, runs each
//! with `roadie run --quiet` (fresh `ROADIE_HOME` per run) and with a bare
//! `std::process::Command` baseline of the same shape, and prints medians,
//! steps/s, overhead per step and peak RSS beside the project's targets. A
//! second part drives the pure engine with synthetic events to show the
//! engine's own cost apart from processes and SQLite.
//!
//! It prints figures and asserts nothing about time: the machine is shared
//! and noisy. Run it through `bench/run.sh`, which builds the release binaries.

mod daemon;
mod engine;
mod measure;
mod spawn;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::engine::{Feed, run_engine};
use crate::measure::{Sample, measure, median};
use crate::workload::Workload;

/// The project's targets, printed beside the figures.
const TARGET_OVERHEAD_MS: f64 = 2.0;
const TARGET_STEPS_PER_S: f64 = 400.0;

const USAGE: &str = "\
usage: roadie-bench [OPTIONS]            run every benchmark and print the tables
       roadie-bench engine [OPTIONS]     only the pure-engine microbenchmark
       roadie-bench spawn [OPTIONS]      only the posix_spawn vs fork comparison
       roadie-bench daemon [OPTIONS]     daemon throughput (see `roadie-bench daemon --help`)
       roadie-bench engine-one KIND N FEED   one engine run (KIND wide|rooted|chain,
                                         FEED per-event|batched), for profilers
       roadie-bench gen DIR              write the generated workflows to DIR
       roadie-bench baseline KIND N      (internal) the bare fork/exec baseline of a workload

options:
  --roadie PATH   roadie binary (default: `roadie` next to this binary)
  --reps N        repetitions per measurement, median reported (default 3)
  --wide N        tasks in the wide DAGs (default 1000)
  --chain N       steps in the sequential chain (default 200)
  --keep DIR      keep generated workflows, ROADIE_HOMEs and logs in DIR";

struct Options {
    roadie: Option<PathBuf>,
    reps: usize,
    wide: usize,
    chain: usize,
    keep: Option<PathBuf>,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roadie-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("baseline") => {
            let [_, kind, n] = args.as_slice() else {
                bail!("baseline expects KIND N\n{USAGE}");
            };
            let n: usize = n
                .parse()
                .with_context(|| format!("N must be a number, got '{n}'"))?;
            Workload::parse(kind, n)?.run_baseline()
        }
        Some("gen") => {
            let [_, dir] = args.as_slice() else {
                bail!("gen expects DIR\n{USAGE}");
            };
            let opts = parse_options(&[])?;
            for w in workloads(&opts) {
                let p = write_workflow(Path::new(dir), w)?;
                println!("{}", p.display());
            }
            Ok(())
        }
        Some("engine") => {
            let opts = parse_options(&args[1..])?;
            engine_tables(&opts)
        }
        Some("engine-one") => {
            let [_, kind, n, feed] = args.as_slice() else {
                bail!("engine-one expects KIND N FEED\n{USAGE}");
            };
            let n: usize = n
                .parse()
                .with_context(|| format!("N must be a number, got '{n}'"))?;
            let feed = match feed.as_str() {
                "per-event" => Feed::PerEvent,
                "batched" => Feed::Batched,
                other => bail!("FEED must be per-event or batched, got '{other}'"),
            };
            let t = run_engine(Workload::parse(kind, n)?, feed)?;
            println!(
                "{} steps, {} calls: new {:.2} ms, events {:.2} ms, {:.1} µs/step, {} changed nodes with {} children entries",
                t.steps,
                t.handle_calls,
                ms(t.new),
                ms(t.events),
                t.us_per_step(),
                t.changed_nodes,
                t.changed_children,
            );
            Ok(())
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("daemon") => daemon::run(&args[1..]),
        Some("spawn") => {
            let opts = parse_options(&args[1..])?;
            spawn_table(&opts)
        }
        _ => {
            let opts = parse_options(&args)?;
            process_table(&opts)?;
            println!();
            spawn_table(&opts)?;
            println!();
            engine_tables(&opts)
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        roadie: None,
        reps: 3,
        wide: 1000,
        chain: 200,
        keep: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{a} expects a value\n{USAGE}"))
        };
        let number = |v: &String| -> Result<usize> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{a} expects a positive number, got '{v}'"),
            }
        };
        match a.as_str() {
            "--roadie" => o.roadie = Some(PathBuf::from(value()?)),
            "--reps" => o.reps = number(value()?)?,
            "--wide" => o.wide = number(value()?)?,
            "--chain" => o.chain = number(value()?)?,
            "--keep" => o.keep = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    Ok(o)
}

/// The workloads of the process table: a one-step run shows roadie's fixed
/// cost (start, SQLite open, runtime setup) that the others amortise.
fn workloads(o: &Options) -> Vec<Workload> {
    vec![
        Workload::Chain(1),
        Workload::Wide(o.wide),
        Workload::Rooted(o.wide),
        Workload::Chain(o.chain),
    ]
}

fn write_workflow(dir: &Path, w: Workload) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let p = dir.join(format!("{}-{}.yaml", w.kind(), w.steps()));
    std::fs::write(&p, w.yaml()).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

fn roadie_path(o: &Options) -> Result<PathBuf> {
    let p = match &o.roadie {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's path")?
            .with_file_name("roadie"),
    };
    if !p.is_file() {
        bail!(
            "no roadie binary at {} (build it with `cargo build --release -p roadie`, or pass --roadie)",
            p.display()
        );
    }
    Ok(p)
}

struct Row {
    workload: Workload,
    roadie: Vec<Sample>,
    baseline: Vec<Sample>,
}

fn process_table(o: &Options) -> Result<()> {
    let roadie = roadie_path(o)?;
    let me = std::env::current_exe().context("cannot find this binary's path")?;
    let tmp;
    let root = match &o.keep {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("roadie-bench-")
                .tempdir()
                .context("cannot create a temp dir")?;
            tmp.path().to_path_buf()
        }
    };
    println!("roadie process benchmark");
    let built = std::fs::metadata(&roadie)
        .and_then(|m| m.modified())
        .map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".into());
    println!("  roadie:  {} (built {built})", roadie.display());
    println!("  work in: {}", root.display());
    println!("  cores:   {}", cores());
    println!(
        "  {} repetitions per figure, median shown; baseline = bare std::process::Command of the same shape",
        o.reps
    );
    let mut rows = Vec::new();
    for w in workloads(o) {
        let file = write_workflow(&root.join("workflows"), w)?;
        let mut row = Row {
            workload: w,
            roadie: vec![],
            baseline: vec![],
        };
        // Interleaved, so drift in machine load hits both sides alike.
        for rep in 0..o.reps {
            let tag = format!("{}-{}-{rep}", w.kind(), w.steps());
            let b = measure(
                Command::new(&me).args(["baseline", w.kind(), &w.steps().to_string()]),
                &root.join(format!("baseline-{tag}.log")),
                false,
            )?;
            let home = root.join(format!("home-{tag}"));
            std::fs::create_dir_all(&home)
                .with_context(|| format!("cannot create {}", home.display()))?;
            let r = measure(
                Command::new(&roadie)
                    .arg("run")
                    .arg(&file)
                    .arg("--quiet")
                    .env("ROADIE_HOME", &home)
                    .env_remove("ROADIE_PROFILE"),
                &root.join(format!("roadie-{tag}.log")),
                true,
            )
            .with_context(|| format!("roadie run {} failed", file.display()))?;
            eprintln!(
                "  {:<18} rep {}: roadie {:>8.3} s  baseline {:>8.3} s",
                w.label(),
                rep + 1,
                r.wall.as_secs_f64(),
                b.wall.as_secs_f64()
            );
            row.roadie.push(r);
            row.baseline.push(b);
        }
        rows.push(row);
    }
    println!();
    println!(
        "{:<18} {:>6} {:>10} {:>10} {:>9} {:>12} {:>12} {:>9}  vs target",
        "workload", "steps", "roadie s", "bare s", "steps/s", "overhead", "cpu over", "peak RSS"
    );
    println!(
        "{:<18} {:>6} {:>10} {:>10} {:>9} {:>12} {:>12} {:>9}  (≤ {TARGET_OVERHEAD_MS} ms/step, ≥ {TARGET_STEPS_PER_S} steps/s)",
        "", "", "(median)", "(median)", "", "ms/step", "ms/step", "MiB"
    );
    for row in &rows {
        let (Some(r), Some(b)) = (median(&row.roadie), median(&row.baseline)) else {
            continue;
        };
        let steps = row.workload.steps() as f64;
        let rate = steps / r.wall.as_secs_f64();
        let over = ms(r.wall.saturating_sub(b.wall)) / steps;
        let cpu_over = (ms(r.cpu) - ms(b.cpu)) / steps;
        let rss = row.roadie.iter().map(|s| s.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let verdict = if row.workload.steps() == 1 {
            "(fixed cost)".to_string()
        } else {
            format!(
                "overhead {} , rate {}",
                if over <= TARGET_OVERHEAD_MS {
                    "ok"
                } else {
                    "OVER"
                },
                if rate >= TARGET_STEPS_PER_S {
                    "ok"
                } else {
                    "UNDER"
                }
            )
        };
        println!(
            "{:<18} {:>6} {:>10.3} {:>10.3} {:>9.0} {:>12.3} {:>12.3} {:>9.1}  {verdict}",
            row.workload.label(),
            row.workload.steps(),
            r.wall.as_secs_f64(),
            b.wall.as_secs_f64(),
            rate,
            over,
            cpu_over,
            rss,
        );
    }
    println!(
        "overhead = (roadie - bare) / steps, wall clock; cpu over = (roadie user+sys - bare user+sys) / steps,\n\
         children included on both sides; peak RSS = max over repetitions of roadie's ru_maxrss (wait4)."
    );
    println!();
    println!(
        "where roadie's CPU goes (median run; threads polled from /proc, children = the steps' processes):"
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "workload", "main", "spawner", "tokio", "other", "children", "main ms/step"
    );
    for row in &rows {
        let Some(r) = median(&row.roadie) else {
            continue;
        };
        let get = |name: &str| r.threads.get(name).copied().unwrap_or_default();
        let main = get("roadie");
        let spawner = get("roadie-spawner");
        let tokio: Duration = r
            .threads
            .iter()
            .filter(|(k, _)| k.starts_with("tokio"))
            .map(|(_, v)| *v)
            .sum();
        let all: Duration = r.threads.values().sum();
        let other = all.saturating_sub(main + spawner + tokio);
        let children = r.cpu.saturating_sub(all);
        println!(
            "{:<18} {:>9.3}s {:>9.3}s {:>9.3}s {:>9.3}s {:>9.3}s {:>12.3}",
            row.workload.label(),
            main.as_secs_f64(),
            spawner.as_secs_f64(),
            tokio.as_secs_f64(),
            other.as_secs_f64(),
            children.as_secs_f64(),
            ms(main) / row.workload.steps() as f64,
        );
    }
    println!(
        "main = the driver thread (engine, SQLite, live view); spawner = fork of every step; tokio = pidfd\n\
         waits, pipes, log files; children = roadie's CPU (wait4, children included) minus its threads."
    );
    Ok(())
}

fn engine_tables(o: &Options) -> Result<()> {
    println!(
        "pure engine (WorkflowRun with synthetic StepStarted/StepExited, no process, no store), median of {}",
        o.reps
    );
    println!(
        "{:<18} {:>6} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "workload",
        "steps",
        "feed",
        "calls",
        "parse ms",
        "new ms",
        "events ms",
        "µs/step",
        "saved/step"
    );
    let base = [
        Workload::Wide(o.wide),
        Workload::Rooted(o.wide),
        Workload::Chain(o.chain),
    ];
    let scaling = [
        Workload::Wide(o.wide / 4),
        Workload::Wide(o.wide / 2),
        Workload::Wide(o.wide * 2),
        Workload::Chain(o.chain / 4),
        Workload::Chain(o.chain / 2),
        Workload::Chain(o.chain * 2),
    ];
    for (i, w) in base.iter().chain(scaling.iter()).enumerate() {
        if i == base.len() {
            println!("scaling (does the cost per step grow with the size?):");
        }
        if w.steps() == 0 {
            continue;
        }
        for feed in [Feed::PerEvent, Feed::Batched] {
            let mut runs = Vec::new();
            for _ in 0..o.reps {
                runs.push(run_engine(*w, feed)?);
            }
            runs.sort_by(|a, b| a.us_per_step().total_cmp(&b.us_per_step()));
            let Some(t) = runs.get(runs.len() / 2) else {
                continue;
            };
            println!(
                "{:<18} {:>6} {:>10} {:>8} {:>10.2} {:>10.2} {:>10.2} {:>10.1} {:>5.1}/{:<6.0}",
                w.label(),
                t.steps,
                feed.label(),
                t.handle_calls,
                ms(t.parse),
                ms(t.new),
                ms(t.events),
                t.us_per_step(),
                t.changed_nodes as f64 / t.steps as f64,
                t.changed_children as f64 / t.steps as f64,
            );
        }
    }
    println!(
        "µs/step = (WorkflowRun::new + every handle/handle_all + poll_action + take_changes) / steps; parse not included.\n\
         saved/step = nodes / children-list entries that take_changes hands the driver to persist, per step."
    );
    Ok(())
}

/// posix_spawn against fork (what a `pre_exec` hook forces) from a process of
/// roadie's size: the cost of the spawner thread's fork and of the
/// copy-on-write faults it puts on the driver thread.
fn spawn_table(o: &Options) -> Result<()> {
    let n = o.wide;
    println!(
        "spawn cost from a process holding N MiB of touched heap ({n} `true`, median of {}):",
        o.reps
    );
    println!(
        "{:<10} {:>14} {:>14} {:>16}",
        "resident", "path", "µs/spawn", "µs/write pass"
    );
    for mib in [2, 24, 96] {
        for path in [spawn::SpawnPath::PosixSpawn, spawn::SpawnPath::Fork] {
            let mut runs = Vec::new();
            for _ in 0..o.reps {
                runs.push(spawn::spawn_cost(path, n, mib)?);
            }
            runs.sort();
            let Some((sp, dirty)) = runs.get(runs.len() / 2) else {
                continue;
            };
            println!(
                "{:<10} {:>14} {:>14.1} {:>16.1}",
                format!("{mib} MiB"),
                path.label(),
                sp.as_secs_f64() * 1e6,
                dirty.as_secs_f64() * 1e6
            );
        }
    }
    println!(
        "µs/write pass = writing one byte in every 16th heap page after each spawn: after a fork the\n\
         pages are write-protected and each first write faults (what roadie's driver thread pays)."
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
