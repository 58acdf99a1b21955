//! Placing input artifacts before a step starts and saving output artifacts after it exits.
//!
//! The runtime knows nothing about artifact repositories or keys: the caller gives source and
//! destination paths (the daemon maps repository keys to files under the profile). The
//! semantics are Argo's executor's:
//! - an input that is a gzip'd tar archive is unpacked; when the archive holds one entry at its
//!   root (what roadie and Argo write for a file or a directory) that entry becomes the path,
//!   otherwise the path is a directory holding every root entry; any other file is copied as
//!   it is, and a directory tree is copied;
//! - an output is saved as one tar+gzip archive of the path (a single root entry named after
//!   the path's base name), or with no archive as the file or directory tree itself.
//!
//! Writes into the destination of an output go through a temporary sibling and a rename, so a
//! reader never sees half an artifact.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One input artifact to place before the step starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactIn {
    /// The artifact's name, for messages.
    pub name: String,
    /// Where the step expects it; relative paths are relative to the step's working directory.
    pub dest: PathBuf,
    /// The content.
    pub source: ArtifactData,
    /// When the content is a tar+gzip archive or a directory: the file or directory inside it
    /// to place (Argo's `subPath`).
    pub sub_path: Option<PathBuf>,
    /// A missing source is skipped instead of failing the start.
    pub optional: bool,
    /// Permission bits for the placed file (Argo's `mode`).
    pub mode: Option<u32>,
}

/// The content of an input artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactData {
    /// A file (a tar+gzip archive is unpacked) or a directory tree.
    Path(PathBuf),
    /// Text written as the file.
    Raw(String),
}

/// One output artifact to save after the step exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactOut {
    /// The artifact's name: the key of [`crate::ExitInfo::artifacts`].
    pub name: String,
    /// What the step wrote; relative paths are relative to the step's working directory.
    pub src: PathBuf,
    /// Where to save it (a file, or a directory tree with [`ArtifactArchive::None`]).
    pub dest: PathBuf,
    /// How to store it.
    pub archive: ArtifactArchive,
}

/// How an output artifact is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactArchive {
    /// One tar archive compressed with gzip at this level (0-9).
    TarGz(u32),
    /// The file or directory tree as it is.
    None,
}

/// What became of one output artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSaved {
    /// Saved at its destination.
    Saved,
    /// The step did not write its path.
    Missing,
    /// It could not be saved; for people.
    Failed(String),
}

fn resolve(path: &Path, working_dir: Option<&Path>) -> PathBuf {
    match working_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

fn ctx(what: &str, path: &Path) -> impl FnOnce(io::Error) -> String {
    let msg = format!("{what} {}", path.display());
    move |e| format!("{msg}: {e}")
}

/// Places every input; the first failure is returned, naming the artifact.
pub fn place_inputs(inputs: &[ArtifactIn], working_dir: Option<&Path>) -> Result<(), String> {
    for input in inputs {
        place_input(input, working_dir)
            .map_err(|e| format!("input artifact '{}': {e}", input.name))?;
    }
    Ok(())
}

fn place_input(input: &ArtifactIn, working_dir: Option<&Path>) -> Result<(), String> {
    let dest = resolve(&input.dest, working_dir);
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(ctx("cannot create directory", parent))?;
    clear_destination(&dest)?;
    match &input.source {
        ArtifactData::Raw(data) => {
            remove_file_if_any(&dest)?;
            fs::write(&dest, data).map_err(ctx("cannot write", &dest))?;
        }
        ArtifactData::Path(src) => {
            let meta = match fs::metadata(src) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound && input.optional => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(format!(
                        "{} is not in the artifact repository",
                        src.display()
                    ));
                }
                Err(e) => return Err(ctx("cannot read", src)(e)),
            };
            if meta.is_dir() {
                let from = match &input.sub_path {
                    Some(s) => src.join(s),
                    None => src.clone(),
                };
                if !from.exists() {
                    if input.optional {
                        return Ok(());
                    }
                    return Err(format!("{} does not exist", from.display()));
                }
                install_copy(&from, &dest)?;
            } else if is_gzip(src) {
                let tmp = tempfile::Builder::new()
                    .prefix(".roadie-artifact-")
                    .tempdir_in(parent)
                    .map_err(ctx("cannot create a temporary directory in", parent))?;
                match unpack(src, tmp.path()) {
                    Ok(()) => {
                        let mut root = tmp.path().to_path_buf();
                        let entries: Vec<PathBuf> = fs::read_dir(&root)
                            .map_err(ctx("cannot read", &root))?
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .collect();
                        if let [only] = entries.as_slice() {
                            root = only.clone();
                        }
                        if let Some(s) = &input.sub_path {
                            root = root.join(s);
                        }
                        install_move(&root, &dest)?;
                    }
                    // Not a tar inside the gzip: the file itself is the artifact, as in Argo.
                    Err(_) => install_copy(src, &dest)?,
                }
            } else {
                if input.sub_path.is_some() {
                    return Err(format!(
                        "subPath needs a directory or an archive, {} is a file",
                        src.display()
                    ));
                }
                install_copy(src, &dest)?;
            }
        }
    }
    if let Some(mode) = input.mode {
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
            .map_err(ctx("cannot set the mode of", &dest))?;
    }
    Ok(())
}

