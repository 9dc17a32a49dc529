//! Reading what a stream stored without a consumer.
//!
//! Components get no JetStream consumer rights: a consumer's configuration names where the
//! server delivers (a push consumer's deliver subject), and NATS permissions cannot tell a
//! consumer that delivers to its creator from one that delivers into another component's
//! subjects. What components read from the ecosystem's streams they read with two things that
//! cannot be aimed elsewhere by a stream's configuration:
//!
//! - a **batch direct get** (`$JS.API.DIRECT.GET.<stream>` with `multi_last`): the last stored
//!   message of every subject under a filter, each with its stream sequence, answered to the
//!   requester's own inbox and ended by a `204 EOB` status;
//! - a **republished feed**: the stream itself republishes each message it stores to a
//!   subject nobody may publish on (`Nats-Sequence`, `Nats-Subject` headers added), which
//!   members subscribe to.
//!
//! [`Stored`] is one such message, whichever way it came; a follower applies it only when its
//! sequence is newer than what it holds for that subject, so a snapshot and the feed can
//! overlap in any order.

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// How long a batch direct get may take as a whole.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// The most subjects one snapshot returns (the server's own cap on a batch).
const SNAPSHOT_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("cannot ask {stream} for its stored messages: {source}")]
    Request {
        stream: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("{stream} did not finish its answer within {SNAPSHOT_WAIT:?}")]
    Timeout { stream: String },
    #[error("{stream} refused the read: {status} {description}")]
    Refused {
        stream: String,
        status: u16,
        description: String,
    },
    #[error("a stored message of {stream} lacks its {header} header")]
    MissingHeader {
        stream: String,
        header: &'static str,
    },
    #[error("{stream} holds more than {SNAPSHOT_BATCH} subjects under {filter}")]
    TooMany { stream: String, filter: String },
}

/// One stored message: the subject it was stored under, its stream sequence, its headers
/// (`KV-Operation` marks a key-value delete) and payload.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub sequence: u64,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl Stored {
    /// A message as the stream's direct get or republish delivers it; `stream` names it in
    /// errors.
    pub fn from_delivery(stream: &str, msg: async_nats::Message) -> Result<Stored, StoredError> {
        let missing = |header| StoredError::MissingHeader {
            stream: stream.to_string(),
            header,
        };
        let headers = msg.headers.unwrap_or_default();
        let subject = headers
            .get("Nats-Subject")
            .map(|v| v.as_str().to_string())
            .ok_or_else(|| missing("Nats-Subject"))?;
        let sequence = headers
            .get("Nats-Sequence")
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| missing("Nats-Sequence"))?;
        Ok(Stored {
            subject,
            sequence,
            headers,
            payload: msg.payload,
        })
    }

    /// Whether this is a key-value delete (or purge) marker rather than a value.
    pub fn is_delete_marker(&self) -> bool {
        self.headers
            .get("KV-Operation")
            .is_some_and(|v| matches!(v.as_str(), "DEL" | "PURGE"))
    }

    /// As a plain message on the subject it was stored under (what the bus opens).
    pub fn as_message(&self) -> async_nats::Message {
        async_nats::Message {
            subject: self.subject.as_str().into(),
            reply: None,
            payload: self.payload.clone(),
            headers: Some(self.headers.clone()),
            status: None,
            description: None,
            length: self.payload.len(),
        }
    }
}

/// The last stored message of every subject of `stream` matching `filter`, oldest first (a
/// batch direct get; the stream must allow direct gets). Empty when nothing matches.
pub async fn last_per_subject(
    client: &async_nats::Client,
    stream: &str,
    filter: &str,
) -> Result<Vec<Stored>, StoredError> {
    let request_err = |source: async_nats::Error| StoredError::Request {
        stream: stream.to_string(),
        source,
    };
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| request_err(e.into()))?;
    let body = serde_json::json!({ "multi_last": [filter], "batch": SNAPSHOT_BATCH });
    client
        .publish_with_reply(
            ozone_bus_schemas::Subject::direct_get(stream).to_string(),
            inbox,
            body.to_string().into(),
        )
        .await
        .map_err(|e| request_err(e.into()))?;
    let mut out = Vec::new();
    let collect = async {
        while let Some(msg) = answers.next().await {
            match msg.status.map(|s| s.as_u16()) {
                None => out.push(Stored::from_delivery(stream, msg)?),
                // End of the batch.
                Some(204) => return Ok(()),
                // Nothing under the filter.
                Some(404) => return Ok(()),
                Some(413) => {
                    return Err(StoredError::TooMany {
                        stream: stream.to_string(),
                        filter: filter.to_string(),
                    })
                }
                Some(status) => {
                    return Err(StoredError::Refused {
                        stream: stream.to_string(),
                        status,
                        description: msg.description.unwrap_or_default(),
                    })
                }
            }
        }
        Err(request_err("the connection closed".into()))
    };
    tokio::time::timeout(SNAPSHOT_WAIT, collect)
        .await
        .map_err(|_| StoredError::Timeout {
            stream: stream.to_string(),
        })??;
    out.sort_by_key(|s| s.sequence);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(headers: &[(&str, &str)]) -> async_nats::Message {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, *v);
        }
        async_nats::Message {
            subject: "_INBOX.spark.x".into(),
            reply: None,
            payload: Bytes::from_static(b"v"),
            headers: Some(h),
            status: None,
            description: None,
            length: 1,
        }
    }

    #[test]
    fn a_delivery_is_read_under_its_stored_subject_and_sequence() {
        let s = Stored::from_delivery(
            "KV_ozone-keys",
            delivery(&[
                ("Nats-Subject", "$KV.ozone-keys.component.spark.2"),
                ("Nats-Sequence", "42"),
                ("KV-Operation", "DEL"),
            ]),
        )
        .unwrap();
        assert_eq!(s.subject, "$KV.ozone-keys.component.spark.2");
        assert_eq!(s.sequence, 42);
        assert!(s.is_delete_marker());
        assert_eq!(s.as_message().subject.as_str(), s.subject);
    }

    #[test]
    fn a_delivery_without_its_sequence_is_refused() {
        let e = Stored::from_delivery(
            "KV_ozone-keys",
            delivery(&[("Nats-Subject", "$KV.ozone-keys.component.spark.2")]),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                StoredError::MissingHeader {
                    header: "Nats-Sequence",
                    ..
                }
            ),
            "{e}"
        );
    }
}
