//! Issue 18's identity findings, attacked on a real nats-server with the generated
//! configuration: a stolen certificate after revocation and re-issue (finding 6), and a
//! component certificate posing as the server (finding 8).

use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_nats::ConnectError;
use ozone_security::pki::{self, IdentityFiles, IssueOptions};
use ozone_security::{passphrase, tls};
use ozone_tests::{TestEcosystem, TestHome};
use std::time::Duration;

type R = anyhow::Result<()>;

/// A copy of an identity's certificate chain and key, as a thief would keep it.
fn steal(t: &TestHome, id: &Identity, tag: &str) -> anyhow::Result<IdentityFiles> {
    let files = IdentityFiles::of(&t.home, id);
    let stolen = IdentityFiles {
        cert: t.tmp.path().join(format!("{tag}.crt")),
        chain: t.tmp.path().join(format!("{tag}-chain.crt")),
        key: t.tmp.path().join(format!("{tag}.key")),
    };
    std::fs::copy(&files.cert, &stolen.cert)?;
    std::fs::copy(&files.chain, &stolen.chain)?;
    std::fs::copy(&files.key, &stolen.key)?;
    Ok(stolen)
}

async fn connect_with(
    t: &TestHome,
    id: &Identity,
    files: &IdentityFiles,
) -> Result<ozone_nats::Connection, anyhow::Error> {
    let cfg = tls::client_config_from_files(&t.home, &t.cfg, files)?;
    Ok(ozone_nats::connect(&t.url(), id, cfg).await?)
}

#[tokio::test]
async fn finding_06_a_revoked_certificate_never_maps_to_a_user_again() -> R {
    let eco = TestEcosystem::start().await?;
    let t = &eco.t;
    let forge = Identity::component(Component::Forge);
    let stolen = steal(t, &forge, "stolen-forge")?;
    // The stolen copy works while the identity is live: the thief is a full FORGE.
    connect_with(t, &forge, &stolen).await?.sync().await?;

    // The operator revokes FORGE, then issues it again for the real service.
    assert!(pki::revoke(&t.home, &forge)?);
    let pass = passphrase::resolve(&t.home, false)?;
    pki::issue(
        &t.home,
        &forge,
        &IssueOptions::valid_for(Duration::from_secs(86_400)),
        &pass,
    )?;
    ozone_nats::config::write(&t.home, &t.settings)?;
    ozone_nats::server::reload(&t.home).await?;

    // Same name, same DNS SAN, still within its validity: the old certificate maps to no user,
    // because users are per issuance.
    match connect_with(t, &forge, &stolen).await {
        Err(e) => match e.downcast_ref::<ConnectError>() {
            Some(ConnectError::Refused { .. }) => {}
            _ => anyhow::bail!("the stolen certificate failed for another reason: {e}"),
        },
        Ok(c) => {
            // A connection that is cut at once is refused too; one that works is the hole.
            anyhow::ensure!(
                c.sync().await.is_err(),
                "the revoked certificate connected again after the name was re-issued"
            );
        }
    }
    // The re-issued FORGE connects.
    eco.connect(&forge).await?.sync().await?;
    Ok(())
}

#[tokio::test]
async fn finding_08_a_component_certificate_cannot_serve_the_bus() -> R {
    // The rogue: FORGE binds the bus's port with its own certificate (as it could while
    // nats-server restarts). Here a real nats-server plays that part, configured with FORGE's
    // chain and key instead of the server's.
    let t = TestHome::new()?;
    let forge = IdentityFiles::of(&t.home, &Identity::component(Component::Forge));
    let server = IdentityFiles::for_stem(&t.home, pki::SERVER_STEM);
    t.write_config(|config| {
        let config = config.replace(
            &server.chain.display().to_string(),
            &forge.chain.display().to_string(),
        );
        config.replace(
            &server.key.display().to_string(),
            &forge.key.display().to_string(),
        )
    })?;
    let _rogue = t.start_server().await?;
    for victim in [Component::Spark, Component::Core] {
        let id = Identity::component(victim);
        match t.connect(&id).await {
            Err(
                ConnectError::Refused { detail, .. } | ConnectError::Unreachable { detail, .. },
            ) => {
                println!("{victim} refused the rogue server: {detail}");
            }
            Err(other) => anyhow::bail!("{victim}: unexpected error {other}"),
            Ok(_) => anyhow::bail!("{victim} connected to a server presenting FORGE's certificate"),
        }
    }
    // The same clients connect to the real server's certificate.
    t.write_config(|c| c)?;
    drop(_rogue);
    let _real = t.start_server().await?;
    t.connect(&Identity::component(Component::Spark))
        .await?
        .sync()
        .await?;
    Ok(())
}

#[test]
fn finding_08_component_certificates_are_client_only_and_name_no_host() -> R {
    let t = TestHome::new()?;
    for c in Component::ALL {
        let files = IdentityFiles::of(&t.home, &Identity::component(c));
        let pem = std::fs::read(&files.cert)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)?;
        let cert = pem.parse_x509()?;
        let eku = cert
            .extended_key_usage()?
            .ok_or_else(|| anyhow::anyhow!("{c}: no extended key usage"))?;
        assert!(
            eku.value.client_auth && !eku.value.server_auth,
            "{c}: {eku:?}"
        );
        let san = cert
            .subject_alternative_name()?
            .ok_or_else(|| anyhow::anyhow!("{c}: no SAN"))?;
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.contains("localhost") && !n.contains("127.0.0.1")),
            "{c}: {names:?}"
        );
        let user_prefix = Identity::component(c).nats_user_prefix();
        assert!(
            names.iter().any(|n| n.contains(&user_prefix)),
            "{c}: no per-issuance NATS user in {names:?}"
        );
    }
    // A device certificate is no server certificate either.
    let laptop = t.issue(IdentityKind::Device, "laptop")?;
    let pem = std::fs::read(IdentityFiles::of(&t.home, &laptop).cert)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)?;
    let cert = pem.parse_x509()?;
    assert!(!cert
        .extended_key_usage()?
        .is_some_and(|e| e.value.server_auth));
    Ok(())
}
