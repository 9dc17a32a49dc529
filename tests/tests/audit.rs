//! Keys rotating on a running bus, key substitution, and the audit stream, end to end on a
//! real server: services started with `Bus::start` publish signed keys to the JetStream key
//! directory, rotate every 2 s (a simulated 24 h), and every refusal reaches the audit stream,
//! where each auditor opens it with its own key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind, Subject};
use ozone_nats::audit::{AuditReader, AuditRecord};
use ozone_nats::bus::{now_ms, Bus};
use ozone_nats::KeyDirectory;
use ozone_security::envelope::{auditor_key, keyring_file, EnvelopeError, Rotation, SecretKeyPair};
use ozone_security::keydir::{DirectoryEntry, DirectoryTrust, ServiceSigner};
use ozone_security::Home;
use ozone_tests::TestEcosystem;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ask {
    n: u32,
}

/// The request after which the test worker stops.
const LAST: u32 = 1_000_000;

const ROTATION: Rotation = Rotation {
    origin_ms: 0,
    interval_ms: 2_000,
    grace_ms: 1_000,
};

/// SPARK and the core joined to the bus: keys published, directories followed.
async fn spark_and_core(eco: &TestEcosystem) -> anyhow::Result<(Bus, Bus)> {
    let join = |c: Component| async move {
        let conn = eco.connect(&Identity::component(c)).await?;
        anyhow::Ok(Bus::start(conn, &eco.t.home, ROTATION).await?)
    };
    Ok((join(Component::Spark).await?, join(Component::Core).await?))
}

/// Every record in the audit stream, read as `auditor`.
async fn read_all(eco: &TestEcosystem, auditor: &str) -> anyhow::Result<Vec<AuditRecord>> {
    let id = Identity::new(IdentityKind::Auditor, auditor)?;
    let key = auditor_key::load(&eco.t.home, &id)?;
    let conn = eco.connect(&id).await?;
    let reader = AuditReader::new(&conn, key, DirectoryTrust::load(&eco.t.home)?);
    let records = reader.records(None, false).await?;
    futures::pin_mut!(records);
    let mut out = Vec::new();
    while let Some(r) = futures::StreamExt::next(&mut records).await {
        out.push(r?);
    }
    Ok(out)
}

fn events(records: &[AuditRecord]) -> Vec<(String, AuditKind)> {
    records
        .iter()
        .filter_map(|r| match r {
            AuditRecord::Event { sender, event, .. } => Some((sender.clone(), event.event.clone())),
            _ => None,
        })
        .collect()
}

/// Runs the Python audit reader (tests/audit_reader) as `auditor`; one JSON value per record.
fn python_reader(eco: &TestEcosystem, auditor: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    ozone_tests::run_python("audit_reader/ozone_audit_reader.py", eco, auditor)
}

