//! `roadie`: the command line. Thin: it parses arguments and calls the
//! layers (spec for lint, engine + runtime + store for runs, store for queries).

mod cache_cmd;
mod commands;
mod cron_cmd;
mod daemon_cmd;
mod input;
mod orphans;
mod queue_cmd;
mod render;
mod runner;
mod template_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for usage and lint errors (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "roadie",
    version,
    about = "Run Argo Workflows on this machine, with first-class daemon steps",
    long_about = "roadie runs workflows written in the Argo Workflows YAML format (the same files, \
and the files Hera writes) without Kubernetes. Steps run as host processes; daemon steps are \
started, probed until ready, published as {{steps.NAME.ip}} and torn down when the template \
that started them ends. Every run is recorded in the profile's SQLite store.",
    after_help = "Examples:\n  roadie run workflow.yaml -p message=hi\n  roadie list\n  roadie get daemon-step-x7k2p\n  roadie logs daemon-step-x7k2p --node consumer\n  roadie lint workflows/*.yaml"
)]
struct Cli {
    /// Profile: an isolated roadie installation (store, logs). Files live under
    /// $ROADIE_HOME (default $XDG_DATA_HOME/roadie or ~/.local/share/roadie).
    #[arg(long, global = true, env = "ROADIE_PROFILE")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable tree or table.
    Wide,
    /// Argo-shaped JSON.
    Json,
    /// Argo-shaped YAML.
    Yaml,
    /// Only the name.
    Name,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow to completion on this machine, showing its node tree live.
    #[command(
        after_help = "Examples:\n  roadie run daemon-step.yaml\n  roadie run hello.yaml -p message='hello world'\n  roadie run wf.yaml --name nightly-1 -o json > result.json\n\nExit status: 0 if the workflow Succeeded, 1 if it Failed or Errored, 2 on usage or lint errors."
    )]
    Run {
        /// Workflow file (YAML or JSON, kind: Workflow).
        file: String,
        /// Set a workflow parameter (spec.arguments.parameters); repeatable.
        #[arg(short = 'p', long = "parameter", value_name = "NAME=VALUE")]
        parameters: Vec<String>,
        /// Name of this run (default: metadata.name, or generateName plus 5 random characters).
        #[arg(long)]
        name: Option<String>,
        /// After the run, print the workflow in this format instead of the summary.
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
        /// Print nothing but errors: the exit code tells the outcome (0: Succeeded).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check workflow files and report every problem as file:line:col.
    #[command(
        after_help = "Examples:\n  roadie lint workflow.yaml\n  roadie lint examples/*.yaml\n\nExit status: 0 when clean (warnings allowed), 1 when problems were found, 2 when a file cannot be read."
    )]
    Lint {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// List recorded workflows, newest first.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  roadie list\n  roadie list --running\n  roadie list -o json"
    )]
    List {
        /// Only workflows still running.
        #[arg(long)]
        running: bool,
        /// Only workflows that finished.
        #[arg(long)]
        completed: bool,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "wide")]
        output: OutputFormat,
    },
    /// Show a workflow: its node tree with phases, durations, messages, daemon addresses.
    #[command(
        after_help = "Examples:\n  roadie get daemon-step-x7k2p\n  roadie get daemon-step-x7k2p -o json | jq .status.phase\n  roadie get @latest"
    )]
    Get {
        /// Workflow name or uid (`@latest` for the newest).
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value = "wide")]
        output: OutputFormat,
    },
    /// Print the logs of a workflow's steps.
    #[command(
        after_help = "Examples:\n  roadie logs daemon-step-x7k2p\n  roadie logs daemon-step-x7k2p --node consumer\n  roadie logs sidecar-x7k2p --container nginx\n  roadie logs @latest --follow"
    )]
    Logs {
        /// Workflow name or uid (`@latest` for the newest).
        name: String,
        /// Only this node (display name, node name or node ID).
        #[arg(long)]
        node: Option<String>,
        /// Which container of each step: `main` (the template's own), or the name of one
        /// of its `initContainers` or `sidecars`, as `argo logs POD -c NAME`.
        #[arg(short, long, default_value = "main")]
        container: String,
        /// Keep printing new lines until the workflow ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Delete recorded workflows and their logs.
    #[command(
        after_help = "Examples:\n  roadie delete daemon-step-x7k2p\n  roadie delete --completed"
    )]
    Delete {
        /// Workflow names or uids.
        names: Vec<String>,
        /// Delete every finished workflow.
        #[arg(long)]
        completed: bool,
    },
    /// Manage the profile's daemon: a background supervisor and its workers.
    #[command(
        after_help = "Examples:\n  roadie daemon start --workers 2\n  roadie daemon status\n  roadie daemon incr 2\n  roadie daemon logs --follow\n  roadie daemon stop"
    )]
    Daemon(daemon_cmd::DaemonArgs),
    /// Queue a workflow for the daemon's workers (it runs once the daemon runs).
    #[command(
        after_help = "Examples:\n  roadie submit workflow.yaml -p message=hi\n  roadie submit workflow.yaml --wait\n  roadie submit workflow.yaml --watch\n  for i in $(seq 100); do roadie submit sim.yaml -p seed=$i; done\n\nExit status with --wait/--watch: 0 if the workflow Succeeded, 1 otherwise; 2 on bad input."
    )]
    Submit {
        /// Workflow file (YAML or JSON, kind: Workflow).
        file: String,
        /// Set a workflow parameter; repeatable.
        #[arg(short = 'p', long = "parameter", value_name = "NAME=VALUE")]
        parameters: Vec<String>,
        /// Name of the workflow (default: metadata.name, or generateName plus 5 random characters).
        #[arg(long)]
        name: Option<String>,
        /// Show the node tree live until the workflow ends.
        #[arg(long, conflicts_with = "wait")]
        watch: bool,
        /// Return once the workflow ends; the exit status tells how.
        #[arg(long)]
        wait: bool,
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
    },
    /// Wait for workflows to end; exit 0 only if all Succeeded.
    #[command(
        after_help = "Examples:\n  roadie wait my-wf-x7k2p\n  roadie wait $(roadie submit wf.yaml)"
    )]
    Wait {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop running workflows: steps get SIGTERM, exit handlers still run.
    #[command(after_help = "Examples:\n  roadie stop my-wf-x7k2p")]
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Terminate running workflows: like stop, without exit handlers.
    #[command(after_help = "Examples:\n  roadie terminate my-wf-x7k2p")]
    Terminate {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Suspend workflows: running steps go on, no new step starts.
    #[command(after_help = "Examples:\n  roadie suspend my-wf-x7k2p\n  roadie resume my-wf-x7k2p")]
    Suspend {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Resume suspended workflows, or one suspend node with --node.
    #[command(
        after_help = "Examples:\n  roadie resume my-wf-x7k2p\n  roadie resume my-wf-x7k2p --node approve"
    )]
    Resume {
        #[arg(required = true)]
        names: Vec<String>,
        /// Only this suspend node (display name, node name or ID).
        #[arg(long)]
        node: Option<String>,
    },
    /// Set output parameters of a waiting suspend node (those declared with valueFrom.supplied).
    #[command(
        after_help = "Examples:\n  roadie set my-wf-x7k2p --node approve --output-parameter message=yes\n  roadie set my-wf-x7k2p --node-field-selector displayName=approve --output-parameter message=yes\n  roadie resume my-wf-x7k2p"
    )]
    Set {
        /// Workflow name or uid.
        name: String,
        /// The suspend node (display name, node name or ID).
        #[arg(long, required_unless_present = "node_field_selector")]
        node: Option<String>,
        /// Argo's form: `displayName=NODE` (also `name=` or `id=`).
        #[arg(long, conflicts_with = "node")]
        node_field_selector: Option<String>,
        /// NAME=VALUE; repeatable.
        #[arg(long = "output-parameter", value_name = "NAME=VALUE", required = true)]
        output_parameters: Vec<String>,
    },
    /// Re-run the failed steps of Failed/Error workflows (and the daemons they need).
    #[command(after_help = "Examples:\n  roadie retry my-wf-x7k2p")]
    Retry {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Submit finished workflows again, as new workflows.
    #[command(after_help = "Examples:\n  roadie resubmit my-wf-x7k2p")]
    Resubmit {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Store, list, show and delete WorkflowTemplates (used by templateRef and workflowTemplateRef).
    #[command(
        subcommand,
        after_help = "Examples:\n  roadie template create print-message.yaml\n  roadie template list\n  roadie template get print-message -o json\n  roadie template delete print-message"
    )]
    Template(template_cmd::TemplateCommand),
    /// Store, list, show and delete ClusterWorkflowTemplates (templateRef with clusterScope: true).
    #[command(
        subcommand,
        after_help = "Examples:\n  roadie cluster-template create print-message.yaml\n  roadie cluster-template list"
    )]
    ClusterTemplate(template_cmd::TemplateCommand),
    /// Store, list, show, delete, suspend and resume CronWorkflows: the daemon starts their workflows on schedule.
    #[command(
        subcommand,
        after_help = "Examples:\n  roadie cron create nightly.yaml\n  roadie cron list\n  roadie cron get nightly -o yaml\n  roadie cron suspend nightly\n  roadie cron resume nightly\n  roadie cron delete nightly\n\nThe daemon (`roadie daemon start`) must run for workflows to start."
    )]
    Cron(cron_cmd::CronCommand),
    /// List and clear the memoization caches (`memoize`) kept in the profile's store.
    #[command(
        subcommand,
        after_help = "Examples:\n  roadie cache list\n  roadie cache list my-cache -o json\n  roadie cache delete my-cache some-key\n  roadie cache delete my-cache"
    )]
    Cache(cache_cmd::CacheCommand),
}

