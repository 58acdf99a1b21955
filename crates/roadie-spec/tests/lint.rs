//! `roadie lint` against real files: the Argo examples and seeds must be
//! clean, and each broken fixture in `tests/lint/` must give exactly the
//! diagnostics written in its sibling `.expected` file.

use std::path::{Path, PathBuf};

use roadie_spec::{Diagnostic, lint};

/// The project's shared data: `../../../shared` from this crate, or
/// `ROADIE_SHARED_DIR`.
fn shared_dir() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if beside.is_dir() {
        return beside;
    }
    match std::env::var_os("ROADIE_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "shared dir not found at {} and ROADIE_SHARED_DIR is not set",
            beside.display()
        ),
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
}

fn errors_of(path: &Path, shown: &str) -> Vec<Diagnostic> {
    let src =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    lint(&src, shown)
        .into_iter()
        .filter(|d| d.is_error())
        .collect()
}

fn assert_all_clean(files: &[PathBuf], base: &Path) {
    let mut problems = Vec::new();
    for f in files {
        let shown = f.strip_prefix(base).unwrap_or(f).display().to_string();
        problems.extend(errors_of(f, &shown).iter().map(|d| d.to_string()));
    }
    assert!(
        problems.is_empty(),
        "{} errors:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_argo_example_is_clean() {
    let dir = shared_dir().join("argo-examples");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    assert!(
        files.len() > 100,
        "only {} examples in {}",
        files.len(),
        dir.display()
    );
    assert_all_clean(&files, &dir);
}

#[test]
fn the_seeds_are_clean() {
    let dir = shared_dir().join("seeds");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    assert!(files.len() >= 2, "seeds missing in {}", dir.display());
    assert_all_clean(&files, &dir);
}

/// Each `tests/lint/NAME.yaml` (or `.json`) is linted as `NAME.yaml` and the
/// output, one diagnostic a line, must equal `tests/lint/NAME.expected`.
/// `ROADIE_BLESS=1` writes the `.expected` files instead (review them!).
#[test]
fn broken_fixtures_give_exactly_the_expected_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    assert!(files.len() >= 14, "only {} fixtures", files.len());
    let bless = std::env::var_os("ROADIE_BLESS").is_some();
    let mut failures = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_string();
        let src = std::fs::read_to_string(f).expect("read fixture");
        let got: String = lint(&src, &name).iter().map(|d| format!("{d}\n")).collect();
        let expected_path = f.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).expect("write expected");
            continue;
        }
        let want = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", expected_path.display()));
        if got.is_empty() {
            failures.push(format!("{name}: no diagnostics at all"));
        }
        if got != want {
            failures.push(format!("{name}:\n--- expected\n{want}--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