fn forged(home: &Home, epoch: u64) -> anyhow::Result<(DirectoryEntry, DirectoryEntry)> {
    let attacker = SecretKeyPair::generate()?;
    let not_after = now_ms() + 86_400_000;
    let unsigned = DirectoryEntry {
        service: "spark".into(),
        epoch,
        not_after_ms: not_after,
        public: *attacker.public().as_bytes(),
        certificate: Vec::new(),
        signature: Vec::new(),
    };
    // Properly signed, but by COGNIS' certificate: a valid signature from the wrong service.
    let mut by_cognis = ServiceSigner::load(home, &Identity::component(Component::Cognis))?.sign(
        epoch + 1,
        not_after,
        attacker.public(),
    )?;
    by_cognis.service = "spark".into();
    Ok((unsigned, by_cognis))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_on_the_bus_and_every_refusal_reaches_the_audit_stream() -> R {
    let eco = TestEcosystem::start_with(
        |t| t.issue(IdentityKind::Auditor, "siem").map(|_| ()),
        |c| c,
    )
    .await?;
    let home = &eco.t.home;
    let prepared = ozone::audit_stream::prepare(home, &eco.t.cfg).await?;
    assert_eq!(prepared.auditors, vec!["console", "siem"]);

    let spark_id = Identity::component(Component::Spark);
    let (spark, core) = spark_and_core(&eco).await?;
    let generate = Subject::component_request(Component::Spark, "generate")?;
    // A copy of every sealed request, to replay one later. (On its own connection: a second
    // subscription to the same subject on the worker's connection makes nats-server drop the
    // worker's replies, since each delivery counts against `allow_responses`.)
    let tap_conn = eco.connect(&spark_id).await?;
    let mut tap = tap_conn.client.subscribe(generate.to_string()).await?;
    let mut work = spark.subscribe::<Ask>(&generate, Some("spark")).await?;
    let server = spark.clone();
    let serving = tokio::spawn(async move {
        let mut refused = Vec::new();
        let mut last = false;
        while let Some(next) = work.next().await {
            match next {
                Ok(req) => {
                    let n = req.message.n;
                    server.reply(&req, &Ask { n: n + 1 }).await?;
                    last |= n == LAST;
                }
                Err(e) => refused.push(e.to_string()),
            }
            // A message from a sender no longer in the directory is refused after a moment
            // (opened aside), so possibly after the last request.
            if last && refused.len() >= 3 {
                break;
            }
        }
        anyhow::Ok(refused)
    });

    // Continuous traffic across at least three rotations of both services.
    let first_epoch = ROTATION.epoch_at(now_ms());
    let started = Instant::now();
    let (mut ok, mut failures) = (0u32, Vec::new());
    while started.elapsed() < Duration::from_millis(7_000) {
        match core
            .request::<_, Ask>(&generate, &Ask { n: ok }, Duration::from_secs(2))
            .await
        {
            Ok(a) if a.n == ok + 1 => ok += 1,
            other => failures.push(format!("{other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last_epoch = ROTATION.epoch_at(now_ms());
    assert!(last_epoch >= first_epoch + 3, "{first_epoch}..{last_epoch}");
    if !failures.is_empty() {
        serving.abort();
        panic!(
            "{ok} ok, failures: {failures:?}; worker: {:?}",
            serving.await
        );
    }
    assert!(ok > 100, "only {ok} round trips");

    // Key substitution: an unsigned entry and one signed by another service's certificate,
    // both for SPARK and newer than its real key. Neither may be used: CORE still reaches SPARK.
    let (unsigned, by_cognis) = forged(home, last_epoch + 100)?;
    let spark_raw = eco.connect(&spark_id).await?;
    let keydir = KeyDirectory::open(&spark_raw.client).await?;
    keydir.put(&spark_id, &unsigned).await?;
    keydir.put(&spark_id, &by_cognis).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a: Ask = core
        .request(&generate, &Ask { n: 41 }, Duration::from_secs(2))
        .await?;
    assert_eq!(a.n, 42);

    // A request sealed to SPARK's first key, replayed after that key's grace window: refused.
    let first = tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut tap))
        .await?
        .unwrap();
    core.connection()
        .client
        .publish(generate.to_string(), first.payload.clone())
        .await?;
    // Garbage, and a truncated envelope.
    core.connection()
        .client
        .publish(generate.to_string(), "not an envelope".into())
        .await?;
    core.connection()
        .client
        .publish(
            generate.to_string(),
            first.payload.slice(..first.payload.len() / 2),
        )
        .await?;
    // One more real request: the worker is still serving after the refusals.
    let a: Ask = core
        .request(&generate, &Ask { n: LAST }, Duration::from_secs(2))
        .await?;
    assert_eq!(a.n, LAST + 1);
    let refused = tokio::time::timeout(Duration::from_secs(5), serving).await???;
    // Both keys it was sealed with are past grace: the sender's is gone from the directory,
    // the recipient's from the ring. Whichever check comes first refuses it.
    assert!(
        refused
            .iter()
            .any(|r| r.contains("unknown sender key") || r.contains("not a recipient")),
        "the erased key's message: {refused:?}"
    );
    assert_eq!(
        refused.iter().filter(|r| r.contains("malformed")).count(),
        2,
        "{refused:?}"
    );

    // Old keys are gone: from the ring file and from the bucket.
    let ring = keyring_file::load_or_create(home, &spark_id, ROTATION, now_ms())?;
    let now_epoch = ROTATION.epoch_at(now_ms());
    assert!(
        ring.held_epochs().iter().all(|e| *e + 1 >= now_epoch),
        "held {:?} at epoch {now_epoch}",
        ring.held_epochs()
    );

    // The forged entries went into SPARK's slots (epoch mod 4) and may have replaced a live
    // entry there: the running service puts it back within its heal interval.
    let healed_by = Instant::now() + ozone_nats::bus::HEAL_EVERY + Duration::from_secs(5);
    loop {
        let now_epoch = ROTATION.epoch_at(now_ms());
        let in_bucket = keydir.epochs_of(&spark_id).await?;
        if !in_bucket.contains(&first_epoch) && in_bucket.contains(&now_epoch) {
            break;
        }
        assert!(
            Instant::now() < healed_by,
            "bucket holds {in_bucket:?} at epoch {now_epoch}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The audit stream: rotations by both, SPARK's refusals, both followers' verdicts on the
    // forged entries, nothing unreadable; and each auditor opens it with its own key.
    let deadline = Instant::now() + Duration::from_secs(15);
    let records = loop {
        let records = read_all(&eco, "console").await?;
        let ev = events(&records);
        let rotated = |who: &str| {
            ev.iter()
                .filter(|(s, e)| s == who && matches!(e, AuditKind::KeyRotated { .. }))
                .count()
        };
        let rejected = ev
            .iter()
            .filter(|(s, e)| s == "spark" && matches!(e, AuditKind::MessageRejected { .. }))
            .count();
        let forged_seen = ev
            .iter()
            .filter(|(_, e)| matches!(e, AuditKind::DirectoryEntryRejected { .. }))
            .count();
        if (rotated("spark") >= 3
            && rotated("ozone-studio") >= 3
            && rejected >= 3
            && forged_seen >= 4)
            || Instant::now() > deadline
        {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ev = events(&records);
    let rotations: Vec<&AuditKind> = ev
        .iter()
        .filter(|(s, e)| s == "spark" && matches!(e, AuditKind::KeyRotated { .. }))
        .map(|(_, e)| e)
        .collect();
    assert!(rotations.len() >= 3, "{ev:#?}");
    let erased: Vec<u64> = ev
        .iter()
        .filter(|(s, _)| s == "spark")
        .flat_map(|(_, e)| match e {
            AuditKind::KeysErased { epochs } => epochs.clone(),
            AuditKind::KeyRotated { erased_epochs, .. } => erased_epochs.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert!(erased.contains(&first_epoch), "erased {erased:?}: {ev:#?}");
    let reasons: Vec<String> = ev
        .iter()
        .filter_map(|(s, e)| match e {
            AuditKind::MessageRejected { reason, .. } if s == "spark" => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unknown sender key") || r.contains("not a recipient")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("malformed")),
        "{reasons:?}"
    );
    for who in ["spark", "ozone-studio"] {
        let verdicts: Vec<String> = ev
            .iter()
            .filter_map(|(s, e)| match e {
                AuditKind::DirectoryEntryRejected { reason, .. } if s == who => {
                    Some(reason.clone())
                }
                _ => None,
            })
            .collect();
        assert!(
            verdicts.iter().any(|r| r.contains("no signature")),
            "{who}: {verdicts:?}"
        );
        assert!(
            verdicts.iter().any(|r| r.contains("certified for")),
            "{who}: {verdicts:?}"
        );
    }
    let unreadable: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| matches!(r, AuditRecord::Unreadable { .. }))
        .collect();
    assert!(unreadable.is_empty(), "{unreadable:#?}");
    // The reader's own view of the forged entries: refused there too.
    assert!(records.iter().any(
        |r| matches!(r, AuditRecord::Key { verdict: Err(e), .. } if e.contains("no signature"))
    ));

    // The second implementation (Python, from docs/envelope.md alone) reads the same stream as
    // each auditor and opens exactly the events the Rust reader opened. An audit event is
    // sealed to the auditors in turn: the first derives the data key by HPKE export, the
    // second unwraps it, so reading as both covers both ways.
    // (The last reading, as `siem`, is checked further below.)
    let mut python = Vec::new();
    for auditor in ["console", "siem"] {
        python = python_reader(&eco, auditor)?;
        let opened_by_python: Vec<u64> = python
            .iter()
            .filter(|r| r.get("event").is_some())
            .filter_map(|r| r["seq"].as_u64())
            .collect();
        let opened_by_rust: Vec<u64> = read_all(&eco, auditor)
            .await?
            .iter()
            .filter_map(|r| match r {
                AuditRecord::Event { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        let last_python = opened_by_python.last().copied().unwrap_or(0);
        assert_eq!(
            opened_by_python,
            opened_by_rust
                .iter()
                .copied()
                .filter(|s| *s <= last_python)
                .collect::<Vec<_>>(),
            "as {auditor}"
        );
        assert!(
            opened_by_python.len() >= ev.len(),
            "python as {auditor} opened {opened_by_python:?}"
        );
    }
    let python_refused: Vec<&str> = python
        .iter()
        .filter_map(|r| r.get("refused").and_then(|v| v.as_str()))
        .collect();
    assert_eq!(python_refused.len(), 2, "{python_refused:?}");
    assert!(
        python_refused[0].contains("no signature"),
        "{python_refused:?}"
    );
    assert!(
        python_refused[1].contains("certified for"),
        "{python_refused:?}"
    );
    let kinds: Vec<&str> = python
        .iter()
        .filter_map(|r| r.pointer("/event/event/type").and_then(|v| v.as_str()))
        .collect();
    for kind in [
        "key-rotated",
        "keys-erased",
        "message-rejected",
        "directory-entry-rejected",
    ] {
        assert!(kinds.contains(&kind), "python saw no {kind}: {kinds:?}");
    }

    Ok(())
}

#[tokio::test]
async fn issuing_an_auditor_publishes_its_key_and_revoking_withdraws_it() -> R {
    let eco = TestEcosystem::start().await?;
    let home = &eco.t.home;
    ozone::audit_stream::prepare(home, &eco.t.cfg).await?;
    let (ok, out, err) = ozone_tests::ozone!(home, &["pki", "issue", "auditor", "late"], &[])?;
    assert!(ok && out.contains("published its key"), "{out}{err}");
    let late = Identity::new(IdentityKind::Auditor, "late")?;
    let key_file = auditor_key::path(home, &late);
    assert_eq!(ozone_security::keyfile::mode_of(&key_file)? & 0o777, 0o600);
    let core = eco.connect(&Identity::component(Component::Core)).await?;
    let keydir = KeyDirectory::open(&core.client).await?;
    assert_eq!(keydir.epochs_of(&late).await?, vec![0]);
    // A service joining now seals its audit events to the new auditor as well.
    let spark = Bus::start(
        eco.connect(&Identity::component(Component::Spark)).await?,
        home,
        ROTATION,
    )
    .await?;
    spark.audit(AuditKind::PermissionDenied {
        subject: "probe".into(),
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !events(&read_all(&eco, "late").await?)
        .iter()
        .any(|(_, e)| matches!(e, AuditKind::PermissionDenied { subject } if subject == "probe"))
    {
        assert!(
            Instant::now() < deadline,
            "the new auditor cannot open the event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (ok, out, err) =
        ozone_tests::ozone!(home, &["pki", "revoke", "late", "--kind", "auditor"], &[])?;
    assert!(
        ok && out.contains("withdrew its recipient key"),
        "{out}{err}"
    );
    assert!(!key_file.exists());
    assert!(keydir.epochs_of(&late).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_revoked_services_keys_leave_every_directory_within_seconds() -> R {
    let eco = TestEcosystem::start().await?;
    let home = &eco.t.home;
    ozone::audit_stream::prepare(home, &eco.t.cfg).await?;
    let spark_id = Identity::component(Component::Spark);
    let (spark, core) = spark_and_core(&eco).await?;
    let generate = Subject::component_request(Component::Spark, "generate")?;
    let mut work = spark.subscribe::<Ask>(&generate, Some("spark")).await?;
    let asker = core.clone();
    let pending = tokio::spawn(async move {
        asker
            .request::<Ask, Ask>(&generate, &Ask { n: 1 }, Duration::from_secs(20))
            .await
    });
    let held = tokio::time::timeout(Duration::from_secs(10), work.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))??;

    // Revoked in the registry only, without reloading nats-server: spark's connection stays
    // up, so what follows is the key directory's own doing.
    assert!(ozone_security::pki::revoke(home, &spark_id)?);
    let generate = Subject::component_request(Component::Spark, "generate")?;
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        match core
            .request::<Ask, Ask>(&generate, &Ask { n: 2 }, Duration::from_secs(2))
            .await
        {
            Err(ozone_nats::bus::BusError::NoKey(who)) if who == "spark" => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "still sealing to a revoked service: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // A reply sealed with the revoked service's key no longer authenticates.
    spark.reply(&held, &Ask { n: 3 }).await?;
    let answer = pending.await?;
    assert!(
        matches!(
            answer,
            Err(ozone_nats::bus::BusError::Envelope {
                source: EnvelopeError::UnknownSender { ref sender, .. },
                ..
            }) if sender == "spark"
        ),
        "{answer:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events(&read_all(&eco, "console").await?)
        .iter()
        .any(|(by, e)| {
            by == "ozone-studio"
                && matches!(e, AuditKind::DirectoryEntryRejected { key, reason }
                if key.starts_with("spark") && reason.contains("revoked"))
        })
    {
        assert!(Instant::now() < deadline, "the drop is not audited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn an_audit_cap_beyond_the_disk_says_what_to_change() -> R {
    let eco = TestEcosystem::start().await?;
    let console = Identity::new(IdentityKind::Auditor, "console")?;
    let conn = eco.connect(&console).await?;
    let settings = ozone_nats::NatsSettings {
        audit_max_bytes: 1 << 60,
        ..eco.t.settings.clone()
    };
    let refused = ozone_nats::audit::ensure_stream(&conn, &settings).await;
    let Err(e @ ozone_nats::audit::AuditError::NoStorage { .. }) = refused else {
        panic!("expected NoStorage, got {refused:?}");
    };
    let text = e.to_string();
    assert!(
        text.contains("free disk space") && text.contains("audit_max_bytes"),
        "{text}"
    );
    // With the default cap the same call succeeds.
    ozone_nats::audit::ensure_stream(&conn, &eco.t.settings).await?;
    Ok(())
}

/// `ozone status` folds the phase events alone, and the server does the filtering: a long
/// history of other audit events never reaches it.
#[tokio::test]
async fn status_reads_the_phase_events_and_nothing_else() -> R {
    use ozone_bus_schemas::phase::{ComponentState, PhaseEvent};
    let eco = TestEcosystem::start_with(|_| Ok(()), |c| c).await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let (spark, _core) = spark_and_core(&eco).await?;
    let raw = eco.connect(&Identity::component(Component::Spark)).await?;
    const OTHERS: usize = 200;
    for _ in 0..OTHERS {
        raw.client
            .publish("audit.spark.rejected", "not an envelope".into())
            .await?;
    }
    raw.client.flush().await?;
    let ready = PhaseEvent {
        component: Component::Spark.name().into(),
        phase: Component::Spark.phase(),
        instance: "a1".into(),
        version: "test".into(),
        pid: std::process::id(),
        at_ms: now_ms(),
        state: ComponentState::Ready,
    };
    spark
        .publish(&Subject::phase_announce(Component::Spark), &ready)
        .await?;

    // The whole stream holds the other events (once stored)…
    let started = Instant::now();
    loop {
        let all = read_all(&eco, "console").await?;
        let unreadable = all
            .iter()
            .filter(|r| matches!(r, AuditRecord::Unreadable { .. }))
            .count();
        let phases = all
            .iter()
            .filter(|r| matches!(r, AuditRecord::Phase { .. }))
            .count();
        if unreadable >= OTHERS && phases == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{unreadable} other events and {phases} phase events stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …and the phase reader is handed the phase event alone.
    let id = Identity::new(IdentityKind::Auditor, "console")?;
    let conn = eco.connect(&id).await?;
    let reader = AuditReader::new(
        &conn,
        auditor_key::load(&eco.t.home, &id)?,
        DirectoryTrust::load(&eco.t.home)?,
    );
    let records = reader.phase_records().await?;
    futures::pin_mut!(records);
    let mut read = Vec::new();
    while let Some(r) = futures::StreamExt::next(&mut records).await {
        read.push(r?);
    }
    assert_eq!(
        read.len(),
        1,
        "{} records read: the other events reached the reader",
        read.len()
    );
    let AuditRecord::Phase { event, .. } = &read[0] else {
        panic!("not a phase event: {:?}", read[0]);
    };
    assert_eq!(event, &ready);

    let status =
        ozone::cmd::status::gather_with(&eco.t.home, &eco.t.cfg, Duration::from_millis(50)).await?;
    let spark_row = status
        .components
        .iter()
        .find(|c| c.component == Component::Spark.name())
        .unwrap();
    assert_eq!(spark_row.state, "ready");
    Ok(())
}
