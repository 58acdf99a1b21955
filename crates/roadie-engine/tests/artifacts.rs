//! Artifact rules of the engine: what a pod must place and save, how outputs
//! are recorded, and how `from` finds them for later steps. No IO: the test
//! plays the driver and reports which outputs were saved.

use std::collections::BTreeMap;

use roadie_engine::{Archive, ArtifactOutcome, ArtifactSource, Event, StepExit, StepLaunch};
use roadie_spec::{NodePhase, WorkflowPhase};

mod lite;

use lite::Sim;

impl Sim {
    /// Start and exit 0, reporting these artifact outcomes.
    fn finish(&mut self, launch: &StepLaunch, artifacts: &[(&str, ArtifactOutcome)]) {
        self.run.handle(
            self.now,
            Event::StepStarted {
                node: launch.node.clone(),
                ip: "127.0.0.1".into(),
            },
        );
        let artifacts: BTreeMap<String, ArtifactOutcome> = artifacts
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.run.handle(
            self.now,
            Event::StepExited {
                node: launch.node.clone(),
                exit: StepExit {
                    code: Some(0),
                    artifacts,
                    ..Default::default()
                },
            },
        );
        self.drain();
    }
}

const PASSING: &str = r#"
metadata: {name: ap}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: gen
        template: gen
    - - name: use
        template: use
        arguments:
          artifacts:
          - name: message
            from: "{{steps.gen.outputs.artifacts.hello}}"
  - name: gen
    container: {image: busybox, command: [sh, -c, "echo hi > /tmp/hello.txt"]}
    outputs:
      artifacts:
      - name: hello
        path: /tmp/hello.txt
  - name: use
    inputs:
      artifacts:
      - name: message
        path: /tmp/message
    container: {image: busybox, command: [cat, /tmp/message]}
"#;

#[test]
fn output_artifact_is_saved_under_the_default_key_and_passed_with_from() {
    let mut sim = Sim::new(PASSING);
    let gen_launch = sim.take_launch(".gen");
    assert!(gen_launch.input_artifacts.is_empty());
    let [out] = gen_launch.output_artifacts.as_slice() else {
        panic!("one output artifact: {:?}", gen_launch.output_artifacts)
    };
    assert_eq!(out.name, "hello");
    assert_eq!(out.path, "/tmp/hello.txt");
    assert_eq!(out.key, format!("ap/{}/hello.tgz", gen_launch.node));
    assert_eq!(out.archive, Archive::TarGz { level: None });
    let key = out.key.clone();
    sim.finish(&gen_launch, &[("hello", ArtifactOutcome::Saved)]);

    let gen_node = sim.node(".gen");
    let arts = &gen_node.outputs.as_ref().expect("outputs").artifacts;
    assert_eq!(
        arts,
        &vec![serde_json::json!({"name": "hello", "path": "/tmp/hello.txt", "s3": {"key": key}})]
    );

    let use_launch = sim.take_launch(".use");
    let [input] = use_launch.input_artifacts.as_slice() else {
        panic!("one input artifact: {:?}", use_launch.input_artifacts)
    };
    assert_eq!(input.path, "/tmp/message");
    assert_eq!(input.source, ArtifactSource::Key(key));
    sim.finish(&use_launch, &[]);
    assert_eq!(sim.run.status().phase, WorkflowPhase::Succeeded);
}

#[test]
fn a_missing_output_artifact_is_an_error_unless_optional() {
    let mut sim = Sim::new(PASSING);
    let gen_launch = sim.take_launch(".gen");
    sim.finish(&gen_launch, &[("hello", ArtifactOutcome::Missing)]);
    let gen_node = sim.node(".gen");
    assert_eq!(gen_node.phase, NodePhase::Error);
    assert!(
        gen_node
            .message
            .as_deref()
            .is_some_and(|m| m.contains("output artifact 'hello'") && m.contains("/tmp/hello.txt")),
        "{:?}",
        gen_node.message
    );
    assert_ne!(sim.run.status().phase, WorkflowPhase::Succeeded);

    let optional = PASSING.replace(
        "path: /tmp/hello.txt\n",
        "path: /tmp/hello.txt\n        optional: true\n",
    );
    let mut sim = Sim::new(&optional);
    let gen_launch = sim.take_launch(".gen");
    sim.finish(&gen_launch, &[("hello", ArtifactOutcome::Missing)]);
    assert_eq!(sim.node(".gen").phase, NodePhase::Succeeded);
    // The consumer's input has nothing to come from: an error naming it.
    assert_eq!(sim.node(".use").phase, NodePhase::Error);
}

