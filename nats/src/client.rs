//! mTLS client connections, with NATS' asynchronous permission-violation errors turned into
//! something a caller can wait on.
//!
//! async-nats reports a denied publish or subscribe only as a later `-ERR` event; `publish`
//! itself returns Ok. [`Connection`] parses those events into [`Violation`]s.

use async_nats::{Client, ConnectOptions, Event, ServerError};
use ozone_bus_schemas::{Identity, Subject};
use std::time::Duration;
use tokio::sync::broadcast;

/// What the server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Publish(String),
    Subscribe(String),
    /// An authorization error on the connection itself (e.g. the identity was revoked).
    Authorization,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot load the TLS identity: {0}")]
    Tls(#[from] ozone_security::tls::TlsError),
    #[error("the server refused {identity} ({detail}); check `ozone pki verify` and that the identity is not revoked")]
    Refused { identity: String, detail: String },
    #[error("cannot reach nats-server at {url} ({detail}); is it running? (`ozone up`)")]
    Unreachable { url: String, detail: String },
}

/// A live connection of one identity plus the stream of its connection events.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: Client,
    pub identity: Identity,
    events: broadcast::Sender<ConnEvent>,
}

/// A connection event, reduced to what callers act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    Connected,
    Disconnected,
    Closed,
    Violation(Violation),
    Other(String),
}

/// Parses `Permissions Violation for Publish to "x"` / `... for Subscription to "x"`.
pub fn parse_violation(message: &str) -> Option<Violation> {
    let lower = message.to_ascii_lowercase();
    if !lower.contains("permissions violation") {
        return None;
    }
    let subject = message
        .split('"')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_default();
    if lower.contains("for publish") {
        Some(Violation::Publish(subject))
    } else if lower.contains("for subscription") {
        Some(Violation::Subscribe(subject))
    } else {
        None
    }
}

fn reduce(event: Event) -> ConnEvent {
    match event {
        Event::Connected => ConnEvent::Connected,
        Event::Disconnected => ConnEvent::Disconnected,
        Event::Closed => ConnEvent::Closed,
        Event::ServerError(ServerError::AuthorizationViolation) => {
            ConnEvent::Violation(Violation::Authorization)
        }
        Event::ServerError(ServerError::Other(msg)) => match parse_violation(&msg) {
            Some(v) => ConnEvent::Violation(v),
            None => ConnEvent::Other(msg),
        },
        other => ConnEvent::Other(other.to_string()),
    }
}

/// Connects `identity` to `url` with its TLS configuration. TLS comes first, TLS 1.3 only;
/// replies arrive on the identity's private inbox prefix.
pub async fn connect(
    url: &str,
    identity: &Identity,
    tls: rustls::ClientConfig,
) -> Result<Connection, ConnectError> {
    let (events, _) = broadcast::channel(256);
    let tx = events.clone();
    let options = ConnectOptions::new()
        .name(identity.file_stem())
        .tls_client_config(tls)
        .require_tls(true)
        .tls_first()
        .custom_inbox_prefix(Subject::inbox_prefix(identity).as_str())
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                // No receiver is fine: nobody is waiting for events right now.
                let _ = tx.send(reduce(event));
            }
        });
    let client = options.connect(url).await.map_err(|e| {
        let detail = e.to_string();
        // A TLS alert from the server (UnknownCA, CertificateExpired, CertificateRequired,
        // BadCertificate) is a refusal of this identity, not an unreachable server.
        let refused = detail.contains("alert")
            || matches!(
                e.kind(),
                async_nats::ConnectErrorKind::Tls
                    | async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
            )
            || detail.contains("reset")
            || detail.contains("closed")
            || detail.contains("broken pipe");
        if refused {
            ConnectError::Refused {
                identity: identity.to_string(),
                detail,
            }
        } else {
            ConnectError::Unreachable {
                url: url.to_string(),
                detail,
            }
        }
    })?;
    Ok(Connection {
        client,
        identity: identity.clone(),
        events,
    })
}

/// The server did not answer a sync round trip.
#[derive(Debug, thiserror::Error)]
#[error("no answer from nats-server within {0:?}")]
pub struct SyncTimeout(pub Duration);

impl Connection {
    /// A round trip through the server: when it returns, the server has processed every
    /// subscription and message this connection sent before. (`flush` only empties the local
    /// write buffer.) Needs publish permission on [`Subject::sync`], which nobody subscribes.
    pub async fn sync(&self) -> Result<(), SyncTimeout> {
        let wait = Duration::from_secs(5);
        let subject = Subject::sync(&self.identity).to_string();
        match tokio::time::timeout(wait, self.client.request(subject, bytes::Bytes::new())).await {
            Err(_) => Err(SyncTimeout(wait)),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                Err(SyncTimeout(wait))
            }
            // "No responders" is the expected answer; any answer proves the round trip.
            Ok(_) => Ok(()),
        }
    }

    /// Events from now on (subscribe before acting, then wait).
    pub fn events(&self) -> broadcast::Receiver<ConnEvent> {
        self.events.subscribe()
    }

    /// Waits up to `timeout` for an event matching `pred`; returns it, or None on timeout.
    pub async fn wait_for(
        rx: &mut broadcast::Receiver<ConnEvent>,
        timeout: Duration,
        pred: impl Fn(&ConnEvent) -> bool,
    ) -> Option<ConnEvent> {
        tokio::time::timeout(timeout, async {
            loop {
                match rx.recv().await {
                    Ok(ev) if pred(&ev) => return Some(ev),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_parsed_from_server_errors() {
        assert_eq!(
            parse_violation("Permissions Violation for Publish to \"nexus.read\""),
            Some(Violation::Publish("nexus.read".into()))
        );
        assert_eq!(
            parse_violation("permissions violation for subscription to \"cognis.>\""),
            Some(Violation::Subscribe("cognis.>".into()))
        );
        assert_eq!(parse_violation("Stale Connection"), None);
    }
}
