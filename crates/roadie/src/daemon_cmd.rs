//! `roadie daemon ...`: start, stop and query the profile's daemon (through
//! `roadie_daemon::DaemonClient`), and the two process roles the daemon runs
//! this binary as: the foreground supervisor and the (hidden) worker.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use roadie_daemon::{DaemonClient, DaemonError, DaemonStatus, supervisor, testmode};
use roadie_store::Profile;

/// Exit status of `roadie daemon status` when no daemon runs (as the LSB
/// asks of `status` commands).
pub const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Args)]
pub struct DaemonArgs {
    /// The profile directory, passed by roadie to the supervisor and worker
    /// processes it starts so they use exactly the caller's profile.
    #[arg(long, hide = true, value_name = "DIR")]
    profile_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: DaemonCommand,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StatusFormat {
    /// A summary and a table of workers.
    Wide,
    /// The supervisor's status as JSON.
    Json,
}

#[derive(Subcommand)]
enum DaemonCommand {
    /// Start the profile's daemon: a supervisor in the background that keeps
    /// N worker processes running submitted workflows.
    #[command(
        after_help = "Examples:\n  roadie daemon start\n  roadie daemon start --workers 4\n  roadie daemon start --foreground   # stay attached; Ctrl-C stops it\n\nReturns once every worker is up. The daemon's output goes to daemon.log in the profile directory (`roadie daemon logs`)."
    )]
    Start {
        /// Worker processes to start.
        #[arg(short = 'n', long, default_value_t = 1, value_name = "N")]
        workers: usize,
        /// Run the supervisor in this process instead of the background.
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the daemon: workers finish their current state transition and
    /// hand their workflows back to the queue, then the supervisor exits.
    #[command(
        after_help = "Examples:\n  roadie daemon stop\n  roadie daemon stop --timeout 60\n  roadie daemon stop --no-wait\n\nExit status: 0 once stopped, 1 if it is not running or did not stop in time (it keeps stopping in the background)."
    )]
    Stop {
        /// Return once the daemon has accepted the stop, not when it is done.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds (default: the profile's
        /// daemon_timeout_secs, else 20).
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
    },
    /// Replace every worker by a new process (the supervisor stays).
    #[command(
        after_help = "Examples:\n  roadie daemon restart\n  roadie daemon restart --reset   # new supervisor, crash counts cleared, log moved to daemon.log.1"
    )]
    Restart {
        /// Restart the whole daemon with as many workers, clearing crash
        /// counters and starting a new log.
        #[arg(long)]
        reset: bool,
    },
    /// Show the supervisor and its workers (PID, memory, CPU, workflows).
    #[command(
        after_help = "Examples:\n  roadie daemon status\n  roadie daemon status -o json | jq '.workers[].pid'\n\nExit status: 0 when running, 3 when not running."
    )]
    Status {
        #[arg(short = 'o', long = "output", value_enum, default_value = "wide")]
        output: StatusFormat,
    },
    /// Add workers to the running daemon.
    Incr {
        /// How many.
        #[arg(default_value_t = 1)]
        n: usize,
    },
    /// Remove the highest-numbered workers from the running daemon.
    Decr {
        /// How many.
        #[arg(default_value_t = 1)]
        n: usize,
    },
    /// Print the daemon log.
    Logs {
        /// Keep printing new lines (Ctrl-C to end).
        #[arg(short, long)]
        follow: bool,
    },
    /// A worker process; started by the supervisor, not by hand.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        index: usize,
        #[arg(long)]
        supervisor_pid: u32,
    },
}

