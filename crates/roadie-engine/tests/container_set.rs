//! `containerSet` templates: one Pod node with a Container child per container,
//! started in `dependencies` order; outputs from the container named `main`.

use std::collections::BTreeMap;

use roadie_engine::{Event, StepExit, StepLaunch};
use roadie_spec::{NodePhase, NodeType, WorkflowPhase};

mod lite;

use lite::Sim;

impl Sim {
    fn launched_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.launched.iter().map(|l| l.name.clone()).collect();
        v.sort();
        v
    }

    fn run_ok(&mut self, suffix: &str, stdout: &str) {
        let l = self.take_launch(suffix);
        self.exit_with(&l, 0, stdout);
    }

    fn exit_with(&mut self, l: &StepLaunch, code: i32, stdout: &str) {
        self.run.handle(
            self.now,
            Event::StepStarted {
                node: l.node.clone(),
                ip: "127.0.0.1".into(),
            },
        );
        self.run.handle(
            self.now,
            Event::StepExited {
                node: l.node.clone(),
                exit: StepExit {
                    code: Some(code),
                    stdout: stdout.into(),
                    ..Default::default()
                },
            },
        );
        self.drain();
    }
}

const GRAPH: &str = r#"
metadata: {name: cs}
spec:
  entrypoint: main
  templates:
  - name: main
    containerSet:
      containers:
      - {name: a, image: x, command: [echo, a]}
      - {name: b, image: x, command: [echo, 2, true], dependencies: [a]}
      - {name: c, image: x, command: [echo, c], dependencies: [a]}
      - {name: d, image: x, command: [echo, d], dependencies: [b, c]}
"#;

#[test]
fn containers_start_in_dependency_order_as_container_children_of_a_pod_node() {
    let mut sim = Sim::new(GRAPH);
    assert_eq!(sim.launched_names(), ["cs.a"]);
    let set = sim.node("cs");
    assert_eq!(set.node_type, NodeType::Pod);
    assert_eq!(set.phase, NodePhase::Running);
    sim.run_ok("cs.a", "a");
    assert_eq!(sim.launched_names(), ["cs.b", "cs.c"]);
    let b = sim.launched.iter().find(|l| l.name == "cs.b").expect("b");
    assert_eq!(
        b.argv,
        ["echo", "2", "true"],
        "scalars are strings, as in Kubernetes"
    );
    sim.run_ok("cs.b", "b");
    assert_eq!(sim.launched_names(), ["cs.c"], "d waits for c");
    sim.run_ok("cs.c", "c");
    sim.run_ok("cs.d", "d");
    let set = sim.node("cs");
    assert_eq!(set.phase, NodePhase::Succeeded);
    assert_eq!(set.children.len(), 4);
    for name in ["a", "b", "c", "d"] {
        let n = sim.node(&format!("cs.{name}"));
        assert_eq!(n.node_type, NodeType::Container);
        assert_eq!(n.display_name, name);
        assert_eq!(n.phase, NodePhase::Succeeded);
    }
    assert_eq!(sim.run.status().phase, WorkflowPhase::Succeeded);
}

#[test]
fn a_failed_container_fails_the_set_and_its_dependents_do_not_run() {
    let mut sim = Sim::new(GRAPH);
    let a = sim.take_launch("cs.a");
    sim.exit_with(&a, 3, "");
    assert!(sim.launched.is_empty());
    for name in ["b", "c", "d"] {
        assert_eq!(
            sim.node(&format!("cs.{name}")).phase,
            NodePhase::Omitted,
            "{name}"
        );
    }
    let set = sim.node("cs");
    assert_eq!(set.phase, NodePhase::Failed);
    assert!(
        set.message
            .as_deref()
            .is_some_and(|m| m.contains("container 'a'")),
        "{:?}",
        set.message
    );
    assert_eq!(sim.run.status().phase, WorkflowPhase::Failed);
}

#[test]
fn outputs_come_from_main_which_runs_after_the_others_when_outputs_are_declared() {
    let yaml = r#"
metadata: {name: out}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: set, template: set}
      - name: check
        template: check
        dependencies: [set]
        arguments:
          parameters: [{name: x, value: "{{tasks.set.outputs.result}}/{{tasks.set.outputs.parameters.p}}"}]
  - name: set
    containerSet:
      containers:
      - {name: a, image: x, command: [sh, -c, "echo hi > /tmp/ws/out"]}
      - {name: main, image: x, command: [echo, from-main]}
    outputs:
      parameters:
      - name: p
        valueFrom: {path: /tmp/ws/out}
  - name: check
    inputs: {parameters: [{name: x}]}
    container: {image: x, command: [echo, "{{inputs.parameters.x}}"]}
