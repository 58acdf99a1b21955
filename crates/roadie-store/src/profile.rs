//! Profiles: where an isolated roadie installation keeps its files.
//!
//! Resolution reads four environment variables. It is written as a pure
//! function of a [`ProfileEnv`] so tests (and a daemon that was handed its
//! environment explicitly) do not depend on the process environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// The profile used when neither an argument nor `ROADIE_PROFILE` names one.
pub const DEFAULT_PROFILE: &str = "default";

/// Longest accepted profile name; a profile name becomes a directory name, and
/// a name this long is surely a mistake.
pub const MAX_PROFILE_NAME_LEN: usize = 64;

/// A profile: an isolated roadie installation with its own store, daemon, logs
/// and API token. Its files live in `<roadie home>/profiles/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// `<roadie home>/profiles/<name>`; absolute unless `HOME` or
    /// `ROADIE_HOME` are relative and the current directory is unknown.
    pub dir: PathBuf,
}

/// The environment variables that decide a profile, as read from the process
/// (see [`ProfileEnv::from_process`]) or given explicitly. Empty values count
/// as unset, as the XDG base directory specification asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileEnv {
    pub roadie_home: Option<OsString>,
    pub xdg_data_home: Option<OsString>,
    pub home: Option<OsString>,
    pub roadie_profile: Option<OsString>,
}

impl ProfileEnv {
    /// Reads `ROADIE_HOME`, `XDG_DATA_HOME`, `HOME` and `ROADIE_PROFILE`.
    pub fn from_process() -> ProfileEnv {
        ProfileEnv {
            roadie_home: std::env::var_os("ROADIE_HOME"),
            xdg_data_home: std::env::var_os("XDG_DATA_HOME"),
            home: std::env::var_os("HOME"),
            roadie_profile: std::env::var_os("ROADIE_PROFILE"),
        }
    }

    /// Where all profiles live: `$ROADIE_HOME`, else `$XDG_DATA_HOME/roadie`,
    /// else `$HOME/.local/share/roadie`.
    pub fn roadie_home(&self) -> Result<PathBuf, StoreError> {
        if let Some(home) = non_empty(&self.roadie_home) {
            return absolute(Path::new(home), "ROADIE_HOME");
        }
        // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
        if let Some(xdg) = non_empty(&self.xdg_data_home)
            && Path::new(xdg).is_absolute()
        {
            return Ok(Path::new(xdg).join("roadie"));
        }
        if let Some(home) = non_empty(&self.home) {
            let share = Path::new(home).join(".local").join("share").join("roadie");
            return absolute(&share, "HOME");
        }
        Err(StoreError::NoHome)
    }
}

fn non_empty(v: &Option<OsString>) -> Option<&OsString> {
    v.as_ref().filter(|s| !s.is_empty())
}

/// Makes a relative path absolute against the current directory, so that a
/// daemon that changes directory still finds the same files.
fn absolute(p: &Path, var: &str) -> Result<PathBuf, StoreError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    std::path::absolute(p).map_err(|source| StoreError::Io {
        path: p.to_path_buf(),
        context: format!("making {var} absolute"),
        source,
    })
}

/// Checks a profile name against `[A-Za-z0-9_-]+` (at most
/// [`MAX_PROFILE_NAME_LEN`] characters). `origin` is appended to the error,
/// e.g. ` (from ROADIE_PROFILE)`.
pub fn validate_profile_name(name: &str, origin: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidProfile {
        name: name.to_string(),
        origin: origin.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("a profile name cannot be empty".into()));
    }
    if name.len() > MAX_PROFILE_NAME_LEN {
        return Err(invalid(format!(
            "a profile name has at most {MAX_PROFILE_NAME_LEN} characters, this one has {}",
            name.chars().count()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(invalid(format!(
            "only letters A-Z a-z, digits, '_' and '-' are allowed, found {bad:?}"
        )));
    }
    Ok(())
}

impl Profile {
    /// Resolves a profile from `name`, else `ROADIE_PROFILE`, else
    /// `"default"`, under the directory the process environment names.
    /// Creates nothing: see [`Profile::ensure_dirs`].
    pub fn resolve(name: Option<&str>) -> Result<Profile, StoreError> {
        Profile::resolve_with(name, &ProfileEnv::from_process())
    }

    /// [`Profile::resolve`] with the environment given explicitly.
    pub fn resolve_with(name: Option<&str>, env: &ProfileEnv) -> Result<Profile, StoreError> {
        let name = match (name, non_empty(&env.roadie_profile)) {
            (Some(n), _) => {
                validate_profile_name(n, "")?;
                n.to_string()
            }
            (None, Some(from_env)) => {
                let origin = " (from ROADIE_PROFILE)";
                let n = from_env
                    .to_str()
                    .ok_or_else(|| StoreError::InvalidProfile {
                        name: from_env.to_string_lossy().into_owned(),
                        origin: origin.into(),
                        reason: "it is not valid UTF-8".into(),
                    })?;
                validate_profile_name(n, origin)?;
                n.to_string()
            }
            (None, None) => DEFAULT_PROFILE.to_string(),
        };
        let dir = env.roadie_home()?.join("profiles").join(&name);
        Ok(Profile { name, dir })
    }

    /// A profile rooted at an explicit directory (tests, embedding). The name
    /// is validated; `dir` is used as given.
    pub fn at(name: &str, dir: impl Into<PathBuf>) -> Result<Profile, StoreError> {
        validate_profile_name(name, "")?;
        Ok(Profile {
            name: name.to_string(),
            dir: dir.into(),
        })
    }

    /// Creates the profile's directory, `logs/` and `state/`. New directories
    /// are private to the user (0700): the profile will hold an API token and
    /// the logs of whatever the workflows print.
    pub fn ensure_dirs(&self) -> Result<(), StoreError> {
        for dir in [self.dir.clone(), self.logs_dir(), self.state_dir()] {
            create_private_dir(&dir)?;
        }
        Ok(())
    }

    /// The SQLite database of this profile.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("roadie.db")
    }

    /// Where step logs are written, one directory per workflow.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Runtime registry of started processes, so that what a crashed run left
    /// behind can be found and reaped.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The log directory of one workflow: `logs/<name>`. Characters other than
    /// `[A-Za-z0-9._-]` are replaced by `_` (and `.`/`..` become `_`), so a
    /// name can never point outside `logs/`.
    pub fn workflow_log_dir(&self, workflow_name: &str) -> PathBuf {
        self.logs_dir().join(safe_file_name(workflow_name))
    }
}

/// A single path component derived from `name` that stays inside its parent.
fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "_".to_string()
    } else {
        cleaned
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        context: "creating profile directory".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_file_name_never_escapes() {
        assert_eq!(safe_file_name("hello-world.1"), "hello-world.1");
        assert_eq!(safe_file_name("../etc"), ".._etc");
        assert_eq!(safe_file_name(".."), "_");
        assert_eq!(safe_file_name("."), "_");
        assert_eq!(safe_file_name(""), "_");
        assert_eq!(safe_file_name("a/b\\c d"), "a_b_c_d");
    }
}