/// Lints a workflow file, checking expr-lang expressions too.
pub fn lint_file(src: &str, file: &str) -> Vec<roadie_spec::Diagnostic> {
    let check = |e: &str| roadie_expr::check_expr(e).map_err(|err| err.to_string());
    roadie_spec::lint_with(
        src,
        file,
        roadie_spec::LintOptions {
            check_expr: Some(&check),
        },
    )
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our
    // output goes away (`roadie list | head`) instead of failing on EPIPE.
    // SAFETY: setting a signal disposition to its default at start-up,
    // before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let profile = cli.profile.clone();
    let result = match cli.command {
        Command::Run {
            file,
            parameters,
            name,
            output,
            quiet,
        } => runner::run_command(profile.as_deref(), &file, &parameters, name, output, quiet),
        Command::Lint { files } => commands::lint(&files),
        Command::List {
            running,
            completed,
            limit,
            output,
        } => commands::list(profile.as_deref(), running, completed, limit, output),
        Command::Get { name, output } => commands::get(profile.as_deref(), &name, output),
        Command::Logs {
            name,
            node,
            container,
            follow,
        } => commands::logs(
            profile.as_deref(),
            &name,
            node.as_deref(),
            &container,
            follow,
        ),
        Command::Delete { names, completed } => {
            commands::delete(profile.as_deref(), &names, completed)
        }
        Command::Daemon(args) => daemon_cmd::run(profile.as_deref(), args),
        Command::Submit {
            file,
            parameters,
            name,
            watch,
            wait,
            output,
        } => queue_cmd::submit(
            profile.as_deref(),
            &file,
            &parameters,
            name,
            watch,
            wait,
            output,
        ),
        Command::Wait { names } => queue_cmd::wait(profile.as_deref(), &names),
        Command::Stop { names } => queue_cmd::command(profile.as_deref(), &names, "stop", None),
        Command::Terminate { names } => {
            queue_cmd::command(profile.as_deref(), &names, "terminate", None)
        }
        Command::Suspend { names } => {
            queue_cmd::command(profile.as_deref(), &names, "suspend", None)
        }
        Command::Resume { names, node } => {
            queue_cmd::command(profile.as_deref(), &names, "resume", node.as_deref())
        }
        Command::Set {
            name,
            node,
            node_field_selector,
            output_parameters,
        } => queue_cmd::set(
            profile.as_deref(),
            &name,
            node.or(node_field_selector).as_deref().unwrap_or_default(),
            &output_parameters,
        ),
        Command::Retry { names } => queue_cmd::retry(profile.as_deref(), &names),
        Command::Resubmit { names } => queue_cmd::resubmit(profile.as_deref(), &names),
        Command::Template(cmd) => template_cmd::run(
            profile.as_deref(),
            roadie_store::TemplateKind::WorkflowTemplate,
            cmd,
        ),
        Command::Cron(cmd) => cron_cmd::run(profile.as_deref(), cmd),
        Command::Cache(cmd) => cache_cmd::run(profile.as_deref(), cmd),
        Command::ClusterTemplate(cmd) => template_cmd::run(
            profile.as_deref(),
            roadie_store::TemplateKind::ClusterWorkflowTemplate,
            cmd,
        ),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
