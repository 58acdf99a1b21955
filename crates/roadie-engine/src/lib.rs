//! Layer `engine`: roadie's pure workflow state machine.
//!
//! Given a workflow, its node tree and an event (a step started, a probe
//! answered, a step exited, time passed, a stop was asked for), the engine
//! updates the Argo-shaped node tree and hands back the actions to take
//! (start a step, probe it, signal it). It does no IO and has no clock: time
//! is an argument of every call. The driver (the `roadie` binary's runner,
//! later the daemon's workers) owns processes, sockets, timers and the store.
//!
//! ```
//! use roadie_engine::{WorkflowRun, RunOptions, Action, Event};
//! let wf = roadie_spec::parse_workflow(
//!     "metadata: {name: hello}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    container: {image: x, command: [echo, hi]}\n",
//!     "hello.yaml").unwrap();
//! let now = chrono::Utc::now();
//! let mut run = WorkflowRun::new(wf, RunOptions::default(), now).unwrap();
//! let Some(Action::StartStep(step)) = run.poll_action() else { panic!() };
//! assert_eq!(step.argv, ["echo", "hi"]);
//! run.handle(now, Event::StepStarted { node: step.node.clone(), ip: "127.0.0.1".into() });
//! let exit = roadie_engine::StepExit { code: Some(0), stdout: "hi".into(), ..Default::default() };
//! run.handle(now, Event::StepExited { node: step.node, exit });
//! assert_eq!(run.status().phase, roadie_spec::WorkflowPhase::Succeeded);
//! ```
//!
//! Every scheduling rule lives here: steps groups, DAG dependencies, loops,
//! `when`, retries and backoff, deadlines, parallelism, exit handlers, and the
//! daemon-step rules of DESIGN.md (fulfilled on readiness, address published,
//! torn down when the directly enclosing steps/DAG node is done, never
//! outliving the workflow, retried when they exit by themselves).

mod artifacts;
mod globals;
mod ids;
mod images;
mod library;
mod run;
mod scope;
mod sidecars;
mod volumes;

pub use artifacts::{Archive, ArtifactOutcome, ArtifactSource, InputArtifact, OutputArtifact};
pub use ids::node_id;
pub use images::{ImageDefaults, container_argv, image_defaults};
pub use library::{apply_workflow_template_ref, resolve_ref};
pub use run::*;
pub use sidecars::ContainerLaunch;
pub use volumes::VolumeMount;