/// A pod starts with nothing at an input's path; on the host an earlier step (or run) may
/// have left something there, which would mix with or block the artifact. It is removed,
/// except for top-level directories (`/`, `/tmp`, `/mnt`...), which are merged into.
fn clear_destination(dest: &Path) -> Result<(), String> {
    let Ok(meta) = fs::symlink_metadata(dest) else {
        return Ok(());
    };
    if meta.is_dir() {
        let depth = dest.components().count();
        if dest.is_absolute() && depth <= 2 {
            return Ok(());
        }
        fs::remove_dir_all(dest).map_err(ctx("cannot replace", dest))
    } else {
        fs::remove_file(dest).map_err(ctx("cannot replace", dest))
    }
}

fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b]
}

fn unpack(archive: &Path, into: &Path) -> io::Result<()> {
    let file = File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    tar.set_preserve_permissions(true);
    // `unpack` refuses entries that would land outside `into`.
    tar.unpack(into)
}

fn remove_file_if_any(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(_) => fs::remove_file(path).map_err(ctx("cannot replace", path)),
        Err(_) => Ok(()),
    }
}

/// Moves `src` (in a temporary directory on the same filesystem) to `dest`:
/// a file replaces a file, a directory's entries are merged into `dest`.
fn install_move(src: &Path, dest: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(src).map_err(ctx("cannot read", src))?;
    if meta.is_dir() && dest.is_dir() {
        for entry in fs::read_dir(src).map_err(ctx("cannot read", src))? {
            let entry = entry.map_err(ctx("cannot read", src))?;
            install_move(&entry.path(), &dest.join(entry.file_name()))?;
        }
        return Ok(());
    }
    remove_file_if_any(dest)?;
    fs::rename(src, dest).map_err(ctx("cannot move an artifact to", dest))
}

