//! "No process outlives the run", even when roadie is killed with SIGKILL: the step leader
//! dies with roadie (PR_SET_PDEATHSIG), and what it left (a grandchild in its group) is
//! killed by `reap_leftovers` when roadie next starts.

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{alive, start_time, wait_dead, wait_file};
use roadie_runtime::{HostRuntime, RuntimeEvent, StepLaunch, reap_leftovers};

const HELPER_ENV: &str = "ROADIE_RUNTIME_REAP_HELPER";

/// Not a test of its own: the body of the "roadie" process that
/// `a_killed_roadie_leaves_nothing_behind` starts (by re-running this test binary) and then
/// kills with SIGKILL. Without the environment variable it does nothing.
#[test]
#[ignore = "helper process for a_killed_roadie_leaves_nothing_behind"]
fn helper_roadie_process() {
    let Ok(dir) = std::env::var(HELPER_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let host = HostRuntime::new(&dir.join("state"), tx).unwrap();
        let gc_file = dir.join("gc.pid");
        host.start(StepLaunch {
            key: "daemon".into(),
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("sleep 1000 & echo $! > '{}'; wait", gc_file.display()),
            ],
            log_path: dir.join("daemon.log"),
            ..StepLaunch::default()
        });
        let leader = match events.recv().await {
            Some(RuntimeEvent::Started { pid, .. }) => pid,
            other => panic!("helper: unexpected {other:?}"),
        };
        let gc = wait_file(&gc_file, |t| t.ends_with('\n')).await;
        let ready = dir.join("ready");
        std::fs::write(dir.join("ready.tmp"), format!("{leader} {}", gc.trim())).unwrap();
        std::fs::rename(dir.join("ready.tmp"), ready).unwrap();
        std::future::pending::<()>().await;
    });
}

fn registry_owners(state: &Path) -> Vec<String> {
    match std::fs::read_dir(state.join("running")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_roadie_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "helper_roadie_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ready = wait_file(&dir.path().join("ready"), |t| !t.is_empty()).await;
    let (leader, gc) = ready.split_once(' ').unwrap();
    let (leader, gc): (u32, u32) = (leader.parse().unwrap(), gc.parse().unwrap());
    assert!(alive(leader) && alive(gc));
    let owner = format!("{}.{}", helper.id(), start_time(helper.id()));
    assert_eq!(registry_owners(&state), std::slice::from_ref(&owner));

    // While that roadie lives, its groups are not leftovers.
    assert_eq!(reap_leftovers(&state).unwrap(), Vec::<u32>::new());
    assert!(alive(gc));
    assert_eq!(registry_owners(&state), [owner]);

    helper.kill().unwrap();
    assert_eq!(helper.wait().unwrap().signal(), Some(9));

    // The leader dies with roadie (PR_SET_PDEATHSIG) ...
    assert!(
        wait_dead(leader).await,
        "step leader {leader} outlived roadie"
    );
    // ... but its background child does not get that signal.
    assert!(alive(gc), "expected the grandchild to survive until reaped");

    let killed = reap_leftovers(&state).unwrap();
    assert!(killed.contains(&gc), "killed {killed:?}, expected {gc}");
    assert!(
        wait_dead(gc).await,
        "grandchild {gc} survived reap_leftovers"
    );
    assert!(registry_owners(&state).is_empty());
    assert_eq!(reap_leftovers(&state).unwrap(), Vec::<u32>::new());
}

fn fake_dead_owner(state: &Path, record: &str) -> PathBuf {
    // A pid above any pid_max: certainly not alive.
    let owner = state.join("running").join("4000000000.1");
    std::fs::create_dir_all(&owner).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    std::fs::write(owner.join("boot_id"), boot).unwrap();
    std::fs::write(owner.join("1.group"), record).unwrap();
    owner
}

/// A recorded pgid whose leader now has another start time belongs to someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_never_kills_a_reused_pgid() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut stranger = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = stranger.id();
    let start = start_time(pid);

    for stale in [format!("{pid} {}\n", start + 1), format!("{pid} 0\n")] {
        let owner = fake_dead_owner(&state, &stale);
        assert_eq!(reap_leftovers(&state).unwrap(), Vec::<u32>::new());
        assert!(
            alive(pid),
            "a stranger's group was killed for record {stale:?}"
        );
        assert!(!owner.exists(), "the dead owner's registry is removed");
    }

    // The same group recorded with its true start time is a leftover.
    fake_dead_owner(&state, &format!("{pid} {start}\n"));
    assert_eq!(reap_leftovers(&state).unwrap(), vec![pid]);
    assert_eq!(stranger.wait().unwrap().signal(), Some(9));
}

/// An empty record is a step that never got past fork: nothing to kill, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_records_are_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let owner = fake_dead_owner(&state, "");
    assert_eq!(reap_leftovers(&state).unwrap(), Vec::<u32>::new());
    assert!(!owner.exists());
}
