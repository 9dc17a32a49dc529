//! The console operator: the identity the `ozone` command speaks as. It has its own
//! certificate (User CA), NATS user and key ring, calls only the components that take
//! operators' requests (SPARK), and nothing it does borrows a component's name or rights.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use ozone_bus_schemas::spark::{self, ModelsRequest};
use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind};
use ozone_nats::bus::Bus;
use ozone_nats::client::Violation;
use ozone_nats::KeyDirectory;
use ozone_security::envelope::Rotation;
use ozone_security::pki::CONSOLE_OPERATOR;
use ozone_spark_client::{new_request_id, SparkClient};
use ozone_tests::{audited, expect_violation, SparkProcess, TestEcosystem};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

type R = anyhow::Result<()>;
const CLI: &str = env!("CARGO_BIN_EXE_ozone-cli");
const WAIT: Duration = Duration::from_secs(2);
/// Long enough for a delivery on loopback that should not happen to have happened.
const QUIET: Duration = Duration::from_millis(400);

fn console() -> Identity {
    Identity::new(IdentityKind::Operator, CONSOLE_OPERATOR).unwrap()
}

#[tokio::test]
async fn the_console_operator_has_its_own_narrow_rights() -> R {
    // `ozone init` issued the console operator; a second operator plays the eavesdropper.
    let eco = TestEcosystem::start_with(
        |t| t.issue(IdentityKind::Operator, "mallory").map(|_| ()),
        |c| c,
    )
    .await?;
    let op = eco.connect(&console()).await?;
    let cognis = eco.connect(&Identity::component(Component::Cognis)).await?;
    let spark = eco.connect(&Identity::component(Component::Spark)).await?;

    // Publishing anywhere but SPARK's requests and its own key slots is refused, and nothing
    // arrives: another component's requests, BRIDGE's key entry, a phase announcement, an
    // audit event under BRIDGE's name.
    let mut watched = cognis.client.subscribe("cognis.remember").await?;
    cognis.sync().await?;
    let mut events = op.events();
    for subject in [
        "cognis.remember",
        "$KV.ozone-keys.component.bridge.0",
        "$KV.ozone-sessions.bridge.00",
        "ecosystem.phase.bridge",
        "audit.bridge.rejected",
        "$JS.API.STREAM.PURGE.KV_ozone-keys",
    ] {
        op.client.publish(subject, "forged".into()).await?;
        op.client.flush().await?;
        expect_violation(&op, &mut events, Violation::Publish(subject.into())).await?;
    }
    op.sync().await?;
    assert!(
        tokio::time::timeout(QUIET, watched.next()).await.is_err(),
        "the operator's forbidden publish reached COGNIS"
    );

    // It cannot pose as a SPARK worker, nor read BRIDGE's replies.
    let mut as_worker = op
        .client
        .queue_subscribe("spark.generate", "spark-workers".into())
        .await?;
    op.client.flush().await?;
    expect_violation(
        &op,
        &mut events,
        Violation::Subscribe("spark.generate".into()),
    )
    .await?;
    let mut spy = op.client.subscribe("_INBOX.bridge.>").await?;
    op.client.flush().await?;
    expect_violation(
        &op,
        &mut events,
        Violation::Subscribe("_INBOX.bridge.>".into()),
    )
    .await?;
    let bridge = eco.connect(&Identity::component(Component::Bridge)).await?;
    bridge
        .client
        .publish("spark.generate", "work".into())
        .await?;
    bridge.sync().await?;
    spark
        .client
        .publish("_INBOX.bridge.answer", "secret".into())
        .await?;
    spark.sync().await?;
    assert!(tokio::time::timeout(QUIET, as_worker.next()).await.is_err());
    assert!(tokio::time::timeout(QUIET, spy.next()).await.is_err());

    // SPARK answers on the operator's inbox; COGNIS, which takes no operators' requests,
    // cannot; another operator cannot listen there.
    // (A subscription over the whole inbox would also catch `sync`'s answer: flush instead.)
    let mut inbox = op.client.subscribe("_INBOX.operator.console.>").await?;
    op.client.flush().await?;
    let mallory = eco
        .connect(&Identity::new(IdentityKind::Operator, "mallory")?)
        .await?;
    let mut mallory_events = mallory.events();
    let mut eavesdrop = mallory
        .client
        .subscribe("_INBOX.operator.console.>")
        .await?;
    mallory.client.flush().await?;
    expect_violation(
        &mallory,
        &mut mallory_events,
        Violation::Subscribe("_INBOX.operator.console.>".into()),
    )
    .await?;
    let mut cognis_events = cognis.events();
    cognis
        .client
        .publish("_INBOX.operator.console.x", "unsolicited".into())
        .await?;
    cognis.client.flush().await?;
    expect_violation(
        &cognis,
        &mut cognis_events,
        Violation::Publish("_INBOX.operator.console.x".into()),
    )
    .await?;
    spark
        .client
        .publish("_INBOX.operator.console.y", "answer".into())
        .await?;
    spark.sync().await?;
    let got = tokio::time::timeout(WAIT, inbox.next()).await?;
    assert_eq!(
        got.map(|m| m.subject.to_string()).as_deref(),
        Some("_INBOX.operator.console.y"),
        "only SPARK's answer reaches the operator"
    );
    assert!(tokio::time::timeout(QUIET, eavesdrop.next()).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_asks_spark_under_its_own_name() -> R {
    let eco = TestEcosystem::audited().await?;
    let _worker = SparkProcess::start(CLI, &eco.t.home, &[])?;
    let id = console();
    let bus = Bus::start(eco.connect(&id).await?, &eco.t.home, Rotation::daily()).await?;
    let client = SparkClient::new(bus.clone());
    client.wait_for_workers(1, Duration::from_secs(90)).await?;

    // A generation and an embedding, answered to the operator.
    let mut q = ozone_bus_schemas::spark::GenerateRequest::chat(
        new_request_id(),
        vec![ozone_bus_schemas::spark::ChatMessage {
            role: "user".into(),
            content: "Say hello.".into(),
        }],
    );
    q.max_tokens = 3;
    let done = client.generate(q, None, |_| {}).await?;
    assert_eq!(done.usage.completion_tokens, 3, "{done:?}");
    let embedded = client.embed(None, vec!["hello".into()]).await?;
    assert_eq!(embedded.vectors.len(), 1);

    // Its own key ring (0600) and signed directory entry, under its URN; no component's.
    let keys = eco.t.home.keys_dir();
    let ring = keys.join("operator-console.keyring");
    assert_eq!(
        std::fs::metadata(&ring)?.permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !keys.join("bridge.keyring").exists(),
        "joining as the operator touched BRIDGE's key ring"
    );
    let entries = KeyDirectory::open(&bus.connection().client)
        .await?
        .entries_of(&id)
        .await?;
    assert!(
        entries
            .iter()
            .any(|(key, e)| key.starts_with("operator.console.")
                && e.as_ref()
                    .is_ok_and(|e| e.service == "urn:ozone:operator:console")),
        "{entries:?}"
    );

    // An authentic request whose reply subject is BRIDGE's inbox: answering it would lend
    // the operator SPARK's right to write there. SPARK refuses it and audits the refusal;
    // BRIDGE's inbox stays quiet.
    let bridge = eco.connect(&Identity::component(Component::Bridge)).await?;
    let mut bridge_inbox = bridge.client.subscribe("_INBOX.bridge.>").await?;
    bridge.client.flush().await?;
    let subject = spark::operation(spark::MODELS);
    let sealed = bus.seal(&subject, &ModelsRequest {})?;
    let conn = bus.connection();
    conn.client
        .publish_with_reply(
            subject.to_string(),
            "_INBOX.bridge.stolen".to_string(),
            sealed,
        )
        .await?;
    conn.sync().await?;
    assert!(
        tokio::time::timeout(QUIET, bridge_inbox.next())
            .await
            .is_err(),
        "SPARK answered into BRIDGE's inbox for the operator"
    );
    audited(&eco, "SPARK refusing the foreign reply subject", |by, e| {
        by == "spark"
            && matches!(e, AuditKind::MessageRejected { claimed_sender: Some(s), reason, .. }
                if s == "urn:ozone:operator:console" && reason.contains("_INBOX.bridge.stolen"))
    })
    .await?;
    Ok(())
}