/// Runs `roadie daemon ...`; the exit code on success.
pub fn run(profile_name: Option<&str>, args: DaemonArgs) -> Result<u8> {
    let profile = match &args.profile_dir {
        Some(dir) => {
            let name = Profile::resolve(profile_name)?.name;
            Profile::at(&name, dir.clone())?
        }
        None => Profile::resolve(profile_name)?,
    };
    match args.command {
        DaemonCommand::Start {
            workers,
            foreground,
        } => start(profile, workers, foreground),
        DaemonCommand::Stop { no_wait, timeout } => {
            let mut client = DaemonClient::new(profile);
            if let Some(secs) = timeout {
                anyhow::ensure!(
                    secs.is_finite() && secs > 0.0,
                    "--timeout: expected a positive number of seconds, got {secs}"
                );
                client = client.with_timeout(Duration::from_secs_f64(secs));
            }
            client.stop(!no_wait)?;
            if no_wait {
                println!(
                    "the daemon of profile {} is stopping",
                    client.profile().name
                );
            } else {
                println!("the daemon of profile {} stopped", client.profile().name);
            }
            Ok(0)
        }
        DaemonCommand::Restart { reset } => {
            let client = DaemonClient::new(profile);
            let status = client.restart(reset)?;
            println!(
                "the daemon of profile {} restarted: supervisor pid {}, workers {}",
                status.profile,
                status.pid,
                pid_list(&status)
            );
            Ok(0)
        }
        DaemonCommand::Status { output } => status(profile, output),
        DaemonCommand::Incr { n } => {
            let status = DaemonClient::new(profile).increase_workers(n)?;
            println!(
                "{} worker(s) now: {}",
                status.workers.len(),
                pid_list(&status)
            );
            Ok(0)
        }
        DaemonCommand::Decr { n } => {
            let status = DaemonClient::new(profile).decrease_workers(n)?;
            println!(
                "{} worker(s) now: {}",
                status.workers.len(),
                pid_list(&status)
            );
            Ok(0)
        }
        DaemonCommand::Logs { follow } => logs(&profile, follow),
        DaemonCommand::Worker {
            index,
            supervisor_pid,
        } => worker(&profile, index, supervisor_pid),
    }
}

fn start(profile: Profile, workers: usize, foreground: bool) -> Result<u8> {
    anyhow::ensure!(workers > 0, "--workers: a daemon needs at least one worker");
    if foreground {
        // Only for a person at a terminal; in the background the
        // supervisor's own first log line says the same.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!(
                "roadie daemon of profile {} in the foreground (pid {}); Ctrl-C stops it",
                profile.name,
                std::process::id()
            );
        }
        supervisor::run(&profile, supervisor::SupervisorOptions::new(workers)?)?;
        return Ok(0);
    }
    let client = DaemonClient::new(profile);
    let status = client.start(workers)?;
    println!(
        "the daemon of profile {} started: supervisor pid {}, workers {}\nlog: {}",
        status.profile,
        status.pid,
        pid_list(&status),
        status.log.display()
    );
    Ok(0)
}

fn pid_list(status: &DaemonStatus) -> String {
    let pids: Vec<String> = status
        .workers
        .iter()
        .map(|w| match w.pid {
            Some(pid) => format!("{}:{pid}", w.index),
            None => format!("{}:{}", w.index, w.state.as_str()),
        })
        .collect();
    if pids.is_empty() {
        "none".into()
    } else {
        pids.join(" ")
    }
}

