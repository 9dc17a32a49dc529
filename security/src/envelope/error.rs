//! Why an envelope was refused. Every variant is a rejection of untrusted input: none panics,
//! and each is meant to be audited by the caller.

/// A refused envelope, grouped by what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    #[error("unsupported envelope version {version} / suite {suite}")]
    Unsupported { version: u8, suite: u8 },
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("this service holds none of the envelope's recipient keys")]
    NotARecipient,
    #[error("unknown sender key {kid} claimed by {sender:?}")]
    UnknownSender { sender: String, kid: String },
    #[error("sender key {kid} of {sender:?} expired at {not_after_ms} (Unix ms)")]
    SenderKeyExpired {
        sender: String,
        kid: String,
        not_after_ms: u64,
    },
    #[error("unknown session {session} of sender key {kid}: a compact envelope, and its session record is not at hand")]
    UnknownSession { kid: String, session: String },
    #[error("cannot decrypt: the envelope was altered, moved to another subject, or not made by its claimed sender")]
    CannotDecrypt,
    #[error("the sender's tag for this recipient is missing or wrong: sealed by someone who holds the session's data key (another recipient), not by its sender")]
    SenderTag,
    #[error("sealed in a session of route {route}, which does not cover {subject}")]
    WrongRoute { route: String, subject: String },
    #[error("a low-order X25519 public key was refused")]
    LowOrderKey,
    #[error("replayed message {0}")]
    Replay(String),
    #[error("message {0} is older than its stream's replay window remembers")]
    BeyondReplayWindow(String),
    #[error("message timestamp is {skew_ms} ms away from now, outside the replay window")]
    OutsideWindow { skew_ms: i64 },
    #[error("no recipients given")]
    NoRecipients,
    #[error("the system random generator failed")]
    Random,
}
