//! Issue 18, what one authenticated but rogue component can do to the shared streams: each
//! test performs the attack with FORGE's real certificate and permissions (a raw mTLS
//! connection, no envelope library where the attack does not need it) against a real
//! nats-server started from the generated configuration, and shows it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use futures::StreamExt;
use ozone_bus_schemas::streams::{key_entry_key, KEY_BUCKET, KEY_STREAM, SESSION_BUCKET};
use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind};
use ozone_nats::audit::{AuditReader, AuditRecord};
use ozone_nats::client::{ConnEvent, Violation};
use ozone_nats::{Connection, KeyDirectory};
use ozone_security::envelope::{auditor_key, Rotation};
use ozone_security::keydir::{Directory, DirectoryTrust};
use ozone_tests::TestEcosystem;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

/// Long enough for a refused publish's error to come back on loopback.
const WAIT: Duration = Duration::from_secs(3);

fn forge() -> Identity {
    Identity::component(Component::Forge)
}

/// Every key in the key directory now, read through `conn`.
async fn keys_in(conn: &Connection) -> anyhow::Result<BTreeSet<String>> {
    Ok(ozone_tests::bucket_entries(conn, KEY_STREAM, KEY_BUCKET)
        .await?
        .into_keys()
        .collect())
}

/// Publishes `payload` on `subject` through JetStream with `headers`; the server's answer.
async fn js_put(
    conn: &Connection,
    subject: &str,
    headers: &[(&str, &str)],
    payload: Vec<u8>,
) -> Result<u64, String> {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, *v);
    }
    let js = jetstream::new(conn.client.clone());
    let ack = js
        .publish_with_headers(subject.to_string(), h, payload.into())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
}

/// Publishes a forbidden JetStream API call on `conn` and waits for the server's refusal.
async fn refused_api_call(conn: &Connection, subject: &str, body: &str) -> R {
    let mut events = conn.events();
    conn.client
        .publish(subject.to_string(), body.to_string().into())
        .await?;
    conn.client.flush().await?;
    let v = Violation::Publish(subject.to_string());
    let got =
        Connection::wait_for(&mut events, WAIT, |e| *e == ConnEvent::Violation(v.clone())).await;
    anyhow::ensure!(got.is_some(), "no violation reported for {subject}");
    Ok(())
}

/// Every record in the audit stream, read as the console auditor.
async fn audit_records(eco: &TestEcosystem) -> anyhow::Result<Vec<AuditRecord>> {
    let id = Identity::new(IdentityKind::Auditor, "console")?;
    let conn = eco.connect(&id).await?;
    let reader = AuditReader::new(
        &conn,
        auditor_key::load(&eco.t.home, &id)?,
        DirectoryTrust::load(&eco.t.home)?,
    );
    let records = reader.records(None, false).await?;
    futures::pin_mut!(records);
    let mut out = Vec::new();
    while let Some(r) = records.next().await {
        out.push(r?);
    }
    Ok(out)
}