fn status(profile: Profile, output: StatusFormat) -> Result<u8> {
    let client = DaemonClient::new(profile);
    let status = match client.status() {
        Ok(s) => s,
        Err(e @ DaemonError::NotRunning { .. }) => {
            eprintln!("{e}");
            return Ok(EXIT_NOT_RUNNING);
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = std::io::stdout().lock();
    if output == StatusFormat::Json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(
        out,
        "Profile:     {} ({})",
        status.profile,
        status.profile_dir.display()
    )?;
    writeln!(
        out,
        "Supervisor:  pid {}, up {}, {}",
        status.pid,
        human_duration(status.uptime_secs),
        match status.state {
            roadie_daemon::SupervisorState::Running => "running",
            roadie_daemon::SupervisorState::Stopping => "stopping",
        }
    )?;
    writeln!(out, "Store:       {}", status.store)?;
    match (status.queue_depth, status.workflows_claimed) {
        (Some(q), Some(c)) => writeln!(out, "Queue:       {q} waiting, {c} claimed by workers")?,
        (Some(q), None) => writeln!(out, "Queue:       {q} waiting")?,
        _ => writeln!(out, "Queue:       unknown (the store cannot be read)")?,
    }
    writeln!(out, "Log:         {}", status.log.display())?;
    writeln!(out)?;
    let header = [
        "WORKER",
        "PID",
        "STATE",
        "RSS",
        "CPU%",
        "STARTED",
        "WORKFLOWS",
        "RESTARTS",
        "LAST EXIT",
    ];
    let mut rows = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let mut notes = Vec::new();
    for w in &status.workers {
        let dash = || "-".to_string();
        rows.push(vec![
            w.index.to_string(),
            w.pid.map(|p| p.to_string()).unwrap_or_else(dash),
            w.state.as_str().to_string(),
            w.rss_bytes
                .map(|b| format!("{:.1}MiB", b as f64 / (1024.0 * 1024.0)))
                .unwrap_or_else(dash),
            w.cpu_percent
                .map(|c| format!("{c:.1}"))
                .unwrap_or_else(dash),
            w.started_at
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_else(dash),
            w.workflows_running
                .map(|n| n.to_string())
                .unwrap_or_else(dash),
            w.restarts.to_string(),
            w.last_exit.clone().unwrap_or_else(dash),
        ]);
        if let Some(msg) = &w.message {
            notes.push(format!("worker {}: {msg}", w.index));
        }
        if let Some(at) = w.restart_at {
            notes.push(format!(
                "worker {}: restarts at {}",
                w.index,
                at.with_timezone(&chrono::Local).format("%H:%M:%S")
            ));
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    for note in notes {
        writeln!(out, "{note}")?;
    }
    Ok(0)
}

/// `95` → `1m35s`, `7300` → `2h01m`, `90000` → `1d01h`.
fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

fn logs(profile: &Profile, follow: bool) -> Result<u8> {
    let path = roadie_daemon::control::log_path(profile);
    let mut stdout = std::io::stdout().lock();
    let mut offset = 0u64;
    // Prints what was appended since `offset`; starts over when the file was
    // replaced or truncated (`restart --reset` moves it aside).
    let print_new = |offset: &mut u64, out: &mut std::io::StdoutLock| -> Result<()> {
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let len = file.metadata()?.len();
        if len < *offset {
            *offset = 0;
        }
        file.seek(SeekFrom::Start(*offset))?;
        let mut buf = Vec::new();
        file.take(len - *offset).read_to_end(&mut buf)?;
        *offset += buf.len() as u64;
        out.write_all(&buf)?;
        out.flush()?;
        Ok(())
    };
    if !follow {
        if !path.exists() {
            anyhow::bail!(
                "{}: no daemon log yet (the daemon of profile {} never ran in the background)",
                path.display(),
                profile.name
            );
        }
        print_new(&mut offset, &mut stdout)?;
        return Ok(0);
    }
    // Follow: inotify on the profile directory (the log may not exist yet,
    // or be replaced), with a slow tick in case an event is missed.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |res| {
        let _ = tx.send(res);
    })
    .context("cannot watch the daemon log")?;
    profile.ensure_dirs()?;
    {
        use notify::Watcher;
        watcher
            .watch(&profile.dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", profile.dir.display()))?;
    }
    loop {
        print_new(&mut offset, &mut stdout)?;
        let _ = rx.recv_timeout(Duration::from_secs(2));
        while rx.try_recv().is_ok() {}
    }
}

/// Default of how many steps a worker runs at once.
const WORKER_MAX_STEPS: usize = 64;

fn worker(profile: &Profile, index: usize, supervisor_pid: u32) -> Result<u8> {
    if let Some(mode) = testmode::test_mode_from_env() {
        // Test-only stand-in (see roadie_daemon::testmode).
        let code = testmode::run_test_worker(profile, index, supervisor_pid, &mode)?;
        return Ok(u8::try_from(code).unwrap_or(1));
    }
    roadie_daemon::worker::worker_main(
        profile,
        roadie_daemon::worker::WorkerOptions {
            index,
            supervisor_pid,
            max_steps: roadie_daemon::worker::configured_max_steps(profile, WORKER_MAX_STEPS),
        },
    )?;
    Ok(0)
}
