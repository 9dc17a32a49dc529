//! Where an identity's certificate, chain and key live.

use crate::Home;
use ozone_bus_schemas::Identity;
use std::path::PathBuf;

/// The three files of one identity: `certificates/<stem>.crt`, `certificates/<stem>-chain.crt`
/// (leaf, issuing intermediate, root, as the seed builds it) and `keys/<stem>.key` (0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub cert: PathBuf,
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl IdentityFiles {
    pub fn of(home: &Home, identity: &Identity) -> IdentityFiles {
        IdentityFiles::for_stem(home, &identity.file_stem())
    }

    pub fn for_stem(home: &Home, stem: &str) -> IdentityFiles {
        IdentityFiles {
            cert: home.certs_dir().join(format!("{stem}.crt")),
            chain: home.certs_dir().join(format!("{stem}-chain.crt")),
            key: home.keys_dir().join(format!("{stem}.key")),
        }
    }

    /// The files a process reads for its *own* identity: those its service manager handed it
    /// ([`crate::credentials`]: `<stem>.crt`, `<stem>-chain.crt`, `<stem>.key`) when it
    /// holds the key that way, else the home's.
    pub fn own(home: &Home, identity: &Identity) -> IdentityFiles {
        let stem = identity.file_stem();
        let home_files = IdentityFiles::for_stem(home, &stem);
        match crate::credentials::credential(&format!("{stem}.key")) {
            Some(key) => {
                let handed = |name: String, fallback: PathBuf| {
                    crate::credentials::credential(&name).unwrap_or(fallback)
                };
                IdentityFiles {
                    cert: handed(format!("{stem}.crt"), home_files.cert),
                    chain: handed(format!("{stem}-chain.crt"), home_files.chain),
                    key,
                }
            }
            None => home_files,
        }
    }

    pub fn exist(&self) -> bool {
        self.cert.exists() && self.chain.exists() && self.key.exists()
    }
}
