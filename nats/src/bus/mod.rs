//! The typed, end-to-end encrypted bus every service uses.
//!
//! Payloads are MessagePack (rmp-serde) sealed with the envelope from
//! `ozone_security::envelope`: to the subscribers the subject table names for the subject, with
//! the recipients' current keys from the signed key directory. Subscribers open and verify
//! every message; anything that fails is an error value, never a panic.

mod audit_sink;
mod error;
mod handle;
mod keys;
mod open;
mod request;
mod rotation;
mod seal;
mod start;
mod subscriber;

pub use audit_sink::RATE_PER_SEC as AUDIT_RATE_PER_SEC;
pub use error::{BoxError, BusError};
pub use handle::{Bus, Received, SCHEMA_VERSION};
pub(crate) use keys::coarse_now_ms;
pub use keys::{local_keys, now_ms, BusKeys, LocalKeysError};
pub use rotation::HEAL_EVERY;
pub use subscriber::TypedSubscriber;
