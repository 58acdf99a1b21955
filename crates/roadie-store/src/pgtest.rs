//! A throwaway PostgreSQL server for tests (feature `pgtest`): `initdb`
//! into a temporary directory, the server on a free loopback port with its
//! socket in that directory, one server per test process (shared through a
//! `OnceLock`), a fresh database per test.
//!
//! ```text
//! // In another crate's tests, with roadie-store's `pgtest` feature on:
//! let url = roadie_store::pgtest::fresh_database(); // postgres://postgres@127.0.0.1:PORT/roadie_test_..
//! let store = roadie_store::Store::open_url(&url)?;
//! ```
//!
//! The server binaries are Debian's (`/usr/lib/postgresql/*/bin`, installed
//! by scripts/setup.sh), or those in `$ROADIE_PG_BIN`. Missing binaries fail
//! the test with a message saying so: a PostgreSQL test never skips.
//!
//! PostgreSQL refuses to run as root, so under root the server runs as the
//! `postgres` user (`setpriv`), its directory chowned to it.
//!
//! `initdb` runs once per machine, into a template cluster
//! (`roadie-pgtest-template-<version>-<uid>` in `/dev/shm`, else the
//! temporary directory), which each test process copies. Nothing else is
//! left behind: the postmaster is this process's child, started by a thread
//! that lives as long as the process, with a parent-death signal (SIGINT:
//! fast shutdown), so it ends with the test process even after SIGKILL; at
//! a normal exit an `atexit` handler stops it, waits for it and removes its
//! directory (and the next run removes the directories of killed runs).
//!
//! Test code: it panics, with a message, on anything that goes wrong.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The running server of this process.
pub struct PgServer {
    /// Its loopback TCP port.
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The process's server, started on first use.
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(start)
}

/// A new, empty database on the shared server; its URL.
pub fn fresh_database() -> String {
    let server = server();
    let name = format!(
        "roadie_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = server.admin();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    server.url(&name)
}

impl PgServer {
    /// The URL of database `db` on this server (user `postgres`, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A plain client on the `postgres` database, for setup and raw checks.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"))
    }
}

