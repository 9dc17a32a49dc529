//! Key material handed to a component process by its service manager instead of read from the
//! home.
//!
//! Under the units `ozone install systemd` writes, each component runs as a user of its own
//! that cannot read `security/keys` or `security/ca`. systemd reads the component's own files
//! as root and hands them over in `$CREDENTIALS_DIRECTORY`, a directory only that unit's user
//! can read (`LoadCredential=`); the component's key ring lives in a state directory only that
//! user owns (`$OZONE_KEY_DIR`). A process without these variables reads the home, as
//! `ozone up` runs it. Only a process's reads of its *own* files consult them: `ozone pki`
//! always writes the home.

use std::path::PathBuf;

/// The variable systemd sets to the unit's credentials directory.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// The variable naming the directory a component keeps its key ring in, when not
/// `security/keys` (set by the systemd units to the unit's own state directory).
pub const KEY_DIR: &str = "OZONE_KEY_DIR";

/// Where the systemd units keep each component's state: `<this>/<file stem>` holds its ring.
/// (`StateDirectory=` of a system unit lives under `/var/lib`; `ozone pki revoke` destroys a
/// revoked identity's ring here too.)
pub const SYSTEMD_STATE_ROOT: &str = "/var/lib/ozone-studio";

/// The credential called `name`, if the service manager handed this process one.
pub fn credential(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty())?;
    let path = PathBuf::from(dir).join(name);
    path.is_file().then_some(path)
}

/// The directory this process keeps its key ring in, if not the home's `security/keys`.
pub fn key_dir() -> Option<PathBuf> {
    std::env::var_os(KEY_DIR)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// The state directory the systemd units give the identity with file stem `stem`.
pub fn systemd_state_dir(stem: &str) -> PathBuf {
    PathBuf::from(SYSTEMD_STATE_ROOT).join(stem)
}
