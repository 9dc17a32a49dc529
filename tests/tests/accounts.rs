//! Accounts are the trust boundary: the audit account sees the exported subjects (audit
//! events, component lifecycle, key-directory puts) and nothing else from the ecosystem
//! account, and auditors cannot publish.

use futures::StreamExt;
use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_nats::client::{ConnEvent, Violation};
use ozone_nats::Connection;
use ozone_tests::{with_permissions, TestEcosystem};
use std::time::Duration;

type R = anyhow::Result<()>;

#[tokio::test]
async fn only_audit_subjects_cross_into_the_audit_account() -> R {
    // A probe in the audit account that may subscribe to everything: whatever it sees
    // crossed the account boundary. (Real auditors may subscribe only to `audit.>`.)
    let eco = TestEcosystem::start_with(
        |t| {
            t.issue(IdentityKind::Auditor, "probe")?;
            t.issue(IdentityKind::Auditor, "siem")?;
            Ok(())
        },
        |config| {
            // The probe may subscribe to everything and publish to its sync subject, so the
            // test can tell when its subscription is live.
            with_permissions(
                &config,
                &Identity::new(IdentityKind::Auditor, "probe")
                    .unwrap_or_else(|e| panic!("{e}")),
                r#"{ publish: { allow: ["ecosystem.sync.auditor-probe"] }, subscribe: { allow: [">"] } }"#,
            )
        },
    )
    .await?;
    let probe = eco
        .connect(&Identity::new(IdentityKind::Auditor, "probe")?)
        .await?;
    let mut everything = probe.client.subscribe(">").await?;
    // The probe hears its own sync publish only once its `>` subscription is live.
    probe
        .client
        .publish("ecosystem.sync.auditor-probe", "live?".into())
        .await?;
    let echo = tokio::time::timeout(Duration::from_secs(5), everything.next()).await?;
    assert_eq!(
        echo.map(|m| m.subject.to_string()).as_deref(),
        Some("ecosystem.sync.auditor-probe")
    );

    let core = eco.connect(&Identity::component(Component::Core)).await?;
    let spark = eco.connect(&Identity::component(Component::Spark)).await?;
    for subject in [
        "spark.generate",
        "ecosystem.phase.ozone-studio",
        "ecosystem.selfcheck.ozone-studio",
    ] {
        core.client
            .publish(subject, "ecosystem-only".into())
            .await?;
    }
    spark
        .client
        .publish("audit.spark.keys", "audit event".into())
        .await?;
    core.sync().await?;
    spark.sync().await?;

    // Lifecycle and audit events cross (both sealed to auditors); work and self-checks do not.
    let mut crossed = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(5), everything.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        crossed.push(m.subject.to_string());
    }
    crossed.sort();
    assert_eq!(
        crossed,
        ["audit.spark.keys", "ecosystem.phase.ozone-studio"]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(400), everything.next())
            .await
            .is_err(),
        "a second message crossed"
    );

    // A real auditor: reads audit events, may publish nothing, may not subscribe elsewhere.
    let siem = eco
        .connect(&Identity::new(IdentityKind::Auditor, "siem")?)
        .await?;
    let mut events = siem.events();
    let mut audit = siem.client.subscribe("audit.>").await?;
    let _ = siem.client.subscribe("spark.>").await?;
    let denied_sub = Connection::wait_for(&mut events, Duration::from_secs(2), |e| {
        *e == ConnEvent::Violation(Violation::Subscribe("spark.>".into()))
    })
    .await;
    assert!(
        denied_sub.is_some(),
        "an auditor subscribed outside audit.>"
    );
    // The denied subscribe above came back after the audit subscribe was processed.
    spark
        .client
        .publish("audit.spark.denied", "x".into())
        .await?;
    spark.sync().await?;
    assert!(tokio::time::timeout(Duration::from_secs(5), audit.next())
        .await?
        .is_some());
    siem.client
        .publish("audit.spark.forged", "x".into())
        .await?;
    siem.client.flush().await?;
    let denied = Connection::wait_for(&mut events, Duration::from_secs(2), |e| {
        *e == ConnEvent::Violation(Violation::Publish("audit.spark.forged".into()))
    })
    .await;
    assert!(denied.is_some(), "an auditor published");
    Ok(())
}
