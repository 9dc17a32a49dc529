//! Issue 18, findings 5, 13 and 15: one rogue member exhausting shared JetStream storage with
//! many small writes under its own prefix (NATS has no per-publisher quota inside a stream).
//! Each test floods with FORGE's real certificate and permissions on a raw mTLS connection,
//! far past what the stream could hold without a bound, against a real nats-server started
//! from the generated configuration, and shows every other identity's data stays and that
//! the others can still write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_nats::jetstream;
use futures::StreamExt;
use ozone_bus_schemas::audit::AUDIT_CATEGORIES;
use ozone_bus_schemas::streams::{
    key_entry_key, AUDIT_STREAM, KEY_BUCKET, KEY_STREAM, SESSION_BUCKET, SESSION_STREAM,
};
use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind};
use ozone_nats::audit::{AuditReader, AuditRecord};
use ozone_nats::client::{ConnEvent, Violation};
use ozone_nats::{Connection, SessionStore};
use ozone_security::envelope::{
    auditor_key, Form, SealTo, Sealer, SecretKeyPair, SessionLimits, SessionRecord,
};
use ozone_security::keydir::DirectoryTrust;
use ozone_tests::TestEcosystem;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

/// Long enough for a refused publish's error to come back on loopback.
const WAIT: Duration = Duration::from_secs(3);

fn forge() -> Identity {
    Identity::component(Component::Forge)
}

fn console() -> Identity {
    Identity::new(IdentityKind::Auditor, "console").unwrap()
}

/// A home whose audit stream is `audit_max_bytes` large, with a second auditor, the stream
/// prepared and the auditors' keys published (what `ozone up` does first).
async fn prepared(audit_max_bytes: u64) -> anyhow::Result<TestEcosystem> {
    let eco = TestEcosystem::start_with(
        |t| {
            t.issue(IdentityKind::Auditor, "siem")?;
            std::fs::remove_file(ozone_nats::NatsSettings::path(&t.home))?;
            ozone_nats::NatsSettings {
                audit_max_bytes,
                ..t.settings.clone()
            }
            .write_if_missing(&t.home)?;
            Ok(())
        },
        |c| c,
    )
    .await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    Ok(eco)
}

/// Every key of the key directory now, with its value.
async fn bucket(conn: &Connection) -> anyhow::Result<BTreeMap<String, bytes::Bytes>> {
    ozone_tests::bucket_entries(conn, KEY_STREAM, KEY_BUCKET).await
}

/// Messages per subject in `stream` under `filter`, and the stream's bytes.
async fn per_subject(
    conn: &Connection,
    stream: &str,
    filter: &str,
) -> anyhow::Result<(BTreeMap<String, usize>, u64)> {
    let mut s = jetstream::new(conn.client.clone())
        .get_stream(stream)
        .await?;
    let bytes = s.info().await?.state.bytes;
    let mut subjects = s.info_with_subjects(filter).await?;
    let mut out = BTreeMap::new();
    while let Some(x) = subjects.next().await {
        let (k, n) = x?;
        out.insert(k, n);
    }
    Ok((out, bytes))
}

