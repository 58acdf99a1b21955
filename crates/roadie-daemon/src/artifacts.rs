//! The local artifact repository: where the engine's artifact keys live on disk.
//!
//! Every key of a profile's workflows is a path under `<profile>/artifacts/`: a file (a
//! tar+gzip archive, or a raw file with `archive: {none: {}}`) or a directory tree. Keys
//! are global to the profile, as keys in Argo's default bucket are, so a key-only artifact
//! written by one workflow can be read by another. The engine has already checked that
//! keys are relative and have no `..`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use roadie_engine::{Archive, ArtifactOutcome, ArtifactSource, InputArtifact, OutputArtifact};
use roadie_runtime::{ArtifactArchive, ArtifactData, ArtifactIn, ArtifactOut, ArtifactSaved};
use roadie_store::Profile;

/// The repository directory of a profile.
pub fn repository(profile: &Profile) -> PathBuf {
    profile.dir.join("artifacts")
}

/// The path of a key in the repository.
fn key_path(repo: &Path, key: &str) -> PathBuf {
    repo.join(key.trim_start_matches('/'))
}

/// The keys of the files under `key` (a `data` template's source), sorted:
/// the key itself when it is a file, every file below it when it is a
/// directory (symbolic links are not followed). A key that does not exist
/// lists nothing, as an empty bucket prefix does.
pub fn list(repo: &Path, key: &str) -> Result<Vec<String>, String> {
    let root = key_path(repo, key);
    let prefix = key.trim_start_matches('/').trim_end_matches('/');
    let mut found = Vec::new();
    let mut dirs = vec![(root, prefix.to_string())];
    while let Some((dir, at)) = dirs.pop() {
        let meta = match std::fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read artifact key '{at}': {e}")),
        };
        if !meta.is_dir() {
            found.push(at);
            continue;
        }
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list artifact key '{at}': {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list artifact key '{at}': {e}"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if at.is_empty() {
                name
            } else {
                format!("{at}/{name}")
            };
            dirs.push((entry.path(), child));
        }
    }
    found.sort();
    Ok(found)
}

/// What the runtime must place, from the engine's plan.
pub fn inputs(repo: &Path, planned: Vec<InputArtifact>) -> Vec<ArtifactIn> {
    planned
        .into_iter()
        .map(|a| ArtifactIn {
            name: a.name,
            dest: PathBuf::from(a.path),
            source: match a.source {
                ArtifactSource::Key(k) => ArtifactData::Path(key_path(repo, &k)),
                ArtifactSource::Raw(d) => ArtifactData::Raw(d),
            },
            sub_path: a.sub_path.map(PathBuf::from),
            optional: a.optional,
            mode: a.mode,
        })
        .collect()
}

/// What the runtime must save, from the engine's plan.
pub fn outputs(repo: &Path, planned: Vec<OutputArtifact>) -> Vec<ArtifactOut> {
    planned
        .into_iter()
        .map(|a| ArtifactOut {
            name: a.name,
            src: PathBuf::from(a.path),
            dest: key_path(repo, &a.key),
            archive: match a.archive {
                Archive::None => ArtifactArchive::None,
                Archive::TarGz { level } => ArtifactArchive::TarGz(level.unwrap_or(6)),
            },
        })
        .collect()
}

/// The emptyDir volumes of a step: each volume key is a directory under
/// `<profile>/volumes/`.
pub fn mounts(
    profile: &Profile,
    planned: Vec<roadie_engine::VolumeMount>,
) -> Vec<roadie_runtime::Mount> {
    let root = profile.dir.join("volumes");
    planned
        .into_iter()
        .map(|m| roadie_runtime::Mount {
            source: key_path(&root, &m.volume),
            target: PathBuf::from(m.mount_path),
            read_only: m.read_only,
            scratch: false,
        })
        .collect()
}

/// `ROADIE_PRIVATE_DIRS`: directories (`:`-separated, e.g. `/tmp:/mnt`) that each step gets
/// a private, empty copy of, as each pod has its own `/tmp`. Off by default: host steps
/// that pass files through `/tmp` keep working. Needs root (see `roadie_runtime::Mount`).
pub fn private_dirs_from_env() -> Vec<PathBuf> {
    std::env::var_os("ROADIE_PRIVATE_DIRS")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| p.is_absolute() && p.parent().is_some())
                .collect()
        })
        .unwrap_or_default()
}

/// The scratch mounts of one step attempt for `private` directories, under
/// `<profile>/state/scratch/<node>/`. A directory that holds the profile, roadie's
/// working directory or the step's is skipped: the step (or roadie) needs the real one.
pub fn scratch_mounts(
    profile: &Profile,
    private: &[PathBuf],
    node: &str,
    working_dir: Option<&Path>,
) -> Vec<roadie_runtime::Mount> {
    let cwd = std::env::current_dir().ok();
    let holds = |dir: &Path, p: Option<&Path>| p.is_some_and(|p| p.starts_with(dir));
    private
        .iter()
        .filter(|d| {
            !holds(d, Some(&profile.dir)) && !holds(d, cwd.as_deref()) && !holds(d, working_dir)
        })
        .map(|d| {
            let name: String = d
                .to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            roadie_runtime::Mount {
                source: profile
                    .state_dir()
                    .join("scratch")
                    .join(node.replace('/', "_"))
                    .join(name),
                target: d.clone(),
                read_only: false,
                scratch: true,
            }
        })
        .collect()
}

/// The init containers or sidecars of a step in the runtime's terms. Each gets its own
/// scratch copies of the private directories (each container of a pod has its own `/tmp`)
/// and shares the step's volumes; its log sits next to the step's
/// (`roadie_runtime::container_log_path`), where `roadie logs --container` looks.
pub fn containers(
    profile: &Profile,
    private: &[PathBuf],
    node: &str,
    main_log: &Path,
    planned: Vec<roadie_engine::ContainerLaunch>,
) -> Vec<roadie_runtime::ContainerLaunch> {
    planned
        .into_iter()
        .map(|c| {
            let working_dir = c.working_dir.map(PathBuf::from);
            let mut mounts = scratch_mounts(
                profile,
                private,
                &format!("{node}.{}", c.name),
                working_dir.as_deref(),
            );
            mounts.extend(self::mounts(profile, c.mounts));
            roadie_runtime::ContainerLaunch {
                log_path: roadie_runtime::container_log_path(main_log, &c.name),
                name: c.name,
                argv: c.argv,
                env: c.env,
                working_dir,
                mounts,
            }
        })
        .collect()
}

/// The runtime's outcomes in the engine's terms.
pub fn outcomes(saved: BTreeMap<String, ArtifactSaved>) -> BTreeMap<String, ArtifactOutcome> {
    saved
        .into_iter()
        .map(|(k, v)| {
            let o = match v {
                ArtifactSaved::Saved => ArtifactOutcome::Saved,
                ArtifactSaved::Missing => ArtifactOutcome::Missing,
                ArtifactSaved::Failed(m) => ArtifactOutcome::Failed(m),
            };
            (k, o)
        })
        .collect()
}
