//! Artifacts end to end: real steps write files, roadie saves them in the
//! profile's artifact repository and places them for later steps.

mod common;

use common::*;

#[test]
fn artifacts_pass_between_steps_through_the_local_repository() {
    let env = Env::new();
    let out = env.out_param();
    let (outcome, wf) = env.run_json(&fixture("artifacts.yaml"), "arts", &["-p", &out]);
    outcome.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));

    // The consumer saw every artifact, placed where it asked.
    assert_eq!(
        env.node_log("arts", "use"),
        "hello artifact\nB\nA\nB\nkeyed\nraw text\n"
    );

    // The producer's outputs name repository keys; each key is on disk.
    let repo = env.home.path().join("profiles/default/artifacts");
    let gen_node = node(&wf, "gen");
    let arts = gen_node["outputs"]["artifacts"]
        .as_array()
        .expect("outputs.artifacts");
    let names: Vec<&str> = arts.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(
        names,
        ["hello", "tree", "tree-tgz", "keyed"],
        "optional 'absent' is not listed"
    );
    let key = |name: &str| -> String {
        arts.iter()
            .find(|a| a["name"] == name)
            .and_then(|a| a["s3"]["key"].as_str())
            .unwrap_or_else(|| panic!("no key for {name}: {arts:?}"))
            .to_string()
    };
    let hello = std::fs::read(repo.join(key("hello"))).expect("hello is in the repository");
    assert_eq!(&hello[..2], [0x1f, 0x8b], "the default archive is gzip");
    assert!(key("hello").ends_with("/hello.tgz"));
    assert!(
        repo.join(key("tree")).join("sub/b.txt").is_file(),
        "archive none keeps the tree"
    );
    assert_eq!(key("keyed"), "arts/keyed.txt");
    assert_eq!(
        std::fs::read_to_string(repo.join("arts/keyed.txt")).expect("keyed"),
        "keyed\n"
    );
}

#[test]
fn a_missing_output_artifact_fails_the_step_with_its_path() {
    let env = Env::new();
    let (outcome, wf) = env.run_json(&fixture("artifact-missing.yaml"), "miss", &[]);
    outcome.expect_code(1);
    assert_eq!(phase(&wf), "Error", "{}", describe_nodes(&wf));
    let root = node(&wf, "miss");
    let message = root["message"].as_str().unwrap_or("");
    assert!(
        message.contains("output artifact 'report'")
            && message.contains("/nonexistent-roadie-test/report.txt"),
        "{message}"
    );
}

#[test]
fn an_empty_dir_volume_is_shared_by_a_container_set_and_read_for_outputs() {
    let env = Env::new();
    let out = env.out_param();
    let (outcome, wf) = env.run_json(&fixture("volumes.yaml"), "vols", &["-p", &out]);
    outcome.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_eq!(env.node_log("vols", "main"), "shared\n");
    let set = node(&wf, "vols");
    assert_eq!(set["type"], "Pod");
    assert_eq!(set["outputs"]["result"], "shared");
    assert_eq!(set["outputs"]["parameters"][0]["value"], "shared");
    for name in ["a", "main"] {
        assert_eq!(
            node(&wf, name)["type"],
            "Container",
            "{}",
            describe_nodes(&wf)
        );
    }
    let key = set["outputs"]["artifacts"][0]["s3"]["key"]
        .as_str()
        .expect("artifact key");
    let saved = env.home.path().join("profiles/default/artifacts").join(key);
    assert_eq!(
        std::fs::read_to_string(saved).expect("artifact saved"),
        "shared\n"
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // The volume was a mount in the steps' namespace: the host directory stayed empty.
        let host_view = env.dir().join("vol/file");
        assert!(
            !host_view.exists(),
            "{} should not exist",
            host_view.display()
        );
    }
}

#[test]
fn private_dirs_give_each_step_its_own_copy_of_a_directory() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: private directories need root (mount namespaces)");
        return;
    }
    let mut env = Env::new();
    env.vars
        .push(("ROADIE_PRIVATE_DIRS".into(), "/var/tmp".into()));
    let (outcome, wf) = env.run_json(&fixture("private-dirs.yaml"), "priv", &[]);
    outcome.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    for name in ["one", "two"] {
        let n = node(&wf, name);
        assert_eq!(n["outputs"]["result"], name, "{}", describe_nodes(&wf));
        assert_eq!(n["outputs"]["parameters"][0]["value"], name);
    }
    assert!(
        !std::path::Path::new("/var/tmp/roadie-private-dirs-check").exists(),
        "the host's /var/tmp was not written"
    );
    let scratch = env.home.path().join("profiles/default/state/scratch");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|d| d.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    let leftover: Vec<_> = left
        .iter()
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten())
        .collect();
    assert!(
        leftover.is_empty(),
        "scratch directories are removed: {leftover:?}"
    );
}

#[test]
fn exec_probes_see_the_private_dirs_of_their_step() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: private directories need root (mount namespaces)");
        return;
    }
    let mut env = Env::new();
    env.vars
        .push(("ROADIE_PRIVATE_DIRS".into(), "/var/tmp".into()));
    let (outcome, wf) = env.run_json(&fixture("private-dirs-probe.yaml"), "probe", &[]);
    outcome.expect_code(0);
    assert_eq!(phase(&wf), "Succeeded", "{}", describe_nodes(&wf));
    assert_eq!(node(&wf, "client")["phase"], "Succeeded");
    assert!(!std::path::Path::new("/var/tmp/roadie-private-ready").exists());
}