/// Raw publishes of `payload` on each of `subjects`, with an acknowledgement awaited for
/// every one (in batches: thousands of round trips one by one would take too long).
async fn acked_puts(conn: &Connection, subjects: &[String], payload: &[u8]) -> R {
    let js = jetstream::new(conn.client.clone());
    for batch in subjects.chunks(256) {
        let mut acks = Vec::new();
        for s in batch {
            acks.push(js.publish(s.clone(), payload.to_vec().into()).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    Ok(())
}

/// Publishes on `subject`, which FORGE may not, and waits for the server's refusal.
async fn refused(conn: &Connection, subject: &str) -> R {
    let mut events = conn.events();
    conn.client
        .publish(subject.to_string(), bytes::Bytes::from_static(b"x"))
        .await?;
    conn.client.flush().await?;
    let v = ConnEvent::Violation(Violation::Publish(subject.to_string()));
    let got = Connection::wait_for(&mut events, WAIT, |e| *e == v).await;
    anyhow::ensure!(got.is_some(), "no violation reported for {subject}");
    Ok(())
}

/// Finding 13: about 13,000 entries of at most 8 KiB under FORGE's own prefix used to fill
/// `ozone-keys` (16 MiB, discard new), after which every identity's rotation failed. Now
/// FORGE may write its four slots only: 3,000 puts of 8,000 bytes (24 MB, half again the
/// bucket) leave it four entries; keys beyond them are refused; everyone else's entries stay
/// and the others still put.
#[tokio::test]
async fn finding_13_many_small_key_entries_cannot_fill_the_key_directory() -> R {
    let eco = prepared(1 << 30).await?;
    let _spark = eco.join(Component::Spark).await?;
    let _core = eco.join(Component::Core).await?;
    let rogue = eco.connect(&forge()).await?;
    let before = bucket(&rogue).await?;
    assert!(before.contains_key("auditor.console.0") && before.contains_key("auditor.siem.0"));
    assert!(before.keys().any(|k| k.starts_with("component.spark.")));
    assert!(
        before
            .keys()
            .any(|k| k.starts_with("component.ozone-studio.")),
        "{:?}",
        before.keys()
    );

    const PUTS: usize = 3000;
    let started = Instant::now();
    let subjects: Vec<String> = (0..PUTS as u64)
        .map(|n| format!("$KV.{KEY_BUCKET}.{}", key_entry_key(&forge(), n)))
        .collect();
    acked_puts(&rogue, &subjects, &[0x55; 8000]).await?;
    eprintln!("{PUTS} puts of 8000 bytes in {:?}", started.elapsed());

    // Any other key under its prefix: refused by the permissions, reported as a violation.
    for other in ["4", "1000000", "20418", "0.x"] {
        refused(&rogue, &format!("$KV.{KEY_BUCKET}.component.forge.{other}")).await?;
    }

    let after = bucket(&rogue).await?;
    let forge_keys: BTreeSet<&String> = after
        .keys()
        .filter(|k| k.starts_with("component.forge."))
        .collect();
    assert_eq!(forge_keys.len(), 4, "{forge_keys:?}");
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k} lost or changed");
    }
    let (_, bytes) = per_subject(&rogue, KEY_STREAM, ">").await?;
    eprintln!("bucket holds {bytes} bytes after the flood");
    assert!(bytes < 256 << 10, "{bytes} bytes: the flood was stored");

    // The others still put: the core its auditors' keys, SPARK its entry (the same bytes).
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let spark = eco.connect(&Identity::component(Component::Spark)).await?;
    let (key, value) = before
        .iter()
        .find(|(k, _)| k.starts_with("component.spark."))
        .unwrap();
    acked_puts(&spark, &[format!("$KV.{KEY_BUCKET}.{key}")], value).await?;
    Ok(())
}

/// Finding 5: a flood of messages within the audit stream's 16 KiB limit on FORGE's own
/// `audit.forge.*` used to evict the oldest events of every component once the stream
/// reached its size cap. Now FORGE may publish on its seven categories only, each capped by
/// the stream (`max_msgs_per_subject`, every subject at its cap fitting under the size cap):
/// 2,000 messages of 15 KiB (30 MB into an 8 MiB stream) drop only FORGE's own oldest
/// events; SPARK's and the core's stay, `ozone validate` names the subjects at their cap and
/// the supervisor's look has the core audit each (`audit-quota-reached`).
#[tokio::test]
async fn finding_05_a_flood_of_small_audit_messages_evicts_only_the_flooders_own() -> R {
    let max_bytes = 8u64 << 20;
    let eco = prepared(max_bytes).await?;
    let (home, cfg) = (&eco.t.home, &eco.t.cfg);
    // Every budgeted subject at its cap fits under the size cap; 8 MiB leaves room for a few.
    let cap = usize::try_from(ozone_nats::audit::per_subject_cap(max_bytes))?;
    assert!((2..AUDIT_CATEGORIES.len()).contains(&cap), "{cap}");
    let auditor = eco.connect(&console()).await?;
    // SPARK's and the core's evidence: an event of every category each.
    let spark = eco.join(Component::Spark).await?;
    let core = eco.join(Component::Core).await?;
    for bus in [&spark, &core] {
        bus.audit(AuditKind::KeysErased { epochs: vec![1] });
        bus.audit(AuditKind::MessageRejected {
            subject: "x".into(),
            reason: "test".into(),
            claimed_sender: None,
        });
        bus.audit(AuditKind::DirectoryEntryRejected {
            key: "x".into(),
            reason: "test".into(),
        });
        bus.audit(AuditKind::PermissionDenied {
            subject: "x".into(),
        });
        bus.audit(AuditKind::AuthenticationFailed {
            client: "x".into(),
            detail: "test".into(),
        });
        bus.audit(AuditKind::AuditQuotaReached {
            subject: "x".into(),
            cap: 1,
        });
        bus.audit(AuditKind::TaskFinished {
            task_id: "x".into(),
            state: "failed".into(),
            detail: None,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let (counts, _) = per_subject(&auditor, AUDIT_STREAM, "audit.>").await?;
        if counts.len() == 2 * AUDIT_CATEGORIES.len() {
            break counts;
        }
        assert!(Instant::now() < deadline, "not all audited: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let outcome = ozone::cmd::validate::audit::check(home, cfg).await;
    assert!(
        matches!(outcome, ozone::cmd::validate::Outcome::Pass(_)),
        "{outcome:?}"
    );

    let rogue = eco.connect(&forge()).await?;
    let just_under = vec![0x55u8; (15 << 10) - 64];
    let subjects: Vec<String> = (0..2000)
        .map(|n| {
            format!(
                "audit.forge.{}",
                AUDIT_CATEGORIES[n % AUDIT_CATEGORIES.len()]
            )
        })
        .collect();
    for s in &subjects {
        rogue
            .client
            .publish(s.clone(), just_under.clone().into())
            .await?;
    }
    rogue.client.flush().await?;
    rogue.sync().await?;
    // Subjects outside the categories: refused by the permissions.
    for other in ["audit.forge.flood", "audit.forge.rejected.x"] {
        refused(&rogue, other).await?;
    }

    let (after, bytes) = per_subject(&auditor, AUDIT_STREAM, "audit.>").await?;
    eprintln!("after the flood: {bytes} bytes, {after:?}");
    for cat in AUDIT_CATEGORIES {
        let s = format!("audit.forge.{cat}");
        assert_eq!(after.get(&s).copied(), Some(cap), "{s}");
    }
    for (s, n) in before
        .iter()
        .filter(|(s, _)| !s.starts_with("audit.forge."))
    {
        assert!(after.get(s).is_some_and(|m| m >= n), "{s}: {n} before");
    }
    assert!(bytes < max_bytes, "{bytes} of {max_bytes}");
    assert_eq!(after.len(), before.len() + AUDIT_CATEGORIES.len());

    // The others' evidence still opens and authenticates.
    let reader = AuditReader::new(
        &auditor,
        auditor_key::load(home, &console())?,
        DirectoryTrust::load(home)?,
    );
    let records = reader.records(None, false).await?;
    futures::pin_mut!(records);
    let mut opened = BTreeMap::new();
    while let Some(r) = records.next().await {
        if let AuditRecord::Event { sender, .. } = r? {
            *opened.entry(sender).or_insert(0) += 1;
        }
    }
    for who in ["spark", "ozone-studio"] {
        assert_eq!(opened.get(who), Some(&AUDIT_CATEGORIES.len()), "{opened:?}");
    }

    let ozone::cmd::validate::Outcome::Fail(why) =
        ozone::cmd::validate::audit::check(home, cfg).await
    else {
        panic!("subjects at their cap passed")
    };
    eprintln!("{why}");
    assert!(why.contains("audit.forge.rejected"), "{why}");
    assert!(!why.contains("audit.spark"), "{why}");

    // The supervisor's look: the core audits each subject at its cap, once.
    let mut alerts = ozone::audit_quota::Alerts::default();
    let reported = alerts.check(&auditor, &core).await?;
    assert_eq!(reported.len(), AUDIT_CATEGORIES.len(), "{reported:?}");
    assert!(reported.iter().all(|s| s.starts_with("audit.forge.")));
    assert!(
        alerts.check(&auditor, &core).await?.is_empty(),
        "reported twice"
    );
    let alert_cap = u64::try_from(cap)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reader = AuditReader::new(
            &auditor,
            auditor_key::load(home, &console())?,
            DirectoryTrust::load(home)?,
        );
        let records = reader.records(None, false).await?;
        futures::pin_mut!(records);
        let mut alerted = BTreeSet::new();
        while let Some(r) = records.next().await {
            if let AuditRecord::Event { sender, event, .. } = r? {
                match event.event {
                    AuditKind::AuditQuotaReached { subject, cap } if subject != "x" => {
                        assert_eq!((sender.as_str(), cap), ("ozone-studio", alert_cap));
                        alerted.insert(subject);
                    }
                    _ => {}
                }
            }
        }
        // One alert per category on the core's own quota subject, capped: the newest `cap`.
        if alerted.len() == cap {
            assert!(alerted.iter().all(|s| reported.contains(s)), "{alerted:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no alert in the stream: {alerted:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Two records of SPARK's whose sessions share a slot (the first byte of the session id),
/// from a sealer with its own key: sessions to ever new recipients until two meet.
fn two_records_in_one_slot() -> anyhow::Result<(SessionRecord, SessionRecord)> {
    let mut sealer = Sealer::new(
        "spark",
        SecretKeyPair::generate()?,
        SessionLimits::default(),
    );
    let mut by_slot: BTreeMap<u8, SessionRecord> = BTreeMap::new();
    for _ in 0..2000 {
        let to = SecretKeyPair::generate()?;
        sealer.seal_with(
            SealTo {
                subject: "spark.x",
                route: "spark.>",
                schema: 1,
                recipients: &[*to.public()],
                form: Form::CompactWhenPublished,
            },
            ozone_nats::bus::now_ms(),
            1,
            |b| {
                b.extend_from_slice(b"x");
                Ok(())
            },
        )?;
        for r in sealer.new_records() {
            if let Some(first) = by_slot.remove(&r.session_id[0]) {
                return Ok((first, r));
            }
            by_slot.insert(r.session_id[0], r);
        }
    }
    anyhow::bail!("no two sessions in one slot")
}

/// Finding 15: about 32,000 records of at most 8 KiB under FORGE's own prefix used to fill
/// `ozone-sessions` (256 MiB, discard new), after which every identity's record puts failed.
/// Now FORGE may write its 256 slots only: 3,000 puts of 8,000 bytes leave it 256 records
/// (2 MiB); keys beyond them are refused; SPARK's record stays and SPARK still puts. A slot
/// holding another live session is not overwritten, and a recipient fetching a session
/// whose slot holds another's record finds none.
#[tokio::test]
async fn finding_15_many_small_session_records_cannot_fill_the_session_bucket() -> R {
    let eco = prepared(1 << 30).await?;
    let spark = eco.connect(&Identity::component(Component::Spark)).await?;
    let spark_store = SessionStore::open(&spark.client).await?;
    let (a, b) = two_records_in_one_slot()?;
    spark_store
        .put("spark", &a.session_id, a.record.clone())
        .await?;

    let rogue = eco.connect(&forge()).await?;
    const PUTS: usize = 3000;
    let started = Instant::now();
    let subjects: Vec<String> = (0..PUTS)
        .map(|n| format!("$KV.{SESSION_BUCKET}.forge.{:02x}", n % 256))
        .collect();
    acked_puts(&rogue, &subjects, &[0x55; 8000]).await?;
    eprintln!("{PUTS} puts of 8000 bytes in {:?}", started.elapsed());
    for other in ["100", "0123456789abcdef", "ab.c", "x"] {
        refused(&rogue, &format!("$KV.{SESSION_BUCKET}.forge.{other}")).await?;
    }
    let (per_key, bytes) = per_subject(&rogue, SESSION_STREAM, ">").await?;
    let forge_keys = per_key
        .keys()
        .filter(|k| k.starts_with(&format!("$KV.{SESSION_BUCKET}.forge.")))
        .count();
    assert_eq!(forge_keys, 256);
    eprintln!("bucket holds {bytes} bytes after the flood");
    assert!(bytes < 256 * 8400 + (64 << 10), "{bytes} bytes");

    // SPARK's record is still there, and SPARK still puts.
    assert_eq!(
        spark_store.get("spark", &a.session_id).await?,
        Some(a.record.clone())
    );
    let (c, _) = two_records_in_one_slot()?;
    if c.session_id[0] != a.session_id[0] {
        spark_store
            .put("spark", &c.session_id, c.record.clone())
            .await?;
        assert_eq!(
            spark_store.get("spark", &c.session_id).await?,
            Some(c.record)
        );
    }
    // The slot of a live session is not taken over by another; asked for the other, the
    // bucket has nothing (the session is unknown, not opened with a wrong record).
    assert_ne!(a.session_id, b.session_id);
    let taken = spark_store
        .put("spark", &b.session_id, b.record.clone())
        .await;
    assert!(
        matches!(taken, Err(ozone_nats::SessionStoreError::SlotTaken { .. })),
        "{taken:?}"
    );
    assert_eq!(spark_store.get("spark", &b.session_id).await?, None);
    // The same session's record again (a retry) is fine.
    spark_store.put("spark", &a.session_id, a.record).await?;
    Ok(())
}
