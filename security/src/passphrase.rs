//! Where the CA passphrase comes from: `OZONE_CA_PASSPHRASE`, else the file named by
//! `OZONE_CA_PASSPHRASE_FILE`, else `security/keys/ca.passphrase` (generated at init).
//!
//! The default file protects CA keys that leak on their own (a copied `ca/` folder, a backup
//! of it); an operator who wants more keeps the passphrase elsewhere and points the variable
//! at it.

use crate::keyfile::{mode_of, write_secret, KeyFileError};
use crate::Home;
use ring::rand::{SecureRandom, SystemRandom};
use std::path::PathBuf;
use zeroize::Zeroizing;

pub const ENV_PASSPHRASE: &str = "OZONE_CA_PASSPHRASE";
pub const ENV_PASSPHRASE_FILE: &str = "OZONE_CA_PASSPHRASE_FILE";
/// Every variable that can carry the CA passphrase: removed from the environment of the
/// processes `ozone` starts for components.
pub const CA_SECRET_ENV: [&str; 2] = [ENV_PASSPHRASE, ENV_PASSPHRASE_FILE];
const MIN_LEN: usize = 16;

/// Why no usable passphrase was found.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    #[error("the CA passphrase from {source_name} is shorter than {MIN_LEN} characters; use a long random one")]
    TooShort { source_name: String },
    #[error("no CA passphrase: {path} does not exist; set {ENV_PASSPHRASE} or {ENV_PASSPHRASE_FILE}, or run `ozone init`")]
    Missing { path: PathBuf },
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("cannot generate a passphrase: the system random generator failed")]
    Random,
}

/// The default passphrase file of a home.
pub fn default_file(home: &Home) -> PathBuf {
    home.keys_dir().join("ca.passphrase")
}

/// The file the passphrase is read from, if it comes from a file.
pub fn file_in_use(home: &Home) -> Option<PathBuf> {
    if std::env::var_os(ENV_PASSPHRASE).is_some_and(|v| !v.is_empty()) {
        return None;
    }
    Some(
        std::env::var_os(ENV_PASSPHRASE_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| default_file(home)),
    )
}

/// Resolves the passphrase; with `create`, generates the default file when nothing is set.
pub fn resolve(home: &Home, create: bool) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    let (bytes, source_name) = match file_in_use(home) {
        None => (
            Zeroizing::new(
                std::env::var(ENV_PASSPHRASE)
                    .unwrap_or_default()
                    .into_bytes(),
            ),
            ENV_PASSPHRASE.to_string(),
        ),
        Some(path) => {
            if !path.exists() {
                if !create || path != default_file(home) {
                    return Err(PassphraseError::Missing { path });
                }
                generate(&path)?;
            }
            let raw = std::fs::read(&path).map_err(|source| KeyFileError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let trimmed = raw.trim_ascii_end().to_vec();
            (Zeroizing::new(trimmed), path.display().to_string())
        }
    };
    if bytes.len() < MIN_LEN {
        return Err(PassphraseError::TooShort { source_name });
    }
    Ok(bytes)
}

fn generate(path: &std::path::Path) -> Result<(), PassphraseError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(raw.as_mut())
        .map_err(|_| PassphraseError::Random)?;
    let hex: Zeroizing<String> = Zeroizing::new(hex::encode(raw.as_ref()));
    write_secret(path, hex.as_bytes())?;
    Ok(())
}

/// The mode of the passphrase file, if one is in use and exists.
pub fn file_mode(home: &Home) -> Option<(PathBuf, u32)> {
    let path = file_in_use(home)?;
    mode_of(&path).ok().map(|m| (path, m))
}
