//! Publishing, requests and replies.

use super::handle::lock_err;
use super::subscriber::Settling;
use super::{coarse_now_ms, Bus, BusError, Received, TypedSubscriber, SCHEMA_VERSION};
use crate::client::{ConnEvent, Violation};
use crate::Connection;
use ozone_bus_schemas::{AuditKind, Identity, Subject};
use ozone_security::envelope::{Form, SealTo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

impl Bus {
    /// Publishes an event, sealed to the subject's subscribers. A denied publish comes back as
    /// `AccessDenied` (checked with a round trip through the server).
    pub async fn publish(
        &self,
        subject: &Subject,
        message: &impl Serialize,
    ) -> Result<(), BusError> {
        // Listen before publishing: the server's -ERR may arrive at once.
        let mut events = self.conn.events();
        self.publish_nowait(subject, message).await?;
        self.check_denied(&mut events, subject.as_str())
            .await
            .map_err(|e| self.denied(e))
    }

    /// Publishes without waiting for the server round trip (for throughput); a denial is
    /// still reported on the connection's events.
    pub async fn publish_nowait(
        &self,
        subject: &Subject,
        message: &impl Serialize,
    ) -> Result<(), BusError> {
        let sealed = self.seal_to_subscribers(subject, message)?;
        self.conn
            .client
            .publish(subject.to_string(), sealed)
            .await
            .map_err(BusError::nats)
    }

    pub(super) async fn check_denied(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<ConnEvent>,
        subject: &str,
    ) -> Result<(), BusError> {
        self.conn.sync().await.map_err(BusError::nats)?;
        // The -ERR for a denied operation arrives before the sync's answer.
        while let Ok(ev) = events.try_recv() {
            if let ConnEvent::Violation(Violation::Publish(s) | Violation::Subscribe(s)) = ev {
                if s == subject {
                    return Err(BusError::AccessDenied(s));
                }
            }
        }
        Ok(())
    }

    /// Sends a sealed request and opens the sealed reply. "No responders" (nobody subscribed
    /// right now: a responder reconnecting after a server restart, say) and a connection lost
    /// while waiting are retried with backoff until `timeout` has passed, so a server restart
    /// shorter than the deadline is invisible to the caller. A request sent again after a lost
    /// connection may have been served already: responders answer idempotently. Each try is
    /// sealed afresh (the replay guard refuses an envelope seen before).
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &Subject,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.request_once(subject, request, left).await {
                Err(e @ (BusError::NoResponders(_) | BusError::Disconnected(_))) => {
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                // The caller asked for `timeout` in all, not per try.
                Err(BusError::Timeout(_)) => return Err(BusError::Timeout(timeout)),
                other => return other,
            }
        }
    }

    /// One try of [`Bus::request`], waiting at most `timeout`.
    async fn request_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &Subject,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, BusError> {
        let sealed = self.seal_to_subscribers(subject, request)?;
        // The client's shared reply subscription (under this identity's private inbox
        // prefix): no SUB/UNSUB round per request.
        let mut events = self.conn.events();
        let request = async_nats::Request::new()
            .payload(sealed)
            .timeout(Some(timeout));
        let reply = tokio::select! {
            r = self.conn.client.send_request(subject.to_string(), request) => match r {
                Ok(m) => m,
                Err(e) => return Err(match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => BusError::Timeout(timeout),
                    async_nats::RequestErrorKind::NoResponders => BusError::NoResponders(subject.to_string()),
                    _ => BusError::nats(e),
                }),
            },
            v = Connection::wait_for(&mut events, timeout, |e| *e == ConnEvent::Disconnected || matches!(e, ConnEvent::Violation(Violation::Publish(s)) if s == subject.as_str())) => {
                return Err(match v {
                    // The reply, if any, was lost with the connection.
                    Some(ConnEvent::Disconnected) => BusError::Disconnected(subject.to_string()),
                    Some(_) => self.denied(BusError::AccessDenied(subject.to_string())),
                    None => BusError::Timeout(timeout),
                });
            }
        };
        match self.open_settled::<Resp>(&reply).await {
            Ok(r) => Ok(r.message),
            Err(e) => Err(self.rejected(&reply.subject, &reply.payload, e)),
        }
    }

    /// Sends a sealed request whose answer is a stream of messages (each sealed to us) on a
    /// fresh inbox of ours. If nobody serves `subject`, the stream yields `NoResponders`.
    pub async fn request_stream<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &Subject,
        request: &Req,
    ) -> Result<TypedSubscriber<Resp>, BusError> {
        let sealed = self.seal_to_subscribers(subject, request)?;
        let inbox = self.conn.client.new_inbox();
        let pattern = Subject::parse(&inbox).map_err(BusError::nats)?;
        let sub = self
            .conn
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(BusError::nats)?;
        self.conn
            .client
            .publish_with_reply(subject.to_string(), inbox, sealed)
            .await
            .map_err(BusError::nats)?;
        Ok(TypedSubscriber {
            bus: self.clone(),
            inner: sub,
            pattern,
            settle_aside: false,
            settling: Settling::default(),
            _t: PhantomData,
        })
    }

    /// Answers a request: sealed to the authenticated requester only, on its reply inbox.
    pub async fn reply<T>(
        &self,
        to: &Received<T>,
        response: &impl Serialize,
    ) -> Result<(), BusError> {
        let Some(inbox) = &to.reply else {
            return Err(BusError::Invalid {
                subject: to.subject.to_string(),
                detail: "no reply subject".into(),
            });
        };
        if !Subject::in_inbox_of(inbox, &Identity::inbox_stem_of(&to.sender)) {
            let refused = BusError::ForeignReply {
                subject: to.subject.to_string(),
                reply: inbox.to_string(),
                sender: to.sender.to_string(),
            };
            self.audit(AuditKind::MessageRejected {
                subject: to.subject.to_string(),
                reason: refused.to_string(),
                claimed_sender: Some(to.sender.to_string()),
            });
            return Err(refused);
        }
        let now = coarse_now_ms();
        let key = {
            let dir = self.keys.directory.read().map_err(lock_err)?;
            dir.current(&to.sender, now)
                .ok_or_else(|| BusError::NoKey(to.sender.to_string()))?
        };
        let route = self.reply_route(inbox.as_str())?;
        let to = SealTo {
            subject: inbox.as_str(),
            route: &route,
            schema: SCHEMA_VERSION,
            recipients: &[key],
            form: Form::CompactWhenPublished,
        };
        self.publish_sealed(inbox.clone(), to, response, now).await
    }

    /// The route a reply on `inbox` is sealed in: the requester's whole inbox,
    /// `_INBOX.<requester>.>`, so a server keeps one session per requester. An inbox of
    /// another shape binds its session to itself alone.
    fn reply_route(&self, inbox: &str) -> Result<Arc<str>, BusError> {
        // `_INBOX.<requester>`, the part before the request's own tokens.
        let Some(prefix) = Subject::requester_inbox(inbox) else {
            return Ok(inbox.into());
        };
        let mut routes = self.reply_routes.lock().map_err(lock_err)?;
        if let Some(route) = routes.get(prefix) {
            return Ok(route.clone());
        }
        if routes.len() > 4096 {
            routes.clear(); // bounded: requesters are identities, but never trust a count
        }
        let route: Arc<str> = format!("{prefix}.>").into();
        routes.insert(prefix.into(), route.clone());
        Ok(route)
    }
}
