//! Subscriptions that yield opened messages.

use super::open::{decode_payload, decoded, received_on};
use super::{Bus, BusError, Received};
use futures::StreamExt;
use ozone_bus_schemas::Subject;
use ozone_security::envelope::{EnvelopeError, Freshness};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

impl Bus {
    /// Subscribes (as part of `queue` if given); a denied subscription is `AccessDenied`.
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        subject: &Subject,
        queue: Option<&str>,
    ) -> Result<TypedSubscriber<T>, BusError> {
        let mut events = self.conn.events();
        let sub = match queue {
            Some(q) => {
                self.conn
                    .client
                    .queue_subscribe(subject.to_string(), q.to_string())
                    .await
            }
            None => self.conn.client.subscribe(subject.to_string()).await,
        }
        .map_err(BusError::nats)?;
        self.check_denied(&mut events, subject.as_str())
            .await
            .map_err(|e| self.denied(e))?;
        Ok(TypedSubscriber {
            bus: self.clone(),
            inner: sub,
            pattern: subject.clone(),
            settle_aside: true,
            settling: Settling::default(),
            _t: PhantomData,
        })
    }
}

/// A subscription yielding opened messages (or the reason each bad one was refused).
#[derive(Debug)]
pub struct TypedSubscriber<T> {
    pub(super) bus: Bus,
    pub(super) inner: async_nats::Subscriber,
    /// What was subscribed to: a JetStream push consumer delivers stored messages under their
    /// original subjects to whatever deliver subject its creator chose, so a message whose
    /// subject this pattern does not match was redirected, not published to us.
    pub(super) pattern: Subject,
    /// Whether messages from senders not in our directory yet are opened aside (a
    /// subscription with many senders), or in order (a reply stream from one responder).
    pub(super) settle_aside: bool,
    pub(super) settling: Settling<T>,
    pub(super) _t: PhantomData<T>,
}

/// Messages opened aside because their sender's key is not in our directory yet (see
/// [`Bus::open_settled`]): each waits on its own, so junk claiming an unknown sender does not
/// hold up the other senders' messages on a broadcast.
pub(super) struct Settling<T>(futures::stream::FuturesUnordered<SettlingOpen<T>>);

/// One message being opened aside.
type SettlingOpen<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Received<T>, BusError>> + Send>>;

impl<T> std::fmt::Debug for Settling<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Settling({})", self.0.len())
    }
}

impl<T> Default for Settling<T> {
    fn default() -> Self {
        Settling(futures::stream::FuturesUnordered::new())
    }
}

impl<T: DeserializeOwned + Send + 'static> TypedSubscriber<T> {
    /// The next message; `None` when the subscription ends.
    pub async fn next(&mut self) -> Option<Result<Received<T>, BusError>> {
        loop {
            // Nothing opened aside (the steady state): a plain wait, not a select! that polls
            // both in a random order for every message.
            let next = if self.settling.0.is_empty() {
                self.inner.next().await
            } else {
                tokio::select! {
                    Some(settled) = self.settling.0.next() => return Some(settled),
                    msg = self.inner.next() => msg,
                }
            };
            let msg = match next {
                Some(m) => m,
                None => return self.settling.0.next().await,
            };
            // The server's own "no responders" status (a request nobody serves): not a forgery.
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Some(Err(BusError::NoResponders(msg.subject.to_string())));
            }
            if !self.pattern.matches(&msg.subject) {
                let e = BusError::Misdelivered {
                    subject: msg.subject.to_string(),
                    subscribed: self.pattern.to_string(),
                };
                return Some(Err(self.bus.rejected(&msg.subject, &msg.payload, e)));
            }
            if !self.settle_aside {
                return Some(self.bus.open_typed_settled(msg).await);
            }
            // Opened at once when it can be; refused at once unless the directory may only be
            // lagging behind its sender.
            let first = self.bus.open_plain(&msg, Freshness::Live, None, |p| {
                decode_payload(&msg.subject, p)
            });
            let aside = match &first {
                Ok(_) => false,
                Err(BusError::Envelope { source, .. }) => match source {
                    EnvelopeError::UnknownSender { .. } => true,
                    EnvelopeError::UnknownSession { .. } => {
                        if !self.bus.kid_unknown(&msg) {
                            // A round trip to the session bucket, not a wait: in order.
                            return Some(self.bus.open_typed_settled(msg).await);
                        }
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            };
            if aside {
                let bus = self.bus.clone();
                self.settling
                    .0
                    .push(Box::pin(async move { bus.open_typed_settled(msg).await }));
                continue;
            }
            return Some(match first {
                Ok(opened) => decoded(received_on(msg.subject, msg.reply, opened)),
                Err(e) => Err(self.bus.rejected(&msg.subject, &msg.payload, e)),
            });
        }
    }
}
