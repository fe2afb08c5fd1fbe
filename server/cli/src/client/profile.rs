//! Named profiles: a server URL and the credential to use with it, kept in
//! one TOML file (`<user config dir>/tessera/profiles.toml` by default).
//!
//! The file holds secrets, so it is always written with mode 0600, through
//! a temporary file renamed into place: a crash mid-write leaves the old
//! file, never a truncated one, and there is no moment when the secret sits
//! in a file others can read.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("no user configuration directory; pass --profile-file or set TESSERA_PROFILE_FILE")]
    NoConfigDir,
    #[error("reading the profile file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the profile file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("writing the profile file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// How a profile proves who it is. Both are sent as a bearer credential;
/// they are kept apart so `tessera` can say which one a profile holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// A session token from `POST /api/auth/login` (it expires).
    Token(String),
    /// A tenant API key (`tsk_...`), for CI.
    ApiKey(String),
}

impl Credential {
    pub fn secret(&self) -> &str {
        match self {
            Credential::Token(s) | Credential::ApiKey(s) => s,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Credential::Token(_) => "token",
            Credential::ApiKey(_) => "API key",
        }
    }
}

/// Never shows the secret, so a `{:?}` in a log or panic cannot leak it.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential::{}(<redacted>)", self.describe())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    #[serde(flatten)]
    pub credential: Credential,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Profiles {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// The profile file at one path.
#[derive(Debug, Clone)]
pub struct ProfileFile {
    path: PathBuf,
}

impl ProfileFile {
    /// The file at `path`, or the default one under the user's config dir.
    pub fn at(path: Option<PathBuf>) -> Result<Self, ProfileError> {
        let path = match path {
            Some(p) => p,
            None => dirs::config_dir().ok_or(ProfileError::NoConfigDir)?.join("tessera").join("profiles.toml"),
        };
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Result<Option<Profile>, ProfileError> {
        Ok(self.load()?.profiles.remove(name))
    }

    pub fn save(&self, name: &str, profile: Profile) -> Result<(), ProfileError> {
        let mut all = self.load()?;
        all.profiles.insert(name.to_string(), profile);
        self.store(&all)
    }

    /// Removes a profile; returns it if it was there.
    pub fn remove(&self, name: &str) -> Result<Option<Profile>, ProfileError> {
        let mut all = self.load()?;
        let removed = all.profiles.remove(name);
        if removed.is_some() {
            self.store(&all)?;
        }
        Ok(removed)
    }

    fn load(&self) -> Result<Profiles, ProfileError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Profiles::default()),
            Err(source) => return Err(ProfileError::Read { path: self.path.clone(), source }),
        };
        // toml's message quotes the offending line, which may hold a
        // secret: say where, not what.
        toml::from_str(&text).map_err(|e| ProfileError::Invalid {
            path: self.path.clone(),
            message: match e.span() {
                Some(span) => format!("syntax error at byte {}", span.start),
                None => "syntax error".into(),
            },
        })
    }

    fn store(&self, profiles: &Profiles) -> Result<(), ProfileError> {
        let write_error = |source| ProfileError::Write { path: self.path.clone(), source };
        let text = toml::to_string(profiles).map_err(|e| write_error(std::io::Error::other(e.to_string())))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        let temporary = self.path.with_extension(format!("tmp-{}", std::process::id()));
        let written = write_private(&temporary, text.as_bytes()).and_then(|()| std::fs::rename(&temporary, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(write_error)
    }
}

/// Creates `path` readable by its owner only, then writes `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // The mode given to open is filtered by the umask and ignored for an
        // existing file: set it explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_and_debug_output_hides_the_secret() {
        let dir = std::env::temp_dir().join(format!("tessera-profile-test-{}", uuid::Uuid::new_v4().simple()));
        let file = ProfileFile::at(Some(dir.join("nested").join("profiles.toml"))).unwrap();
        assert_eq!(file.get("default").unwrap(), None);
        let ci = Profile { server: "https://acme.example".into(), credential: Credential::ApiKey("tsk_secret".into()) };
        file.save("ci", ci.clone()).unwrap();
        file.save("default", Profile { server: "http://x".into(), credential: Credential::Token("jwt".into()) }).unwrap();
        assert_eq!(file.get("ci").unwrap(), Some(ci.clone()));
        assert!(!format!("{ci:?}").contains("tsk_secret"));
        assert_eq!(file.remove("ci").unwrap(), Some(ci));
        assert_eq!(file.get("ci").unwrap(), None);
        assert!(file.get("default").unwrap().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
