//! Profile resolution. The environment is passed explicitly through
//! `ProfileEnv`, so these tests neither read nor change the process
//! environment; one test re-runs this binary with a chosen environment to
//! check that `Profile::resolve` reads the real variables.

use std::ffi::OsString;
use std::path::PathBuf;

use roadie_store::{Profile, ProfileEnv, StoreError};

fn env(
    roadie_home: Option<&str>,
    xdg: Option<&str>,
    home: Option<&str>,
    profile: Option<&str>,
) -> ProfileEnv {
    ProfileEnv {
        roadie_home: roadie_home.map(OsString::from),
        xdg_data_home: xdg.map(OsString::from),
        home: home.map(OsString::from),
        roadie_profile: profile.map(OsString::from),
    }
}

#[test]
fn roadie_home_wins() {
    let p = Profile::resolve_with(
        None,
        &env(Some("/srv/roadie"), Some("/xdg"), Some("/home/u"), None),
    )
    .unwrap();
    assert_eq!(p.name, "default");
    assert_eq!(p.dir, PathBuf::from("/srv/roadie/profiles/default"));
    assert_eq!(
        p.db_path(),
        PathBuf::from("/srv/roadie/profiles/default/roadie.db")
    );
    assert_eq!(
        p.logs_dir(),
        PathBuf::from("/srv/roadie/profiles/default/logs")
    );
    assert_eq!(
        p.state_dir(),
        PathBuf::from("/srv/roadie/profiles/default/state")
    );
    assert_eq!(
        p.workflow_log_dir("hello-x7k2"),
        PathBuf::from("/srv/roadie/profiles/default/logs/hello-x7k2")
    );
}

#[test]
fn xdg_data_home_then_home() {
    let p = Profile::resolve_with(None, &env(None, Some("/xdg"), Some("/home/u"), None)).unwrap();
    assert_eq!(p.dir, PathBuf::from("/xdg/roadie/profiles/default"));

    let p = Profile::resolve_with(None, &env(None, None, Some("/home/u"), None)).unwrap();
    assert_eq!(
        p.dir,
        PathBuf::from("/home/u/.local/share/roadie/profiles/default")
    );
}

#[test]
fn empty_or_relative_xdg_is_ignored() {
    let p =
        Profile::resolve_with(None, &env(Some(""), Some(""), Some("/home/u"), Some(""))).unwrap();
    assert_eq!(
        p.dir,
        PathBuf::from("/home/u/.local/share/roadie/profiles/default")
    );
    let p =
        Profile::resolve_with(None, &env(None, Some("rel/xdg"), Some("/home/u"), None)).unwrap();
    assert_eq!(
        p.dir,
        PathBuf::from("/home/u/.local/share/roadie/profiles/default")
    );
}

#[test]
fn relative_roadie_home_becomes_absolute() {
    let p = Profile::resolve_with(None, &env(Some("rh"), None, None, None)).unwrap();
    assert!(p.dir.is_absolute(), "{}", p.dir.display());
    assert!(
        p.dir.ends_with("rh/profiles/default"),
        "{}",
        p.dir.display()
    );
}

#[test]
fn no_home_at_all_is_a_clear_error() {
    let err = Profile::resolve_with(None, &env(None, None, None, None)).unwrap_err();
    assert!(matches!(err, StoreError::NoHome), "{err:?}");
    assert!(err.to_string().contains("ROADIE_HOME"), "{err}");
}

#[test]
fn name_from_argument_then_roadie_profile_then_default() {
    let e = env(Some("/r"), None, None, Some("ci"));
    assert_eq!(Profile::resolve_with(Some("dev"), &e).unwrap().name, "dev");
    let p = Profile::resolve_with(None, &e).unwrap();
    assert_eq!(p.name, "ci");
    assert_eq!(p.dir, PathBuf::from("/r/profiles/ci"));
    let e = env(Some("/r"), None, None, None);
    assert_eq!(Profile::resolve_with(None, &e).unwrap().name, "default");
}

#[test]
fn valid_names() {
    let e = env(Some("/r"), None, None, None);
    for name in ["a", "Z9", "my_profile-2", "-", "_"] {
        assert_eq!(Profile::resolve_with(Some(name), &e).unwrap().name, name);
    }
}

#[test]
fn invalid_names_are_rejected_with_a_reason() {
    let e = env(Some("/r"), None, None, None);
    for (name, expect) in [
        ("", "cannot be empty"),
        ("a/b", "found '/'"),
        ("..", "found '.'"),
        ("has space", "found ' '"),
        ("é", "found 'é'"),
    ] {
        let err = Profile::resolve_with(Some(name), &e).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidProfile { .. }),
            "{name}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(expect), "{name}: {msg}");
        assert!(msg.contains(&format!("{name:?}")), "{name}: {msg}");
    }
    let long = "x".repeat(65);
    let err = Profile::resolve_with(Some(&long), &e).unwrap_err();
    assert!(err.to_string().contains("at most 64"), "{err}");
}

#[test]
fn invalid_roadie_profile_says_where_it_came_from() {
    let err = Profile::resolve_with(None, &env(Some("/r"), None, None, Some("../x"))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("(from ROADIE_PROFILE)"), "{msg}");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let mut e = env(Some("/r"), None, None, None);
        e.roadie_profile = Some(OsString::from_vec(b"\xff".to_vec()));
        let err = Profile::resolve_with(None, &e).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }
}

#[test]
fn resolve_does_not_create_anything() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("rh");
    let e = ProfileEnv {
        roadie_home: Some(home.clone().into_os_string()),
        ..Default::default()
    };
    let p = Profile::resolve_with(None, &e).unwrap();
    assert!(!home.exists());
    p.ensure_dirs().unwrap();
    assert!(p.logs_dir().is_dir() && p.state_dir().is_dir());
    p.ensure_dirs().unwrap(); // idempotent
}

#[test]
fn workflow_log_dir_stays_inside_logs() {
    let p = Profile::at("default", "/r/profiles/default").unwrap();
    for name in ["..", "../../etc", "a/b", ""] {
        let d = p.workflow_log_dir(name);
        assert_eq!(
            d.parent(),
            Some(p.logs_dir().as_path()),
            "{name} -> {}",
            d.display()
        );
        assert!(!d.ends_with(".."), "{name}");
    }
}

/// Runs in a child process whose environment the parent chose.
const CHILD_VAR: &str = "ROADIE_STORE_PROFILE_TEST_CHILD";

#[test]
fn resolve_reads_the_process_environment() {
    if std::env::var_os(CHILD_VAR).is_some() {
        let p = Profile::resolve(None).unwrap();
        println!("RESOLVED {} {}", p.name, p.dir.display());
        let p = Profile::resolve(Some("explicit")).unwrap();
        println!("RESOLVED {} {}", p.name, p.dir.display());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resolve_reads_the_process_environment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env(CHILD_VAR, "1")
        .env("XDG_DATA_HOME", "/xdg")
        .env("HOME", "/home/u")
        .env("ROADIE_PROFILE", "from-env")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("RESOLVED from-env /xdg/roadie/profiles/from-env"),
        "{stdout}"
    );
    assert!(
        stdout.contains("RESOLVED explicit /xdg/roadie/profiles/explicit"),
        "{stdout}"
    );
}
