//! OZONE STUDIO's security plane: the only crate that creates, reads or destroys key material.
//!
//! It owns the `$OZONE_STUDIO_HOME` layout and its permissions, the security configuration,
//! the internal PKI (rcgen), encrypted CA keys, and the TLS identities clients connect with.

pub mod config;
pub mod credentials;
pub mod duration_text;
pub mod envelope;
pub mod home;
pub mod honoured;
pub mod keydir;
pub mod keyfile;
pub mod passphrase;
pub mod pki;
pub mod tls;

pub use config::SecurityConfig;
pub use home::Home;
