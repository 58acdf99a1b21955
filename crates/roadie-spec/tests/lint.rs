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

/// Replaces the first line for which `edit` returns a new line; `None` when no
/// line qualified.
fn mutate(src: &str, edit: impl Fn(&[&str], usize) -> Option<String>) -> Option<String> {
    let lines: Vec<&str> = src.lines().collect();
    for i in 0..lines.len() {
        if lines[i].trim_start().starts_with('#') || lines[i].contains(" #") {
            continue; // a comment: breaking it breaks nothing
        }
        if let Some(new) = edit(&lines, i) {
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out[i] = new;
            return Some(out.join("\n") + "\n");
        }
    }
    None
}

/// The linter is not merely lenient: breaking any Argo example in one of
/// several ways (a misspelt template, entrypoint, dependency, input or step
/// name) must give at least one error.
#[test]
fn broken_copies_of_the_examples_are_caught() {
    type Edit = fn(&[&str], usize) -> Option<String>;
    let edits: &[(&str, Edit)] = &[
        // (A workflow that takes its templates from a WorkflowTemplate may
        // name an entrypoint that only that template has.)
        ("entrypoint", |l, i| {
            let t = l[i].trim_start();
            let from_ref = l.iter().any(|x| x.contains("workflowTemplateRef"));
            (t.starts_with("entrypoint: ") && !l[i].contains("{{") && !from_ref)
                .then(|| format!("{}-missing", l[i]))
        }),
        ("step template", |l, i| {
            let t = l[i].trim_start();
            let under_ref = l[i.saturating_sub(2)..i]
                .iter()
                .any(|p| p.contains("templateRef"));
            (t.starts_with("template: ") && !under_ref && !l[i].contains("{{"))
                .then(|| format!("{}-missing", l[i]))
        }),
        ("input parameter", |l, i| {
            l[i].contains("{{inputs.parameters.")
                .then(|| l[i].replacen("{{inputs.parameters.", "{{inputs.parameters.zz", 1))
        }),
        ("step output", |l, i| {
            l[i].contains("{{steps.")
                .then(|| l[i].replacen("{{steps.", "{{steps.zz", 1))
        }),
        ("task output", |l, i| {
            l[i].contains("{{tasks.")
                .then(|| l[i].replacen("{{tasks.", "{{tasks.zz", 1))
        }),
        ("dependencies", |l, i| {
            l[i].contains("dependencies: [")
                .then(|| l[i].replacen("dependencies: [", "dependencies: [zz-missing, ", 1))
        }),
        ("depends", |l, i| {
            l[i].contains("depends: \"")
                .then(|| l[i].replacen("depends: \"", "depends: \"zz-missing && ", 1))
        }),
        ("workflow parameter", |l, i| {
            l[i].contains("{{workflow.parameters.")
                .then(|| l[i].replacen("{{workflow.parameters.", "{{workflow.parameters.zz", 1))
        }),
    ];
    let dir = shared_dir().join("argo-examples");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    let mut tried = 0;
    let mut missed = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read example");
        let shown = f.strip_prefix(&dir).unwrap_or(f).display().to_string();
        for (what, edit) in edits {
            let Some(broken) = mutate(&src, edit) else {
                continue;
            };
            tried += 1;
            if !lint(&broken, &shown).iter().any(Diagnostic::is_error) {
                missed.push(format!("{shown}: {what}"));
            }
        }
    }
    assert!(tried > 200, "only {tried} mutations applied");
    assert!(
        missed.is_empty(),
        "{} of {tried} broken copies passed:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

/// A stand-in for `roadie_expr::check_expr` (which sits above this crate):
/// rejects unbalanced parentheses, the error a typo most often makes.
fn balanced(expr: &str) -> Result<(), String> {
    let mut depth = 0i32;
    for c in expr.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            break;
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err(format!(
            "invalid expression '{}': unbalanced parentheses",
            expr.trim()
        ))
    }
}

