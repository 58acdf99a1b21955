//! `roadie template` and `roadie cluster-template`: WorkflowTemplates and
//! ClusterWorkflowTemplates kept in the profile's store, for workflows that
//! use them through `templateRef` and `spec.workflowTemplateRef` (as
//! `argo template` and `argo cluster-template` do in a cluster).

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Subcommand;
use roadie_store::{Profile, Store, StoredTemplate, TemplateKind};

use crate::{EXIT_USAGE, OutputFormat};

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Store templates from files (YAML or JSON, one template per file; `template
    /// create` stores a ClusterWorkflowTemplate file as one).
    #[command(
        after_help = "Examples:\n  roadie template create print-message.yaml\n  roadie template create templates/*.yaml\n\nA template of the same name must be deleted first."
    )]
    Create {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// List stored templates.
    #[command(visible_alias = "ls")]
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value = "wide")]
        output: OutputFormat,
    },
    /// Show a stored template (its manifest).
    Get {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
        output: OutputFormat,
    },
    /// Delete stored templates.
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn open(profile: Option<&str>) -> Result<Store> {
    let profile = Profile::resolve(profile)?;
    profile.ensure_dirs()?;
    roadie_daemon::worker::open_store(&profile)
}

/// Runs one `template` (or, with `kind` ClusterWorkflowTemplate, `cluster-template`) subcommand.
pub fn run(profile: Option<&str>, kind: TemplateKind, cmd: TemplateCommand) -> Result<u8> {
    let store = open(profile)?;
    match cmd {
        TemplateCommand::Create { files } => create(&store, kind, &files),
        TemplateCommand::List { output } => list(&store, kind, output),
        TemplateCommand::Get { name, output } => get(&store, kind, &name, output),
        TemplateCommand::Delete { names } => {
            let mut code = 0;
            for name in &names {
                if store.delete_template(kind, name)? {
                    println!("{} {name} deleted", kind.as_str());
                } else {
                    eprintln!("error: {} '{name}' not found", kind.as_str());
                    code = 1;
                }
            }
            Ok(code)
        }
    }
}

fn create(store: &Store, kind: TemplateKind, files: &[String]) -> Result<u8> {
    let mut code = 0;
    for file in files {
        match create_one(store, kind, file) {
            Ok(Some((kind, name))) => println!("{} {name} created", kind.as_str()),
            Ok(None) => code = EXIT_USAGE,
            Err(e) => {
                eprintln!("error: {file}: {e:#}");
                code = code.max(1);
            }
        }
    }
    Ok(code)
}

/// Lints, parses and stores one file; `None` after printing why it is refused.
fn create_one(
    store: &Store,
    kind: TemplateKind,
    file: &str,
) -> Result<Option<(TemplateKind, String)>> {
    let src = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    let mut bad = false;
    for d in crate::lint_file(&src, file) {
        eprintln!("{d}");
        bad |= d.is_error();
    }
    if bad {
        eprintln!("error: {file} has problems; nothing was stored");
        return Ok(None);
    }
    let manifest = match roadie_spec::parse_workflow(&src, file) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return Ok(None);
        }
    };
    // `roadie template create` takes either kind and stores the file under its
    // own kind (as `kubectl apply` would); `cluster-template create` takes
    // only ClusterWorkflowTemplates.
    let kind = match (kind, TemplateKind::parse(&manifest.kind)) {
        (TemplateKind::WorkflowTemplate, Some(k)) => k,
        (TemplateKind::ClusterWorkflowTemplate, Some(TemplateKind::ClusterWorkflowTemplate)) => {
            TemplateKind::ClusterWorkflowTemplate
        }
        (TemplateKind::ClusterWorkflowTemplate, Some(TemplateKind::WorkflowTemplate)) => {
            eprintln!(
                "error: {file}: kind is WorkflowTemplate (store it with `roadie template create`)"
            );
            return Ok(None);
        }
        (k, None) => {
            eprintln!(
                "error: {file}: kind is '{}', expected {}",
                manifest.kind,
                k.as_str()
            );
            return Ok(None);
        }
    };
    let name = match (&manifest.metadata.name, &manifest.metadata.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(prefix)) if !prefix.is_empty() => crate::runner::generated_name(prefix),
        _ => {
            eprintln!("error: {file}: metadata.name is required");
            return Ok(None);
        }
    };
    let mut manifest = manifest;
    manifest.metadata.name = Some(name.clone());
    manifest.metadata.generate_name = None;
    store.create_template(&StoredTemplate {
        kind,
        name: name.clone(),
        manifest,
        created_at: Utc::now(),
    })?;
    Ok(Some((kind, name)))
}

fn list(store: &Store, kind: TemplateKind, output: OutputFormat) -> Result<u8> {
    let rows = store.list_templates(Some(kind))?;
    match output {
        OutputFormat::Json => {
            let items: Vec<_> = rows.iter().map(|t| &t.manifest).collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        OutputFormat::Yaml => {
            let items: Vec<_> = rows.iter().map(|t| &t.manifest).collect();
            print!("{}", serde_saphyr::to_string(&items)?);
        }
        OutputFormat::Name => rows.iter().for_each(|t| println!("{}", t.name)),
        OutputFormat::Wide => {
            let width = rows.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
            println!("{:width$}  {:20}  TEMPLATES", "NAME", "CREATED");
            for t in &rows {
                let names: Vec<&str> = t
                    .manifest
                    .spec
                    .templates
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect();
                println!(
                    "{:width$}  {:20}  {}",
                    t.name,
                    t.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    names.join(",")
                );
            }
        }
    }
    Ok(0)
}

fn get(store: &Store, kind: TemplateKind, name: &str, output: OutputFormat) -> Result<u8> {
    let Some(t) = store.get_template(kind, name)? else {
        eprintln!(
            "error: {} '{name}' not found (see `roadie {} list`)",
            kind.as_str(),
            if kind == TemplateKind::ClusterWorkflowTemplate {
                "cluster-template"
            } else {
                "template"
            }
        );
        return Ok(1);
    };
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&t.manifest)?),
        OutputFormat::Name => println!("{}", t.name),
        OutputFormat::Yaml | OutputFormat::Wide => {
            print!("{}", serde_saphyr::to_string(&t.manifest)?)
        }
    }
    Ok(0)
}
