//! Finding nats-server and refusing versions with known permission-bypass advisories.

use semver::Version;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Oldest acceptable server. Older ones miss fixes for CVE-2026-33248 (`verify_and_map` DN
/// bypass), GHSA-wh7g (wildcard subscribe deny bypass), GHSA-jx8g (queue subscriptions
/// bypass subject denies), CVE-2025-30215 (JetStream cross-account API) and others.
pub const MIN_VERSION: Version = Version::new(2, 14, 3);

/// Why the server binary is unusable.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("nats-server not found: set OZONE_NATS_SERVER, put it on PATH, or run nats/install-nats-server.sh (installs 2.15.1 into $OZONE_STUDIO_HOME/bin)")]
    NotFound,
    #[error("cannot run {path} --version: {source}")]
    Run {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} printed {output:?}, which holds no version number")]
    Unparsable { path: PathBuf, output: String },
    #[error("{path} is nats-server {found}; {MIN_VERSION} or newer is required because older servers have known permission-bypass advisories (CVE-2026-33248 verify_and_map DN bypass, GHSA-wh7g wildcard deny bypass, GHSA-jx8g queue-subscription deny bypass); install 2.15.1 with nats/install-nats-server.sh")]
    TooOld { path: PathBuf, found: Version },
}

/// `OZONE_NATS_SERVER`, else `<home>/bin/nats-server`, else `nats-server` on PATH.
pub fn find_binary(home_bin: &Path) -> Result<PathBuf, VersionError> {
    if let Some(p) = std::env::var_os("OZONE_NATS_SERVER").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let local = home_bin.join("nats-server");
    if local.is_file() {
        return Ok(local);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or(VersionError::NotFound)
}

/// Extracts the version from `nats-server: v2.15.1` (or any text holding `vX.Y.Z`).
pub fn parse_version(output: &str) -> Option<Version> {
    output
        .split(|c: char| c.is_whitespace() || c == ':')
        .filter_map(|w| w.strip_prefix('v'))
        .find_map(|w| Version::parse(w).ok())
}

/// Runs `<path> --version` and refuses anything older than [`MIN_VERSION`].
pub fn check_version(path: &Path) -> Result<Version, VersionError> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|source| VersionError::Run {
            path: path.to_path_buf(),
            source,
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let found = parse_version(&text).ok_or_else(|| VersionError::Unparsable {
        path: path.to_path_buf(),
        output: text.trim().to_string(),
    })?;
    // Pre-releases of the minimum (2.14.3-rc.1) sort below it and are refused too.
    if found < MIN_VERSION {
        return Err(VersionError::TooOld {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_parsed_from_the_servers_output() {
        assert_eq!(
            parse_version("nats-server: v2.15.1\n"),
            Some(Version::new(2, 15, 1))
        );
        assert_eq!(
            parse_version("nats-server: v2.9.10"),
            Some(Version::new(2, 9, 10))
        );
        assert_eq!(parse_version("garbage"), None);
        assert!(Version::new(2, 14, 2) < MIN_VERSION);
        assert!(Version::parse("2.14.3-rc.1")
            .map(|v| v < MIN_VERSION)
            .unwrap_or(false));
    }
}