#[test]
fn raw_key_only_archive_none_and_sub_path() {
    let yaml = r#"
metadata: {name: kw}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - name: gen
        template: gen
      - name: use
        template: use
        depends: gen
        arguments:
          artifacts:
          - name: dir
            from: "{{tasks.gen.outputs.artifacts.dir}}"
            subPath: a.txt
          - name: byKey
            s3: {key: "{{workflow.name}}/parts/1.json"}
  - name: gen
    container: {image: x, command: [true]}
    outputs:
      artifacts:
      - name: dir
        path: /tmp/out/
        archive: {none: {}}
      - name: parts
        path: /mnt/out
        archive: {none: {}}
        s3: {key: "{{workflow.name}}/parts/"}
      - name: packed
        path: /tmp/p
        archive: {tar: {compressionLevel: 0}}
  - name: use
    inputs:
      artifacts:
      - name: dir
        path: /tmp/a
      - name: byKey
        path: /mnt/in/part.json
      - name: text
        path: /tmp/raw
        mode: 0600
        raw: {data: "hello {{workflow.name}}"}
      - name: maybe
        path: /tmp/maybe
        optional: true
    container: {image: x, command: [cat, "{{inputs.artifacts.text.path}}"]}
"#;
    let mut sim = Sim::new(yaml);
    let gen_launch = sim.take_launch(".gen");
    let keys: Vec<(&str, &str, Archive)> = gen_launch
        .output_artifacts
        .iter()
        .map(|o| (o.name.as_str(), o.key.as_str(), o.archive))
        .collect();
    let dir_key = format!("kw/{}/out", gen_launch.node);
    let packed_key = format!("kw/{}/packed.tgz", gen_launch.node);
    assert_eq!(
        keys,
        vec![
            ("dir", dir_key.as_str(), Archive::None),
            ("parts", "kw/parts", Archive::None),
            (
                "packed",
                packed_key.as_str(),
                Archive::TarGz { level: Some(0) }
            ),
        ]
    );
    sim.finish(
        &gen_launch,
        &[
            ("dir", ArtifactOutcome::Saved),
            ("parts", ArtifactOutcome::Saved),
            ("packed", ArtifactOutcome::Saved),
        ],
    );
    let use_launch = sim.take_launch(".use");
    assert_eq!(use_launch.argv, ["cat", "/tmp/raw"]);
    let inputs: Vec<(&str, &ArtifactSource, Option<&str>, Option<u32>)> = use_launch
        .input_artifacts
        .iter()
        .map(|i| (i.path.as_str(), &i.source, i.sub_path.as_deref(), i.mode))
        .collect();
    assert_eq!(
        inputs,
        vec![
            (
                "/tmp/a",
                &ArtifactSource::Key(dir_key.clone()),
                Some("a.txt"),
                None
            ),
            (
                "/mnt/in/part.json",
                &ArtifactSource::Key("kw/parts/1.json".into()),
                None,
                None
            ),
            (
                "/tmp/raw",
                &ArtifactSource::Raw("hello kw".into()),
                None,
                Some(0o600)
            ),
        ]
    );
}

#[test]
fn steps_template_outputs_artifacts_from_a_child_and_inputs_flow_down() {
    let yaml = r#"
metadata: {name: nest}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: inner
        template: inner
        arguments:
          artifacts:
          - name: seed
            raw: {data: "seed"}
    - - name: use
        template: use
        arguments:
          artifacts:
          - name: in
            from: "{{steps.inner.outputs.artifacts.result}}"
  - name: inner
    inputs:
      artifacts:
      - name: seed
    steps:
    - - name: gen
        template: gen
        arguments:
          artifacts:
          - name: seed
            from: "{{inputs.artifacts.seed}}"
    outputs:
      artifacts:
      - name: result
        from: "{{steps.gen.outputs.artifacts.out}}"
  - name: gen
    inputs:
      artifacts:
      - name: seed
        path: /tmp/seed
    container: {image: x, command: [true]}
    outputs:
      artifacts:
      - name: out
        path: /tmp/out
  - name: use
    inputs:
      artifacts:
      - name: in
        path: /tmp/in
    container: {image: x, command: [true]}
"#;
    let mut sim = Sim::new(yaml);
    let gen_launch = sim.take_launch(".gen");
    assert_eq!(
        gen_launch.input_artifacts[0].source,
        ArtifactSource::Raw("seed".into())
    );
    let key = gen_launch.output_artifacts[0].key.clone();
    sim.finish(&gen_launch, &[("out", ArtifactOutcome::Saved)]);
    let inner = sim.node("[0].inner");
    assert_eq!(
        inner.outputs.as_ref().expect("outputs").artifacts,
        vec![serde_json::json!({"name": "result", "path": "/tmp/out", "s3": {"key": key}})]
    );
    let use_launch = sim.take_launch(".use");
    assert_eq!(
        use_launch.input_artifacts[0].source,
        ArtifactSource::Key(key)
    );
    sim.finish(&use_launch, &[]);
    assert_eq!(sim.run.status().phase, WorkflowPhase::Succeeded);
}