"#;
    let mut sim = Sim::new(yaml);
    assert_eq!(
        sim.launched_names(),
        ["out.set.a"],
        "main waits: outputs are read when it exits"
    );
    sim.run_ok("set.a", "");
    let main = sim.take_launch("set.main");
    assert_eq!(
        main.output_files,
        [("p".to_string(), "/tmp/ws/out".to_string())]
    );
    sim.run.handle(
        sim.now,
        Event::StepStarted {
            node: main.node.clone(),
            ip: "127.0.0.1".into(),
        },
    );
    let mut outputs = BTreeMap::new();
    outputs.insert("p".to_string(), Some("hi".to_string()));
    sim.run.handle(
        sim.now,
        Event::StepExited {
            node: main.node.clone(),
            exit: StepExit {
                code: Some(0),
                stdout: "from-main".into(),
                outputs,
                ..Default::default()
            },
        },
    );
    sim.drain();
    let check = sim.take_launch(".check");
    assert_eq!(check.argv, ["echo", "from-main/hi"]);
}

#[test]
fn unknown_dependencies_and_cycles_are_errors_naming_the_container() {
    let bad = GRAPH.replace(
        "dependencies: [a]}\n      - {name: c",
        "dependencies: [zz]}\n      - {name: c",
    );
    let sim = Sim::new(&bad);
    let set = sim.node("cs");
    assert_eq!(set.phase, NodePhase::Error);
    assert!(
        set.message.as_deref().is_some_and(|m| m.contains("'zz'")),
        "{:?}",
        set.message
    );
    let cycle = GRAPH.replace(
        "{name: a, image: x, command: [echo, a]}",
        "{name: a, image: x, command: [echo, a], dependencies: [d]}",
    );
    let sim = Sim::new(&cycle);
    assert!(
        sim.node("cs")
            .message
            .as_deref()
            .is_some_and(|m| m.contains("cycle"))
    );
}

#[test]
fn empty_dir_volumes_are_shared_by_the_containers_of_a_set_and_private_to_each_pod() {
    let yaml = r#"
metadata: {name: vol}
spec:
  entrypoint: main
  volumes:
  - {name: wide, emptyDir: {}}
  - {name: claim, persistentVolumeClaim: {claimName: x}}
  templates:
  - name: main
    steps:
    - - {name: set, template: set}
      - {name: solo, template: solo}
  - name: set
    volumes:
    - {name: work, emptyDir: {}}
    containerSet:
      volumeMounts:
      - {name: work, mountPath: /workspace}
      containers:
      - {name: a, image: x, command: [echo]}
      - name: b
        image: x
        command: [echo]
        volumeMounts:
        - {name: wide, mountPath: /wide, readOnly: true}
        - {name: claim, mountPath: /claim}
  - name: solo
    container:
      image: x
      command: [echo]
      volumeMounts:
      - {name: wide, mountPath: /wide}
"#;
    let mut sim = Sim::new(yaml);
    let set_id = sim.node("[0].set").id.clone();
    let a = sim.take_launch("set.a");
    let b = sim.take_launch("set.b");
    let solo = sim.take_launch(".solo");
    let shared = roadie_engine::VolumeMount {
        volume: format!("vol/{set_id}/work"),
        mount_path: "/workspace".into(),
        read_only: false,
    };
    assert_eq!(a.mounts, std::slice::from_ref(&shared));
    let wide = roadie_engine::VolumeMount {
        volume: format!("vol/{set_id}/wide"),
        mount_path: "/wide".into(),
        read_only: true,
    };
    // Only emptyDir volumes are mounted; the claim is the host's path.
    assert_eq!(b.mounts, [wide, shared]);
    assert_eq!(
        solo.mounts,
        [roadie_engine::VolumeMount {
            volume: format!("vol/{}/wide", solo.node),
            mount_path: "/wide".into(),
            read_only: false,
        }]
    );
}

#[test]
fn a_stop_between_containers_ends_the_set() {
    let mut sim = Sim::new(GRAPH);
    sim.run
        .stop(sim.now, roadie_engine::StopMode::Stop, "stopped by user");
    sim.drain();
    // `a` was already launched: it ends (the driver reports its exit) and nothing else starts.
    sim.run_ok("cs.a", "a");
    assert!(sim.launched.is_empty(), "{:?}", sim.launched_names());
    assert!(
        sim.run.is_completed(),
        "the workflow ends; nodes: {:?}",
        sim.run
            .status()
            .nodes
            .values()
            .map(|n| format!("{} {}", n.name, n.phase))
            .collect::<Vec<_>>()
    );
}
