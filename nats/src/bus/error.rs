//! Bus errors, sorted by what the caller does about them.

use ozone_security::envelope::EnvelopeError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
    #[error("nobody serves {0}")]
    NoResponders(String),
    #[error("connection to the server lost while waiting for the answer to {0}")]
    Disconnected(String),
    #[error("access denied: this identity may not use {0}")]
    AccessDenied(String),
    #[error("{subject}: {source}")]
    Envelope {
        subject: String,
        source: EnvelopeError,
    },
    #[error("{subject}: reply subject {reply} is not the inbox of its sender {sender}")]
    ForeignReply {
        subject: String,
        reply: String,
        sender: String,
    },
    #[error("{subject}: the subject table does not let {sender} send it here")]
    NotAPublisher { subject: String, sender: String },
    #[error("{subject}: delivered to a subscription on {subscribed}")]
    Misdelivered { subject: String, subscribed: String },
    #[error("{subject}: invalid message ({detail})")]
    Invalid { subject: String, detail: String },
    #[error("{subject}: the payload does not decode: {source}")]
    Decode {
        subject: String,
        source: rmp_serde::decode::Error,
    },
    #[error("{subject}: the payload does not encode: {source}")]
    Encode {
        subject: String,
        source: rmp_serde::encode::Error,
    },
    /// A sealed message larger than the server takes; nothing was sent.
    #[error(
        "{subject}: the message is {size} bytes sealed, more than the server's limit of {max}"
    )]
    TooLarge {
        subject: String,
        size: usize,
        max: usize,
    },
    #[error("no published key for {0}; is it running?")]
    NoKey(String),
    #[error("nobody subscribes to {0} in the subject table")]
    NoRecipients(String),
    #[error("key material: {0}")]
    Keys(#[source] BoxError),
    /// The NATS client or server failed (the client's own error, kept whole).
    #[error(transparent)]
    Nats(BoxError),
    #[error("internal lock poisoned: {0}")]
    Poisoned(&'static str),
}

/// An error kept whole, whatever its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl BusError {
    /// A failure of the NATS client or server, its error kept as the source.
    pub fn nats(e: impl Into<BoxError>) -> BusError {
        BusError::Nats(e.into())
    }

    /// A failure to load, sign or store key material, its error kept as the source.
    pub fn keys(e: impl Into<BoxError>) -> BusError {
        BusError::Keys(e.into())
    }
}
