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

    pub fn exist(&self) -> bool {
        self.cert.exists() && self.chain.exists() && self.key.exists()
    }
}
