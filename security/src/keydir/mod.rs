//! The key directory's trust: signed entries (X.509 checks against our CAs, revocations read
//! from the identity registry, ECDSA signing with a service's certificate key) and the
//! verified directory the envelope seals to and opens with. The envelope itself only sees
//! keys through [`crate::envelope::SenderKeys`].

mod entry;
mod signer;
mod trust;
mod verified;

pub use entry::{DirectoryEntry, DirectoryError};
pub use signer::ServiceSigner;
pub use trust::DirectoryTrust;
pub use verified::Directory;
