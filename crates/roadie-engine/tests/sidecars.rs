//! `initContainers` and `sidecars`: planned into the pod's launch (substituted, with their
//! volumes and the pod's grace period); a failed init container is a failed start.

use roadie_engine::{Event, StepExit};
use roadie_spec::{NodePhase, WorkflowPhase};

mod lite;

use lite::Sim;

const POD: &str = r#"
metadata: {name: pod}
spec:
  entrypoint: main
  arguments:
    parameters: [{name: port, value: "8086"}]
  volumes:
  - {name: work, emptyDir: {}}
  templates:
  - name: main
    inputs:
      parameters: [{name: port}]
    podSpecPatch: '{"terminationGracePeriodSeconds": 3}'
    container:
      image: alpine
      command: [sh, -c, "cat /work/ready"]
      volumeMounts: [{name: work, mountPath: /work}]
    initContainers:
    - name: prepare
      image: alpine
      command: [sh, -c]
      args: ["echo {{inputs.parameters.port}} > /work/ready"]
      mirrorVolumeMounts: true
    sidecars:
    - name: db
      image: influxdb:1.2
      env: [{name: PORT, value: "{{inputs.parameters.port}}"}]
      workingDir: /srv
    - name: web
      image: nginx:1.13
      command: [nginx, -g, daemon off;]
"#;

#[test]
fn init_containers_and_sidecars_ride_on_the_pods_launch() {
    let mut sim = Sim::new(POD);
    let launch = sim.take_launch("pod");
    assert_eq!(
        launch.grace_seconds, 3,
        "the pod's terminationGracePeriodSeconds"
    );

    assert_eq!(launch.init_containers.len(), 1);
    let init = &launch.init_containers[0];
    assert_eq!(init.name, "prepare");
    assert_eq!(init.argv, ["sh", "-c", "echo 8086 > /work/ready"]);
    assert_eq!(
        init.mounts, launch.mounts,
        "mirrorVolumeMounts: the main's volumes"
    );
    assert_eq!(init.mounts.len(), 1);
    assert_eq!(init.mounts[0].mount_path, "/work");

    let names: Vec<&str> = launch.sidecars.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["db", "web"], "sidecars keep their order");
    let db = &launch.sidecars[0];
    assert_eq!(
        db.argv,
        ["influxd"],
        "the image's entry point when there is no command"
    );
    assert_eq!(db.env, [("PORT".to_owned(), "8086".to_owned())]);
    assert_eq!(db.working_dir.as_deref(), Some("/srv"));
    assert!(db.mounts.is_empty(), "no mirrorVolumeMounts: no volumes");
    assert_eq!(launch.sidecars[1].argv, ["nginx", "-g", "daemon off;"]);
}

#[test]
fn a_failed_init_container_errors_the_pod() {
    let mut sim = Sim::new(POD);
    let launch = sim.take_launch("pod");
    sim.run.handle(
        sim.now,
        Event::StepStartFailed {
            node: launch.node.clone(),
            message: "init container 'prepare' failed: exit code 3".into(),
        },
    );
    sim.drain();
    let node = sim.node("pod");
    assert_eq!(node.phase, NodePhase::Error);
    assert_eq!(
        node.message.as_deref(),
        Some("init container 'prepare' failed: exit code 3")
    );
    assert!(sim.run.is_completed());
    assert_ne!(sim.run.status().phase, WorkflowPhase::Succeeded);
}

#[test]
fn the_main_containers_exit_decides_the_pod() {
    let mut sim = Sim::new(POD);
    let launch = sim.take_launch("pod");
    sim.run.handle(
        sim.now,
        Event::StepStarted {
            node: launch.node.clone(),
            ip: "127.0.0.1".into(),
        },
    );
    sim.run.handle(
        sim.now,
        Event::StepExited {
            node: launch.node,
            exit: StepExit {
                code: Some(0),
                stdout: "8086".into(),
                ..Default::default()
            },
        },
    );
    sim.drain();
    assert_eq!(sim.run.status().phase, WorkflowPhase::Succeeded);
}

#[test]
fn a_sidecar_without_a_known_command_is_an_error_naming_it() {
    let yaml = r#"
metadata: {name: bad}
spec:
  entrypoint: main
  templates:
  - name: main
    container: {image: alpine, command: [true]}
    sidecars:
    - {name: mystery, image: example.com/unknown:1}
"#;
    let sim = Sim::new(yaml);
    assert!(sim.launched.is_empty());
    let node = sim.node("bad");
    assert_eq!(node.phase, NodePhase::Error);
    let msg = node.message.as_deref().unwrap_or_default();
    assert!(msg.contains("sidecar 'mystery'"), "{msg}");
}
