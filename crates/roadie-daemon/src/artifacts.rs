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
