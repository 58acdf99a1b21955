//! `roadie cache`: the memoization caches (`memoize`) kept in the profile's
//! store. Argo keeps each cache in a ConfigMap and users inspect or clear it
//! with kubectl; here the same is done with `roadie cache list|delete`.

use anyhow::Result;
use chrono::Utc;
use clap::Subcommand;
use roadie_store::{MemoEntry, Profile, Store};

use crate::OutputFormat;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// List cache entries (of one cache, or of all): key, age, the node that produced them.
    #[command(visible_alias = "ls")]
    List {
        /// Only this cache (`memoize.cache.configMap.name`).
        cache: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "wide")]
        output: OutputFormat,
    },
    /// Delete one entry, or every entry of a cache: the next run of a template
    /// with that key runs again.
    #[command(visible_alias = "rm")]
    Delete {
        /// The cache (`memoize.cache.configMap.name`).
        cache: String,
        /// Only this key (default: the whole cache).
        key: Option<String>,
    },
}

/// Runs one `cache` subcommand.
pub fn run(profile: Option<&str>, cmd: CacheCommand) -> Result<u8> {
    let profile = Profile::resolve(profile)?;
    profile.ensure_dirs()?;
    let store: Store = roadie_daemon::worker::open_store(&profile)?;
    match cmd {
        CacheCommand::List { cache, output } => {
            let entries = store.memo_list(cache.as_deref())?;
            print_entries(&entries, output)?;
            Ok(0)
        }
        CacheCommand::Delete { cache, key } => {
            let n = store.memo_delete(&cache, key.as_deref())?;
            match (n, key) {
                (0, Some(key)) => {
                    eprintln!("error: cache '{cache}' has no key '{key}'");
                    Ok(1)
                }
                (0, None) => {
                    eprintln!("error: cache '{cache}' has no entries");
                    Ok(1)
                }
                (_, Some(key)) => {
                    println!("cache {cache}: key {key} deleted");
                    Ok(0)
                }
                (n, None) => {
                    let entries = if n == 1 { "entry" } else { "entries" };
                    println!("cache {cache}: {n} {entries} deleted");
                    Ok(0)
                }
            }
        }
    }
}

fn print_entries(entries: &[MemoEntry], output: OutputFormat) -> Result<()> {
    let json = || {
        serde_json::Value::Array(
            entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "cache": e.cache,
                        "key": e.key,
                        "nodeID": e.node_id,
                        "outputs": e.outputs,
                        "creationTimestamp": e.created_at.to_rfc3339(),
                    })
                })
                .collect(),
        )
    };
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&json())?),
        OutputFormat::Yaml => print!("{}", serde_saphyr::to_string(&json())?),
        OutputFormat::Name => {
            for e in entries {
                println!("{}/{}", e.cache, e.key);
            }
        }
        OutputFormat::Wide => {
            if entries.is_empty() {
                println!("no cache entries");
                return Ok(());
            }
            let now = Utc::now();
            let w_cache = entries
                .iter()
                .map(|e| e.cache.len())
                .max()
                .unwrap_or(0)
                .max(5);
            let w_key = entries
                .iter()
                .map(|e| e.key.len())
                .max()
                .unwrap_or(0)
                .max(3);
            println!(
                "{:<w_cache$}  {:<w_key$}  {:>8}  NODE",
                "CACHE", "KEY", "AGE"
            );
            for e in entries {
                let age = (now - e.created_at).num_seconds().max(0);
                println!(
                    "{:<w_cache$}  {:<w_key$}  {:>8}  {}",
                    e.cache,
                    e.key,
                    crate::render::human_duration(age),
                    e.node_id
                );
            }
        }
    }
    Ok(())
}