#[tokio::test]
async fn finding_01_rollup_put_cannot_wipe_the_key_directory() -> R {
    let eco = TestEcosystem::audited().await?;
    // Three running services, each with its entry; the auditors' entries from `prepare`.
    let _spark = eco.join(Component::Spark).await?;
    let _core = eco.join(Component::Core).await?;
    let _forge_service = eco.join(Component::Forge).await?;
    let rogue = eco.connect(&forge()).await?;
    let before = keys_in(&rogue).await?;
    assert!(before.contains("auditor.console.0") && before.contains("auditor.siem.0"));
    assert_eq!(
        before
            .iter()
            .filter(|k| k.starts_with("component."))
            .count(),
        3,
        "{before:?}"
    );

    // A put to FORGE's own key (allowed) carrying a roll-up header: refused by the stream.
    for rollup in ["all", "sub"] {
        let subject = format!("$KV.{KEY_BUCKET}.{}", key_entry_key(&forge(), 424242));
        let refused = js_put(&rogue, &subject, &[("Nats-Rollup", rollup)], b"x".to_vec()).await;
        let Err(e) = refused else {
            panic!("a roll-up ({rollup}) was stored: {refused:?}")
        };
        assert!(e.contains("rollup not permitted"), "{e}");
        let subject = format!("$KV.{SESSION_BUCKET}.forge.00");
        let refused = js_put(&rogue, &subject, &[("Nats-Rollup", rollup)], b"x".to_vec()).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("rollup not permitted")),
            "session bucket roll-up ({rollup}): {refused:?}"
        );
    }
    // The stream API that would purge, delete or reconfigure: refused by the permissions.
    for (api, body) in [
        (format!("$JS.API.STREAM.PURGE.{KEY_STREAM}"), "{}"),
        (
            format!("$JS.API.STREAM.PURGE.{KEY_STREAM}"),
            r#"{"filter":"$KV.ozone-keys.>"}"#,
        ),
        (
            format!("$JS.API.STREAM.MSG.DELETE.{KEY_STREAM}"),
            r#"{"seq":1}"#,
        ),
        (format!("$JS.API.STREAM.UPDATE.{KEY_STREAM}"), "{}"),
        (format!("$JS.API.STREAM.DELETE.{KEY_STREAM}"), ""),
    ] {
        refused_api_call(&rogue, &api, body).await?;
    }
    assert_eq!(keys_in(&rogue).await?, before, "entries lost");

    // What remains possible is a delete marker on a key FORGE may write: its own. The running
    // FORGE service notices its entry is gone and puts it again, and audits it.
    let forge_key = before
        .iter()
        .find(|k| k.starts_with("component.forge."))
        .cloned()
        .unwrap();
    let store = jetstream::new(rogue.client.clone())
        .get_key_value(KEY_BUCKET)
        .await?;
    store.delete(&forge_key).await?;
    assert!(store.get(&forge_key).await?.is_none());
    let deleted_at = Instant::now();
    let limit = ozone_nats::bus::HEAL_EVERY + Duration::from_secs(5);
    while store.get(&forge_key).await?.is_none() {
        assert!(
            deleted_at.elapsed() < limit,
            "FORGE's entry not back within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("entry back after {:?}", deleted_at.elapsed());
    assert_eq!(keys_in(&rogue).await?, before);
    // The entry that came back verifies (a follower would use it).
    let keydir = KeyDirectory::open(&rogue.client).await?;
    let epoch: u64 = forge_key.rsplit('.').next().unwrap().parse()?;
    let entry = keydir.entry(&forge(), epoch).await?.unwrap().unwrap();
    assert_eq!(key_entry_key(&forge(), entry.epoch), forge_key);

    let started = Instant::now();
    loop {
        let restored = audit_records(&eco).await?.into_iter().any(|r| {
            matches!(r, AuditRecord::Event { sender, event, .. }
                if sender == "forge"
                    && matches!(&event.event, AuditKind::DirectoryEntryRestored { key, found }
                        if *key == forge_key && found == "no entry"))
        });
        if restored {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the restore is not audited"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Deployments from before the hardening have buckets as async-nats creates them (roll-ups
/// allowed, purges not denied): `ozone up` (here `prepare`, as the core) brings them to it.
#[tokio::test]
async fn finding_01_buckets_created_before_the_hardening_are_hardened_by_ozone_up() -> R {
    let eco = TestEcosystem::start().await?;
    let core = eco.connect(&Identity::component(Component::Core)).await?;
    let js = jetstream::new(core.client.clone());
    for bucket in [KEY_BUCKET, SESSION_BUCKET] {
        js.create_key_value(kv::Config {
            bucket: bucket.into(),
            history: 1,
            ..Default::default()
        })
        .await?;
    }
    let rogue = eco.connect(&forge()).await?;
    // The old configuration lets a roll-up through (what the finding reported).
    let subject = format!("$KV.{KEY_BUCKET}.component.forge.1");
    js_put(&rogue, &subject, &[("Nats-Rollup", "all")], b"x".to_vec())
        .await
        .map_err(anyhow::Error::msg)?;

    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    for bucket in [KEY_BUCKET, SESSION_BUCKET] {
        let mut stream = js.get_stream(format!("KV_{bucket}")).await?;
        let c = stream.info().await?.config.clone();
        assert!(
            !c.allow_rollup && c.deny_purge && c.deny_delete,
            "{bucket}: {c:?}"
        );
        assert!(c.max_message_size > 0 && c.max_bytes > 0, "{bucket}: {c:?}");
    }
    let refused = js_put(&rogue, &subject, &[("Nats-Rollup", "all")], b"x".to_vec()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("rollup not permitted")),
        "{refused:?}"
    );
    assert!(keys_in(&rogue).await?.contains("auditor.console.0"));
    Ok(())
}

/// Messages in a stream and its bytes, read through `conn`.
async fn stream_state(conn: &Connection, stream: &str) -> anyhow::Result<(u64, u64)> {
    let mut s = jetstream::new(conn.client.clone())
        .get_stream(stream)
        .await?;
    let info = s.info().await?;
    Ok((info.state.messages, info.state.bytes))
}

/// Finding 13 (and 15 for one write): FORGE writing 1 MiB values under its own keys of both
/// buckets. Each write is refused by the bucket's stream, and its copy by the audit stream, so
/// nothing reaches the readers that follow them.
#[tokio::test]
async fn finding_13_one_member_cannot_store_large_values_in_the_shared_buckets() -> R {
    let eco = TestEcosystem::audited().await?;
    let _spark = eco.join(Component::Spark).await?;
    let rogue = eco.connect(&forge()).await?;
    let console = eco
        .connect(&Identity::new(IdentityKind::Auditor, "console")?)
        .await?;
    let keys_before = stream_state(&rogue, KEY_STREAM).await?;
    let sessions_before = stream_state(&rogue, "KV_ozone-sessions").await?;
    let audit_before = stream_state(&console, "OZONE_AUDIT").await?;
    const FLOOD: u32 = 50;
    let mib = vec![0x55u8; 1 << 20];
    let mut refused = 0;
    for n in 0..FLOOD {
        for subject in [
            format!("$KV.{KEY_BUCKET}.{}", key_entry_key(&forge(), u64::from(n))),
            format!("$KV.{SESSION_BUCKET}.forge.{n:02x}"),
        ] {
            match js_put(&rogue, &subject, &[], mib.clone()).await {
                Err(e) if e.contains("message size exceeds maximum") => refused += 1,
                other => panic!("{subject}: {other:?}"),
            }
        }
    }
    assert_eq!(refused, 2 * FLOOD);
    assert_eq!(stream_state(&rogue, KEY_STREAM).await?, keys_before);
    assert_eq!(
        stream_state(&rogue, "KV_ozone-sessions").await?,
        sessions_before
    );
    // The audit stream copies every `$KV.ozone-keys.>` publish; it refuses these copies.
    let audit_after = stream_state(&console, "OZONE_AUDIT").await?;
    assert!(
        audit_after.1 < audit_before.1 + (64 << 10),
        "audit stream grew from {audit_before:?} to {audit_after:?}"
    );
    eprintln!(
        "{refused} writes of 1 MiB refused; key bucket {keys_before:?}, audit stream {audit_before:?} -> {audit_after:?}"
    );
    // A legitimate entry still fits, and a new follower loads the directory at once.
    let _cognis = eco.join(Component::Cognis).await?;
    let directory = Arc::new(RwLock::new(Directory::default()));
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let loaded = Instant::now();
    let _follower = KeyDirectory::open(&rogue.client)
        .await?
        .follow(DirectoryTrust::load(&eco.t.home)?, directory.clone(), tx)
        .await?;
    let now = ozone_nats::bus::now_ms();
    let dir = directory.read().unwrap();
    assert!(dir.current("spark", now).is_some() && dir.current("cognis", now).is_some());
    assert_eq!(dir.auditors(now).len(), 2);
    eprintln!(
        "a new follower loaded the directory in {:?}",
        loaded.elapsed()
    );
    Ok(())
}

/// Finding 5: 1 MiB messages on FORGE's own audit subjects no longer evict other components'
/// events; the stream refuses them.
#[tokio::test]
async fn finding_05_large_audit_messages_cannot_evict_other_components_events() -> R {
    let eco = TestEcosystem::audited().await?;
    let spark = eco.join(Component::Spark).await?;
    spark.audit(AuditKind::PermissionDenied {
        subject: "evidence".into(),
    });
    let console = eco
        .connect(&Identity::new(IdentityKind::Auditor, "console")?)
        .await?;
    let evidence = |records: &[AuditRecord]| {
        records.iter().any(|r| {
            matches!(r, AuditRecord::Event { sender, event, .. } if sender == "spark"
                && event.event == AuditKind::PermissionDenied { subject: "evidence".into() })
        })
    };
    let started = Instant::now();
    while !evidence(&audit_records(&eco).await?) {
        assert!(started.elapsed() < Duration::from_secs(10), "no evidence");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = stream_state(&console, "OZONE_AUDIT").await?;
    let rogue = eco.connect(&forge()).await?;
    const FLOOD: usize = 100;
    let mib = vec![0x55u8; 1 << 20];
    for _ in 0..FLOOD {
        rogue
            .client
            .publish("audit.forge.rejected", mib.clone().into())
            .await?;
    }
    rogue.client.flush().await?;
    rogue.sync().await?;
    let after = stream_state(&console, "OZONE_AUDIT").await?;
    eprintln!("audit stream before {before:?}, after {FLOOD} x 1 MiB {after:?}");
    assert_eq!(after.0, before.0, "a 1 MiB message was stored");
    let cfg = jetstream::new(console.client.clone())
        .get_stream("OZONE_AUDIT")
        .await?
        .info()
        .await?
        .config
        .clone();
    assert!(cfg.deny_purge && cfg.deny_delete && !cfg.allow_rollup);
    assert!(evidence(&audit_records(&eco).await?));
    Ok(())
}

/// Finding 12: `ozone validate` notices a directory that no longer holds a running service's
/// key (here FORGE's entry replaced with junk by FORGE's own identity, then removed).
#[tokio::test]
async fn finding_12_validate_fails_when_a_running_services_key_is_gone() -> R {
    let eco = TestEcosystem::audited().await?;
    let (home, cfg) = (&eco.t.home, &eco.t.cfg);
    let running = [Component::Forge];
    let rogue = eco.connect(&forge()).await?;
    let epoch = Rotation::daily().epoch_at(ozone_nats::bus::now_ms());
    let subject = format!("$KV.{KEY_BUCKET}.{}", key_entry_key(&forge(), epoch));
    js_put(&rogue, &subject, &[], b"junk".to_vec())
        .await
        .map_err(anyhow::Error::msg)?;
    let ozone::cmd::validate::Outcome::Fail(why) =
        ozone::cmd::validate::directory::check(home, cfg, &running).await
    else {
        panic!("junk in place of FORGE's key passed")
    };
    assert!(why.contains("forge"), "{why}");
    assert!(why.contains("no entry"), "{why}");
    js_put(&rogue, &subject, &[("KV-Operation", "DEL")], Vec::new())
        .await
        .map_err(anyhow::Error::msg)?;
    let outcome = ozone::cmd::validate::directory::check(home, cfg, &running).await;
    assert!(
        matches!(&outcome, ozone::cmd::validate::Outcome::Fail(w) if w.contains("forge")),
        "{outcome:?}"
    );
    // With the service running its entry is there and valid again.
    let _forge_service = eco.join(Component::Forge).await?;
    let outcome = ozone::cmd::validate::directory::check(home, cfg, &running).await;
    assert!(
        matches!(outcome, ozone::cmd::validate::Outcome::Pass(_)),
        "{outcome:?}"
    );
    // FORGE can write no other key than its four slots (tests/rogue_quota.rs, finding 13).
    Ok(())
}