#[test]
fn expressions_go_to_the_checker_with_their_places() {
    let src = "\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: expr-
spec:
  entrypoint: main
  hooks:
    running:
      expression: workflow.status == \"Running\"
      template: main
  templates:
  - name: main
    retryStrategy:
      limit: 3
      expression: (lastRetry.status == \"Error\"
    container:
      image: alpine
      args: [\"{{=sprig.upper(inputs.parameters.x}}\", \"{{= asInt(1) }}\"]
    inputs:
      parameters:
      - name: x
";
    let check = |e: &str| balanced(e);
    let opts = roadie_spec::LintOptions {
        check_expr: Some(&check),
    };
    let got: Vec<String> = roadie_spec::lint_with(src, "e.yaml", opts)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        got,
        vec![
            "e.yaml:15:19: error: invalid expression '(lastRetry.status == \"Error\"': unbalanced parentheses",
            "e.yaml:18:15: error: invalid expression 'sprig.upper(inputs.parameters.x': unbalanced parentheses",
        ]
    );
    // Without a checker, expressions are not looked at.
    assert!(lint(src, "e.yaml").is_empty(), "{:?}", lint(src, "e.yaml"));
}

#[test]
fn the_examples_expressions_reach_the_checker() {
    let dir = shared_dir().join("argo-examples");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let record = |e: &str| {
        seen.borrow_mut().push(e.trim().to_string());
        balanced(e)
    };
    for f in &files {
        let src = std::fs::read_to_string(f).expect("read example");
        let opts = roadie_spec::LintOptions {
            check_expr: Some(&record),
        };
        let errors: Vec<String> = roadie_spec::lint_with(&src, "x.yaml", opts)
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
    }
    let seen = seen.into_inner();
    assert!(seen.len() > 20, "only {} expressions: {seen:?}", seen.len());
    assert!(
        seen.iter().any(|e| e.contains("lastRetry.exitCode")),
        "retryStrategy.expression not seen"
    );
    assert!(
        seen.iter().any(|e| e.starts_with("sprig.")),
        "{{= sprig...}} tags not seen"
    );
}

fn shown(src: &str) -> Vec<String> {
    lint(src, "f.yaml").iter().map(|d| d.to_string()).collect()
}

#[test]
fn empty_and_comment_only_files_say_so() {
    let want = vec!["f.yaml:1:1: error: the file holds no document".to_string()];
    assert_eq!(shown(""), want);
    assert_eq!(shown("# nothing here\n\n"), want);
}

#[test]
fn tab_indented_json_is_read() {
    let src = "{\n\t\"apiVersion\": \"argoproj.io/v1alpha1\",\n\t\"kind\": \"Workflow\",\n\t\"metadata\": {\"name\": \"j\"},\n\t\"spec\": {\n\t\t\"entrypoint\": \"nope\",\n\t\t\"templates\": [{\"name\": \"a\", \"suspend\": {}}]\n\t}\n}\n";
    assert_eq!(
        shown(src),
        vec!["f.yaml:6:17: error: entrypoint template 'nope' is not defined"]
    );
}

#[test]
fn nesting_too_deep_is_an_error_not_a_crash() {
    let n = 20_000;
    let src = format!("kind: Workflow\nx: {}{}\n", "[".repeat(n), "]".repeat(n));
    let got = lint(&src, "f.yaml");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].is_error() && got[0].position.line == 2, "{got:?}");
}

#[test]
fn templates_and_template_refs_need_no_entrypoint() {
    let wft = "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata:\n  name: t\nspec:\n  templates:\n  - name: a\n    container:\n      image: alpine\n      args: [\"{{workflow.parameters.from-the-caller}}\"]\n";
    assert_eq!(shown(wft), Vec::<String>::new());
    let by_ref = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: r-\nspec:\n  workflowTemplateRef:\n    name: t\n";
    assert_eq!(shown(by_ref), Vec::<String>::new());
}

#[test]
fn lint_workflow_takes_a_parsed_workflow_and_its_map() {
    let src = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  name: w\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: s\n        template: gone\n";
    let wf = roadie_spec::parse_workflow(src, "w.yaml").expect("parses");
    let maps = roadie_spec::SourceMap::parse(src, "w.yaml").expect("maps");
    let got: Vec<String> = roadie_spec::lint_workflow(&wf, &maps[0])
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        got,
        vec!["w.yaml:11:19: error: step 's' runs undefined template 'gone'"]
    );
}

#[test]
fn all_problems_are_reported_in_source_order() {
    let src = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  name: w\nspec:\n  entrypoint: main\n  onExit: bye\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - name: b\n        template: x\n        dependencies: [a]\n      - name: a\n        template: main\n        dependencies: [b]\n  - name: main\n";
    let got = shown(src);
    let positions: Vec<(u64, u64)> = lint(src, "f.yaml")
        .iter()
        .map(|d| (d.position.line, d.position.column))
        .collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
    assert_eq!(
        got,
        vec![
            "f.yaml:7:11: error: onExit template 'bye' is not defined",
            "f.yaml:13:19: error: task 'b' runs undefined template 'x'",
            "f.yaml:17:24: error: dependency cycle: a -> b -> a",
            "f.yaml:18:11: error: duplicate template name 'main' (first defined on line 9)",
            "f.yaml:18:11: error: template 'main' has no body: set one of container, containerSet, steps, script, resource, dag, suspend, data, http, plugin",
        ]
    );
}
