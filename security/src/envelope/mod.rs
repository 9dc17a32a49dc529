//! End-to-end payload encryption: every bus payload is sealed to its recipients' X25519 keys,
//! following HPKE (RFC 9180): DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
//!
//! A sender makes a data key per *session* (a recipient set, bounded in time and message
//! count) with HPKE in Auth mode, which also proves which sender key made it: exported from
//! the first recipient's context, wrapped for every other one. Each message is then
//! AES-256-GCM under the data key with the whole header and the subject as associated data,
//! so steady state costs one AES-GCM, not an X25519 operation, per message. A session with
//! several recipients adds one HMAC tag per recipient (`sender_tags`), so that no recipient
//! can seal what another takes for the sender's.
//! `docs/envelope.md` specifies the wire format.

pub mod auditor_key;
mod error;
mod hpke_wrap;
mod keyring;
pub mod keyring_file;
mod keys;
mod open;
mod replay;
mod seal;
mod sender_tags;
mod wire;

pub use error::EnvelopeError;
pub use hpke_wrap::{
    import_data_key, import_session_keys, unwrap_data_key, unwrap_session_keys, wrap_data_key,
    DATA_KEY_LEN,
};
pub use keyring::{KeyRing, Rotation};
pub use keys::{is_low_order, KeyId, PublicKey, SecretKeyPair, KEY_ID_LEN};
pub use open::{Freshness, Incoming, MessageMeta, Opened, Opener, OpenerLimits, SenderKeys};
pub use replay::ReplayGuard;
pub use seal::{Form, SealTo, Sealer, SessionLimits, SessionRecord};
pub use sender_tags::{sender_tags_len, SENDER_TAG_LEN};
pub use wire::{
    envelope_version, message_id, record_digest, route_covers, CompactHeader, Envelope,
    Establishment, Header, HeaderView, RecipientEntry, COMPACT_HEADER_LEN, MAX_ENVELOPE_LEN,
    SESSION_ID_LEN, SUITE_V1, VERSION, VERSION_COMPACT,
};
