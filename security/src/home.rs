//! The `$OZONE_STUDIO_HOME` layout from the seed, and its permissions.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The root of one installation; every path the ecosystem uses is derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

/// Directories of the seed's layout with the mode each gets when created.
const LAYOUT: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("lib", 0o755),
    ("etc", 0o755),
    ("var", 0o755),
    ("var/log", 0o755),
    ("var/data", 0o750),
    ("var/cache", 0o755),
    ("var/run", 0o755),
    ("security", 0o750),
    ("security/ca", 0o700),
    ("security/certificates", 0o700),
    ("security/keys", 0o700),
    ("models", 0o755),
    ("methodologies", 0o755),
    ("backups", 0o750),
];

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `$OZONE_STUDIO_HOME`, else `~/.ozone-studio` (the seed's `/opt/ozone-studio` needs root).
    pub fn from_env() -> Home {
        if let Some(dir) = std::env::var_os("OZONE_STUDIO_HOME").filter(|d| !d.is_empty()) {
            return Home::new(dir);
        }
        let user_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        Home::new(user_home.join(".ozone-studio"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("var/log")
    }
    pub fn data(&self) -> PathBuf {
        self.root.join("var/data")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("var/run")
    }
    pub fn security(&self) -> PathBuf {
        self.root.join("security")
    }
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("security/ca")
    }
    pub fn certs_dir(&self) -> PathBuf {
        self.root.join("security/certificates")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("security/keys")
    }
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    pub fn ecosystem_env(&self) -> PathBuf {
        self.etc().join("ecosystem.env")
    }
    pub fn security_config(&self) -> PathBuf {
        self.etc().join("security-config.toml")
    }
    pub fn nats_config(&self) -> PathBuf {
        self.etc().join("nats-server.conf")
    }

    /// Creates every missing directory of the layout with the seed's mode (independent of the
    /// umask). Existing directories are left alone; `ozone pki verify` reports loose modes.
    /// Returns the directories it created; an error names the directory that could not be made.
    pub fn create_layout(&self) -> io::Result<Vec<PathBuf>> {
        let mut created = Vec::new();
        if !self.root.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&self.root)
                .map_err(named(&self.root))?;
            created.push(self.root.clone());
        }
        for (rel, mode) in LAYOUT {
            let dir = self.root.join(rel);
            if dir.exists() {
                continue;
            }
            DirBuilder::new()
                .mode(*mode)
                .create(&dir)
                .map_err(named(&dir))?;
            fs::set_permissions(&dir, Permissions::from_mode(*mode)).map_err(named(&dir))?;
            created.push(dir);
        }
        Ok(created)
    }

    /// Directories whose mode must not grant more than the seed's (path, allowed mode).
    pub fn protected_dirs(&self) -> Vec<(PathBuf, u32)> {
        LAYOUT
            .iter()
            .filter(|(rel, _)| rel.starts_with("security"))
            .map(|(rel, mode)| (self.root.join(rel), *mode))
            .collect()
    }
}

/// An I/O error that says which directory it was about.
fn named(dir: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_the_seed_modes_and_is_idempotent() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let home = Home::new(tmp.path().join("h"));
        let first = home.create_layout()?;
        assert_eq!(first.len(), LAYOUT.len() + 1);
        let mode = |p: PathBuf| fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(home.security())?, 0o750);
        assert_eq!(mode(home.keys_dir())?, 0o700);
        assert!(home.create_layout()?.is_empty());
        Ok(())
    }
}