/// Copies `src` (a file or a tree) to `dest`; a directory is merged into an existing one.
fn install_copy(src: &Path, dest: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(src).map_err(ctx("cannot read", src))?;
    if meta.is_dir() {
        if !dest.is_dir() {
            remove_file_if_any(dest)?;
            fs::create_dir_all(dest).map_err(ctx("cannot create directory", dest))?;
        }
        for entry in fs::read_dir(src).map_err(ctx("cannot read", src))? {
            let entry = entry.map_err(ctx("cannot read", src))?;
            install_copy(&entry.path(), &dest.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(ctx("cannot read", src))?;
        remove_file_if_any(dest)?;
        std::os::unix::fs::symlink(target, dest).map_err(ctx("cannot create", dest))
    } else if meta.is_file() {
        remove_file_if_any(dest)?;
        fs::copy(src, dest)
            .map(|_| ())
            .map_err(ctx("cannot copy to", dest))
    } else {
        // Sockets, fifos, devices: not content.
        Ok(())
    }
}

/// Saves every output; never fails as a whole: each artifact gets its outcome.
pub fn save_outputs(
    outputs: &[ArtifactOut],
    working_dir: Option<&Path>,
) -> BTreeMap<String, ArtifactSaved> {
    outputs
        .iter()
        .map(|o| (o.name.clone(), save_output(o, working_dir)))
        .collect()
}

fn save_output(out: &ArtifactOut, working_dir: Option<&Path>) -> ArtifactSaved {
    let mut src = resolve(&out.src, working_dir);
    if fs::symlink_metadata(&src).is_err() {
        match in_working_dir(&out.src, working_dir) {
            Some(alt) => src = alt,
            None => return ArtifactSaved::Missing,
        }
    }
    match save_existing(&src, out) {
        Ok(()) => ArtifactSaved::Saved,
        Err(e) => ArtifactSaved::Failed(e),
    }
}

/// Images run their command in `/` unless they set a WORKDIR, so a step that writes
/// `result.txt` and declares the output `/result.txt` works in a pod. A host step runs in its
/// working directory instead: a missing output directly under `/` is looked for there.
fn in_working_dir(src: &Path, working_dir: Option<&Path>) -> Option<PathBuf> {
    let mut parts = src.components();
    let (Some(std::path::Component::RootDir), Some(std::path::Component::Normal(name)), None) =
        (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let dir = match working_dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().ok()?,
    };
    let alt = dir.join(name);
    fs::symlink_metadata(&alt).is_ok().then_some(alt)
}

fn save_existing(src: &Path, out: &ArtifactOut) -> Result<(), String> {
    let dest = &out.dest;
    let parent = dest
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", dest.display()))?;
    fs::create_dir_all(parent).map_err(ctx("cannot create directory", parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".roadie-saving-")
        .tempdir_in(parent)
        .map_err(ctx("cannot create a temporary directory in", parent))?;
    let staged = tmp.path().join("artifact");
    match out.archive {
        ArtifactArchive::None => install_copy(src, &staged)?,
        ArtifactArchive::TarGz(level) => {
            write_tgz(src, &staged, level).map_err(ctx("cannot archive", src))?
        }
    }
    // Replace what an earlier attempt saved under the same key.
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(dest).map_err(ctx("cannot replace", dest))?,
        Ok(_) => fs::remove_file(dest).map_err(ctx("cannot replace", dest))?,
        Err(_) => {}
    }
    fs::rename(&staged, dest).map_err(ctx("cannot save to", dest))
}

fn write_tgz(src: &Path, dest: &Path, level: u32) -> io::Result<()> {
    let file = BufWriter::new(File::create(dest)?);
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::new(level.min(9)));
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let name = src
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("artifact"));
    if fs::symlink_metadata(src)?.is_dir() {
        tar.append_dir_all(&name, src)?;
    } else {
        tar.append_path_with_name(src, &name)?;
    }
    let gz = tar.into_inner()?;
    let mut file = gz.finish()?;
    io::Write::flush(&mut file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, src: &Path, dest: &Path, archive: ArtifactArchive) -> ArtifactOut {
        ArtifactOut {
            name: name.into(),
            src: src.into(),
            dest: dest.into(),
            archive,
        }
    }

    fn input(dest: &Path, src: &Path, sub_path: Option<&str>) -> ArtifactIn {
        ArtifactIn {
            name: "in".into(),
            dest: dest.into(),
            source: ArtifactData::Path(src.into()),
            sub_path: sub_path.map(PathBuf::from),
            optional: false,
            mode: None,
        }
    }

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.txt"), "A").unwrap();
        fs::write(root.join("sub/b.txt"), "B").unwrap();
    }

    #[test]
    fn files_and_trees_round_trip_through_tgz_and_plain_copies() {
        let d = tempfile::tempdir().unwrap();
        let step = d.path().join("step");
        tree(&step.join("tree"));
        fs::write(step.join("file.txt"), "hello").unwrap();
        let repo = d.path().join("repo");
        let saved = save_outputs(
            &[
                out(
                    "f",
                    &step.join("file.txt"),
                    &repo.join("k/f.tgz"),
                    ArtifactArchive::TarGz(6),
                ),
                out(
                    "t",
                    &step.join("tree"),
                    &repo.join("k/t.tgz"),
                    ArtifactArchive::TarGz(0),
                ),
                out(
                    "n",
                    &step.join("tree"),
                    &repo.join("k/tree"),
                    ArtifactArchive::None,
                ),
                out(
                    "m",
                    &step.join("missing"),
                    &repo.join("k/m"),
                    ArtifactArchive::None,
                ),
            ],
            None,
        );
        assert_eq!(saved["f"], ArtifactSaved::Saved);
        assert_eq!(saved["t"], ArtifactSaved::Saved);
        assert_eq!(saved["n"], ArtifactSaved::Saved);
        assert_eq!(saved["m"], ArtifactSaved::Missing);
        assert!(is_gzip(&repo.join("k/t.tgz")), "level 0 is still gzip");

        let next = d.path().join("next");
        place_inputs(
            &[
                input(&next.join("file"), &repo.join("k/f.tgz"), None),
                input(&next.join("tree"), &repo.join("k/t.tgz"), None),
                input(
                    &next.join("b-from-tgz"),
                    &repo.join("k/t.tgz"),
                    Some("sub/b.txt"),
                ),
                input(&next.join("plain"), &repo.join("k/tree"), None),
                input(&next.join("b"), &repo.join("k/tree"), Some("sub/b.txt")),
            ],
            None,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(next.join("file")).unwrap(), "hello");
        assert_eq!(
            fs::read_to_string(next.join("tree/sub/b.txt")).unwrap(),
            "B"
        );
        assert_eq!(fs::read_to_string(next.join("b-from-tgz")).unwrap(), "B");
        assert_eq!(fs::read_to_string(next.join("plain/a.txt")).unwrap(), "A");
        assert_eq!(fs::read_to_string(next.join("b")).unwrap(), "B");
        // No temporary directory is left next to the placed artifacts.
        let mut names: Vec<String> = fs::read_dir(&next)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["b", "b-from-tgz", "file", "plain", "tree"]);
    }

    #[test]
    fn inputs_replace_leftovers_and_keep_gzip_files_that_are_not_tarballs() {
        let d = tempfile::tempdir().unwrap();
        let gz = d.path().join("data.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut enc, b"not a tar").unwrap();
        fs::write(&gz, enc.finish().unwrap()).unwrap();
        let dest = d.path().join("step/in");
        // A directory left by an earlier step at the input's path.
        tree(&dest);
        place_inputs(&[input(&dest, &gz, None)], None).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), fs::read(&gz).unwrap());

        let raw = ArtifactIn {
            name: "raw".into(),
            dest: d.path().join("step/raw"),
            source: ArtifactData::Raw("text".into()),
            sub_path: None,
            optional: false,
            mode: Some(0o600),
        };
        let missing = ArtifactIn {
            optional: true,
            ..input(&d.path().join("step/opt"), &d.path().join("nope"), None)
        };
        place_inputs(&[raw, missing], None).unwrap();
        let raw_path = d.path().join("step/raw");
        assert_eq!(fs::read_to_string(&raw_path).unwrap(), "text");
        assert_eq!(
            fs::metadata(&raw_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!d.path().join("step/opt").exists());

        let err = place_inputs(
            &[input(&d.path().join("x"), &d.path().join("nope"), None)],
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("input artifact 'in'") && err.contains("nope"),
            "{err}"
        );
    }
}