#[test]
fn workflow_argument_artifacts_bind_to_the_entrypoint_and_bad_keys_are_refused() {
    let yaml = r#"
metadata: {name: wa}
spec:
  entrypoint: main
  arguments:
    artifacts:
    - name: text
      raw: {data: "from the workflow"}
  templates:
  - name: main
    inputs:
      artifacts:
      - name: text
        path: /tmp/text
    container: {image: x, command: [cat, /tmp/text]}
    outputs:
      artifacts:
      - name: bad
        path: /tmp/x
        s3: {key: "../outside"}
"#;
    let sim = Sim::new(yaml);
    assert!(sim.launched.is_empty());
    let root = sim.node("wa");
    assert_eq!(root.phase, NodePhase::Error);
    assert!(
        root.message.as_deref().is_some_and(|m| m.contains("'..'")),
        "{:?}",
        root.message
    );
    let ok = yaml.replace("../outside", "inside");
    let mut sim = Sim::new(&ok);
    let l = sim.take_launch("wa");
    assert_eq!(
        l.input_artifacts[0].source,
        ArtifactSource::Raw("from the workflow".into())
    );
}

#[test]
fn steps_outputs_from_expression_pick_the_artifact_of_the_step_that_ran() {
    let yaml = r#"
metadata: {name: cond}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: flip
        template: flip
    - - name: heads
        template: gen
        when: "{{steps.flip.outputs.result}} == heads"
      - name: tails
        template: gen
        when: "{{steps.flip.outputs.result}} == tails"
    outputs:
      artifacts:
      - name: result
        fromExpression: "steps['flip'].outputs.result == 'heads' ? steps.heads.outputs.artifacts.r : steps.tails.outputs.artifacts.r"
  - name: flip
    container: {image: x, command: [echo, tails]}
  - name: gen
    container: {image: x, command: [true]}
    outputs:
      artifacts:
      - name: r
        path: /tmp/r.txt
"#;
    let mut sim = Sim::new(yaml);
    let flip = sim.take_launch(".flip");
    sim.run.handle(
        sim.now,
        Event::StepStarted {
            node: flip.node.clone(),
            ip: "127.0.0.1".into(),
        },
    );
    sim.run.handle(
        sim.now,
        Event::StepExited {
            node: flip.node.clone(),
            exit: StepExit {
                code: Some(0),
                stdout: "tails".into(),
                ..Default::default()
            },
        },
    );
    sim.drain();
    let tails = sim.take_launch(".tails");
    let key = tails.output_artifacts[0].key.clone();
    sim.finish(&tails, &[("r", ArtifactOutcome::Saved)]);
    assert_eq!(sim.run.status().phase, WorkflowPhase::Succeeded);
    let root = sim.node("cond");
    assert_eq!(
        root.outputs.as_ref().expect("outputs").artifacts,
        vec![serde_json::json!({"name": "result", "path": "/tmp/r.txt", "s3": {"key": key}})]
    );
}

#[test]
fn remote_artifact_locations_are_refused_with_their_kind() {
    let yaml = r#"
metadata: {name: remote}
spec:
  entrypoint: main
  templates:
  - name: main
    inputs:
      artifacts:
      - name: src
        path: /src
        git: {repo: "https://example.invalid/x.git"}
    container: {image: x, command: [ls, /src]}
"#;
    let sim = Sim::new(yaml);
    let root = sim.node("remote");
    assert_eq!(root.phase, NodePhase::Error);
    assert!(
        root.message
            .as_deref()
            .is_some_and(|m| m.contains("input artifact 'src'") && m.contains("git artifacts")),
        "{:?}",
        root.message
    );
}
