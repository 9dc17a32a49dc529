//! The component kit serving the example operation of docs/components.md (`scribe.count`) on a
//! real nats-server with the generated configuration: a type plus a handler function is a
//! working operation, and the kit answers and audits what the handler never sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_nats::service::ServiceExt;
use ozone_bus_schemas::operation::{Limits, Operation, OperationSpec, Refusal, ReplyKind};
use ozone_bus_schemas::table::Party;
use ozone_bus_schemas::{AuditKind, Component};
use ozone_nats::bus::Bus;
use ozone_service::kit::{handler_fn, Kit, KitError};
use ozone_service::{Serving, StatsSlot};
use ozone_tests::TestEcosystem;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
pub struct CountRequest {
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountReply {
    Counted { words: u64 },
    Failed(CountError),
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("{0}")]
pub struct CountError(pub String);

impl From<Refusal> for CountError {
    fn from(r: Refusal) -> CountError {
        CountError(r.to_string())
    }
}

#[derive(Debug)]
pub struct Count;

impl Operation for Count {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Scribe,
        name: "count",
        reply: ReplyKind::One,
        callers: Party::Callers,
        limits: Limits {
            max_request_bytes: 64 * 1024,
        },
        doc: "Counts the words of a text.",
    };
    type Request = CountRequest;
    type Reply = CountReply;
    type Error = CountError;

    fn failed(e: CountError) -> Option<CountReply> {
        Some(CountReply::Failed(e))
    }
}

/// The same operation, callable by nobody: NATS lets the core publish on `scribe.>`, so only
/// the kit's own caller check stands between it and the handler.
#[derive(Debug)]
pub struct Sealed;

impl Operation for Sealed {
    const SPEC: OperationSpec = OperationSpec {
        name: "sealed",
        callers: Party::Nobody,
        ..Count::SPEC
    };
    type Request = CountRequest;
    type Reply = CountReply;
    type Error = CountError;

    fn failed(e: CountError) -> Option<CountReply> {
        Some(CountReply::Failed(e))
    }
}

async fn count<Op: Operation>(bus: &Bus, request: &impl Serialize) -> anyhow::Result<CountReply> {
    Ok(bus
        .request(&Op::SPEC.subject(), request, Duration::from_secs(10))
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_is_a_declaration_and_a_handler_function() -> anyhow::Result<()> {
    let eco = TestEcosystem::audited().await?;
    let conn = eco
        .connect(&ozone_bus_schemas::Identity::component(Component::Scribe))
        .await?;
    let scribe = Bus::start(
        conn.clone(),
        &eco.t.home,
        ozone_security::envelope::Rotation::daily(),
    )
    .await?;
    let service = conn.client.service_builder().start("scribe", "0.1.0").await;
    let service = service.map_err(|e| anyhow::anyhow!("micro-service: {e}"))?;
    let (view, _follower) = ozone_service::PhaseView::follow(&scribe).await?;
    let serving = Serving {
        component: Component::Scribe,
        view,
        bus: scribe,
        service: &service,
        instance: "a1b2c3".into(),
        home: eco.t.home.clone(),
        stats: StatsSlot::default(),
    };

    let mut kit = Kit::new(&serving);
    let words = |request: CountRequest, _caller| async move {
        Ok(CountReply::Counted {
            words: request.text.split_whitespace().count() as u64,
        })
    };
    kit.serve::<Count, _>(handler_fn(words)).await?;
    kit.serve::<Sealed, _>(handler_fn(words)).await?;
    // An operation of another component is refused at registration.
    let theirs = kit
        .serve::<ozone_bus_schemas::spark::Models, _>(handler_fn(|_, _| async {
            Err(ozone_bus_schemas::spark::SparkError::Cancelled)
        }))
        .await;
    assert!(
        matches!(theirs, Err(KitError::NotOurs { .. })),
        "{theirs:?}"
    );
    let _tasks = kit.into_tasks();

    // The core calls SCRIBE (`Component::calls`).
    let core = eco.join(Component::Core).await?;
    let text = CountRequest {
        text: "one two  three".into(),
    };
    let reply = count::<Count>(&core, &text).await?;
    assert!(
        matches!(reply, CountReply::Counted { words: 3 }),
        "{reply:?}"
    );

    // What the handler never sees, each answered as the operation's own error.
    let reply = count::<Count>(&core, &serde_json::json!({"txt": 5})).await?;
    assert!(
        matches!(&reply, CountReply::Failed(CountError(d)) if d.contains("not a count request")),
        "{reply:?}"
    );
    let big = CountRequest {
        text: "word ".repeat(14_000),
    };
    let reply = count::<Count>(&core, &big).await?;
    assert!(
        matches!(&reply, CountReply::Failed(CountError(d)) if d.contains("scribe.count takes at most 65536")),
        "{reply:?}"
    );
    let reply = count::<Sealed>(&core, &text).await?;
    assert!(
        matches!(&reply, CountReply::Failed(CountError(d)) if d.contains("ozone-studio may not call scribe.sealed")),
        "{reply:?}"
    );

    // Each refusal is in the audit stream, under SCRIBE, naming the authenticated caller.
    let mut audited = Vec::new();
    for _ in 0..50 {
        audited = ozone_tests::audit_events(&eco, "siem")
            .await?
            .into_iter()
            .filter_map(|(sender, e)| match e {
                AuditKind::MessageRejected {
                    subject,
                    reason,
                    claimed_sender,
                } if sender == "scribe" => Some((subject, reason, claimed_sender)),
                _ => None,
            })
            .collect();
        if audited.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(audited.len(), 3, "{audited:?}");
    assert!(audited
        .iter()
        .all(|(_, _, who)| who.as_deref() == Some("ozone-studio")));
    assert!(audited
        .iter()
        .any(|(s, r, _)| s == "scribe.sealed" && r.contains("may not call")));
    Ok(())
}
