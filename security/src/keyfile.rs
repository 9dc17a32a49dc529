//! Private-key files: created 0600 and never overwritten in place; CA keys encrypted at rest
//! as PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2: scrypt + AES-256-CBC, readable by OpenSSL).

use pkcs8::der::pem::{LineEnding, PemLabel};
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo, SecretDocument};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: not an encrypted PKCS#8 key ({detail})")]
    Format { path: String, detail: String },
    #[error("{path}: cannot decrypt the key; the CA passphrase is wrong (set OZONE_CA_PASSPHRASE or OZONE_CA_PASSPHRASE_FILE to the one used at init)")]
    WrongPassphrase { path: String },
    #[error("encrypting {path}: {detail}")]
    Encrypt { path: String, detail: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes secret bytes with mode 0600 via a temporary file and an atomic rename, so a reader
/// never sees a half-written key and the file is never world-readable, not even briefly.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    // Unique per writer: two processes rewriting the same file (workers of one service
    // rotating together) must not remove each other's temporary file.
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes a PKCS#8 DER key encrypted under `passphrase`.
pub fn write_encrypted(
    path: &Path,
    pkcs8_der: &[u8],
    passphrase: &[u8],
) -> Result<(), KeyFileError> {
    let enc = |detail: String| KeyFileError::Encrypt {
        path: path.display().to_string(),
        detail,
    };
    let info = PrivateKeyInfo::try_from(pkcs8_der).map_err(|e| enc(e.to_string()))?;
    let doc = info
        .encrypt(rand_core::OsRng, passphrase)
        .map_err(|e| enc(e.to_string()))?;
    let pem = doc
        .to_pem(EncryptedPrivateKeyInfo::PEM_LABEL, LineEnding::LF)
        .map_err(|e| enc(e.to_string()))?;
    write_secret(path, pem.as_bytes())
}

/// Reads and decrypts a key written by [`write_encrypted`]; returns PKCS#8 DER.
pub fn read_encrypted(path: &Path, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
    let format = |detail: String| KeyFileError::Format {
        path: path.display().to_string(),
        detail,
    };
    let (label, doc) = SecretDocument::from_pem(&text).map_err(|e| format(e.to_string()))?;
    if label != EncryptedPrivateKeyInfo::PEM_LABEL {
        return Err(format(format!(
            "found a {label:?} block; the key is not protected"
        )));
    }
    let info =
        EncryptedPrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| format(e.to_string()))?;
    let plain = info
        .decrypt(passphrase)
        .map_err(|_| KeyFileError::WrongPassphrase {
            path: path.display().to_string(),
        })?;
    Ok(Zeroizing::new(plain.as_bytes().to_vec()))
}

/// Whether the file is stored encrypted (without needing the passphrase).
pub fn is_encrypted(path: &Path) -> io::Result<bool> {
    Ok(fs::read_to_string(path)?.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
}

/// The permission bits of a file.
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_keys_round_trip_and_refuse_a_wrong_passphrase(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("ca.key");
        let key = rcgen::KeyPair::generate()?;
        write_encrypted(&path, key.serialized_der(), b"correct horse battery staple")?;
        assert_eq!(mode_of(&path)?, 0o600);
        assert!(is_encrypted(&path)?);
        let der = read_encrypted(&path, b"correct horse battery staple")?;
        assert_eq!(der.as_slice(), key.serialized_der());
        assert!(matches!(
            read_encrypted(&path, b"wrong"),
            Err(KeyFileError::WrongPassphrase { .. })
        ));
        Ok(())
    }
}
