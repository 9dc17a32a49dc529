//! The server refuses every connection that is not a valid, mapped, unrevoked identity.

use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_nats::client::ConnEvent;
use ozone_nats::{ConnectError, Connection};
use ozone_security::pki::{IdentityFiles, IssueOptions};
use ozone_security::tls;
use ozone_tests::{ozone, TestEcosystem, TestHome};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

/// Expects a refusal whose TLS alert names the reason (`alert` empty: any refusal).
fn refused(result: Result<Connection, ConnectError>, what: &str, alert: &str) -> R {
    match result {
        Err(ConnectError::Refused { detail, .. }) if detail.contains(alert) => Ok(()),
        Err(other) => anyhow::bail!("{what}: expected a refusal, got {other}"),
        Ok(_) => anyhow::bail!("{what}: the server accepted the connection"),
    }
}

#[tokio::test]
async fn a_valid_component_identity_connects() -> R {
    let eco = TestEcosystem::start().await?;
    let conn = eco.connect(&Identity::component(Component::Spark)).await?;
    conn.client.flush().await?;
    Ok(())
}

#[tokio::test]
async fn no_client_certificate_is_refused() -> R {
    let eco = TestEcosystem::start().await?;
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(tls::trust_roots(&eco.t.home)?)
    .with_no_client_auth();
    refused(
        ozone_nats::connect(&eco.t.url(), &Identity::component(Component::Spark), cfg).await,
        "no client certificate",
        "CertificateRequired",
    )
}

#[tokio::test]
async fn a_certificate_from_a_foreign_ca_is_refused() -> R {
    let eco = TestEcosystem::start().await?;
    // Same component name, same layout, but a different root: an impostor's PKI.
    let foreign = TestHome::new()?;
    let id = Identity::component(Component::Spark);
    let cfg = tls::client_config_from_files(
        &eco.t.home,
        &eco.t.cfg,
        &IdentityFiles::of(&foreign.home, &id),
    )?;
    refused(
        ozone_nats::connect(&eco.t.url(), &id, cfg).await,
        "foreign CA",
        "UnknownCA",
    )
}

#[tokio::test]
async fn an_expired_certificate_is_refused() -> R {
    let eco = TestEcosystem::start_with(
        |t| {
            let mut opts = IssueOptions::valid_for(Duration::from_secs(86_400));
            opts.not_after = Some(time::OffsetDateTime::now_utc() - time::Duration::hours(1));
            t.issue_with(IdentityKind::Device, "expired", opts)?;
            t.issue(IdentityKind::Device, "fresh")?;
            Ok(())
        },
        |c| c,
    )
    .await?;
    // The control: a valid certificate of the same kind is accepted.
    eco.connect(&Identity::new(IdentityKind::Device, "fresh")?)
        .await?;
    refused(
        eco.connect(&Identity::new(IdentityKind::Device, "expired")?)
            .await,
        "expired",
        "CertificateExpired",
    )
}

#[tokio::test]
async fn a_certificate_without_client_auth_usage_is_refused() -> R {
    let eco = TestEcosystem::start_with(
        |t| {
            let mut opts = IssueOptions::valid_for(Duration::from_secs(86_400));
            opts.client_auth = false;
            t.issue_with(IdentityKind::Device, "no-client-auth", opts)?;
            Ok(())
        },
        |c| c,
    )
    .await?;
    refused(
        eco.connect(&Identity::new(IdentityKind::Device, "no-client-auth")?)
            .await,
        "no clientAuth",
        "BadCertificate",
    )
}

#[tokio::test]
async fn a_plaintext_connection_gets_nothing() -> R {
    let eco = TestEcosystem::start().await?;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", eco.t.settings.port))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        !text.contains("INFO") && !text.contains("PONG"),
        "plaintext answered: {text:?}"
    );
    // And the client library without TLS cannot connect either.
    let plain = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(format!("nats://127.0.0.1:{}", eco.t.settings.port))
        .await;
    assert!(plain.is_err(), "a plaintext client connected");
    Ok(())
}

#[tokio::test]
async fn revoking_an_identity_cuts_off_its_live_connection_within_two_seconds() -> R {
    let eco = TestEcosystem::start_with(
        |t| t.issue(IdentityKind::Device, "stolen-laptop").map(|_| ()),
        |c| c,
    )
    .await?;
    let id = Identity::new(IdentityKind::Device, "stolen-laptop")?;
    let conn = eco.connect(&id).await?;
    conn.client.flush().await?;
    let files = IdentityFiles::of(&eco.t.home, &id);
    let kept_key = eco.t.tmp.path().join("stolen-copy.key");
    std::fs::copy(&files.key, &kept_key)?;
    let mut events = conn.events();
    let started = Instant::now();
    let (ok, out, err) = ozone!(&eco.t.home, &["pki", "revoke", "stolen-laptop"], &[])?;
    assert!(ok, "revoke failed: {out}{err}");
    assert!(out.contains("reloaded"), "{out}");
    let ev = Connection::wait_for(&mut events, Duration::from_secs(2), |e| {
        matches!(
            e,
            ConnEvent::Disconnected | ConnEvent::Closed | ConnEvent::Violation(_)
        )
    })
    .await;
    assert!(ev.is_some(), "still connected 2 s after revocation");
    println!(
        "revoked connection cut after {:?} (incl. running the CLI)",
        started.elapsed()
    );
    // It cannot come back: its key is gone, and a stolen copy maps to no user any more.
    assert!(!files.key.exists());
    let stolen = IdentityFiles {
        key: kept_key,
        ..files
    };
    let cfg = tls::client_config_from_files(&eco.t.home, &eco.t.cfg, &stolen)?;
    refused(
        ozone_nats::connect(&eco.t.url(), &id, cfg).await,
        "revoked identity reconnecting",
        "",
    )
}

#[tokio::test]
async fn a_reload_returns_once_the_server_has_applied_it() -> R {
    // nats-server reloads in the background after SIGHUP; callers go on to JetStream requests
    // that fail while it re-registers accounts, so `reload` must not return before it is done.
    let eco = TestEcosystem::start().await?;
    let log = eco.t.home.logs().join("nats-server.log");
    for _ in 0..3 {
        let before = std::fs::metadata(&log)?.len();
        ozone_nats::server::reload(&eco.t.home).await?;
        // Read at once, with no await in between: the line must be there already.
        let all = std::fs::read(&log)?;
        let since = String::from_utf8_lossy(&all[before as usize..]);
        assert!(
            since.contains("Reloaded server configuration"),
            "reload returned before the server applied it; log since the signal:\n{since}"
        );
    }
    Ok(())
}