/// The directory of `initdb` and `postgres`: `$ROADIE_PG_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROADIE_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("postgres").is_file(),
            "ROADIE_PG_BIN={} has no initdb and postgres",
            dir.display()
        );
        return dir;
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb and \
             postgres): run scripts/setup.sh, which installs Debian's postgresql, or set \
             ROADIE_PG_BIN to a directory holding initdb and postgres. The store tests run \
             against PostgreSQL too and do not skip."
        ),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program args...`, as the `postgres` user when we are root, with a parent
/// death signal when `pdeathsig` is set.
fn command(program: &Path, pdeathsig: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    if is_root() {
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
        ]);
    }
    if pdeathsig {
        cmd.arg("--pdeathsig=INT");
    }
    cmd.arg(program);
    cmd
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("local address").port()
}

fn start() -> PgServer {
    let bin = bin_dir();
    remove_orphans(&scratch_dir());
    let dir = tempfile::Builder::new()
        .prefix(RUN_PREFIX)
        .tempdir_in(scratch_dir())
        .expect("creating a temporary directory for PostgreSQL")
        .keep();
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
        .expect("recording the owner of the PostgreSQL directory");
    chown_to_postgres(&dir);
    // A copy of a cluster made once per machine: much faster than initdb,
    // which matters when each test is a process of its own (nextest).
    let template = template(&bin);
    let data = dir.join("data");
    let out = Command::new("cp")
        .arg("-a")
        .arg(&template)
        .arg(&data)
        .output()
        .expect("running cp");
    assert!(
        out.status.success(),
        "cp -a {} {} failed: {}",
        template.display(),
        data.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    // A port can be taken between our probe and the server's bind: retry.
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port();
        let (child, log) = spawn_postmaster(&bin, &dir, &data, port);
        let server = PgServer {
            port,
            dir: dir.clone(),
            child: Mutex::new(Some(child)),
        };
        match wait_ready(&server, &log) {
            Ok(()) => {
                // SAFETY: registering a plain extern "C" function.
                unsafe { libc::atexit(stop_at_exit) };
                return server;
            }
            Err(e) => {
                last_error = e;
                server.stop();
            }
        }
    }
    panic!("the test PostgreSQL did not start: {last_error}");
}

/// Each process's cluster directory starts with this, and holds the pid of
/// its test process in `OWNER_FILE`.
const RUN_PREFIX: &str = "roadie-pgtest-run-";
const OWNER_FILE: &str = "owner.pid";

/// Removes the cluster directories of test processes that are gone (killed
/// before their `atexit` could clean up); their servers died with them.
fn remove_orphans(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for entry in entries.flatten() {
        let is_run = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(RUN_PREFIX));
        if !is_run {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = owner
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where clusters go: `$ROADIE_PGTEST_DIR`, else `/dev/shm` (memory: copying
/// a cluster and creating databases there takes a tenth of the time they take
/// on a disk), else the temporary directory.
fn scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROADIE_PGTEST_DIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let writable = tempfile::Builder::new()
        .prefix("roadie-pgtest-probe-")
        .tempdir_in(shm)
        .is_ok();
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Under root, the server runs as `postgres` and must own its directories.
fn chown_to_postgres(dir: &Path) {
    if !is_root() {
        return;
    }
    let out = Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir)
        .output()
        .expect("running chown");
    assert!(
        out.status.success(),
        "chown postgres {} failed (does the postgres user exist? installing Debian's \
         postgresql, as scripts/setup.sh does, creates it): {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The template cluster for `bin`'s PostgreSQL version: made by `initdb`
/// the first time (under a file lock, so concurrent test processes make it
/// once) in the temporary directory, and reused by every later test run.
fn template(bin: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;

    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|v| v.to_str())
        .unwrap_or("custom");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let base = scratch_dir().join(format!("roadie-pgtest-template-{version}-{euid}"));
    let lock_path = base.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "locking {}", lock_path.display());
    let data = base.join("data");
    if base.join("ready").is_file() {
        return data;
    }
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("creating the template directory");
    chown_to_postgres(&base);
    let out = command(&bin.join("initdb"), false)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ])
        .output()
        .expect("running initdb");
    assert!(
        out.status.success(),
        "initdb -D {} failed: {}{}",
        data.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(base.join("ready"), b"").expect("marking the template ready");
    data
}

/// Starts the postmaster from a thread that never ends, so that its
/// parent-death signal fires only when the whole test process goes.
fn spawn_postmaster(bin: &Path, dir: &Path, data: &Path, port: u16) -> (Child, PathBuf) {
    let log = dir.join(format!("postgres-{port}.log"));
    let mut cmd = command(&bin.join("postgres"), true);
    cmd.arg("-D")
        .arg(data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            // A test server: durability across power cuts is not tested here.
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ]);
    let log_file = std::fs::File::create(&log).expect("creating the PostgreSQL log");
    if is_root() {
        std::os::unix::fs::chown(&log, Some(postgres_uid()), None).ok();
    }
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file);
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("pgtest-parent".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        })
        .expect("starting the PostgreSQL parent thread");
    let child = rx
        .recv()
        .expect("PostgreSQL parent thread")
        .expect("spawning setpriv postgres");
    (child, log)
}

fn postgres_uid() -> u32 {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id -u postgres");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid of postgres")
}

fn wait_ready(server: &PgServer, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(child) = server.child.lock().unwrap().as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(format!(
                "postgres exited with {status}; its log ({}):\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        match postgres::Client::connect(&server.url("postgres"), postgres::NoTls) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "not accepting connections after 60 s ({e}); its log ({}):\n{}",
                    log.display(),
                    std::fs::read_to_string(log).unwrap_or_default()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

impl PgServer {
    /// Fast shutdown (SIGINT), then SIGKILL if it hangs; waits for the exit.
    fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which we have not yet reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

extern "C" fn stop_at_exit() {
    if let Some(server) = SERVER.get() {
        server.stop();
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}
