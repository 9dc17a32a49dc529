//! Servers older than 2.14.3 are refused before they are started, with the reason.

use ozone_nats::version::VersionError;
use ozone_nats::{check_version, NatsServer, ServerError};
use ozone_tests::{ozone, TestHome};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

type R = anyhow::Result<()>;

fn fake_server(dir: &std::path::Path, version: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("nats-server-{version}"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"nats-server: v{version}\"\n"),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[tokio::test]
async fn an_old_server_is_refused_with_the_reason() -> R {
    let t = TestHome::new()?;
    let old = fake_server(t.tmp.path(), "2.14.2")?;
    match NatsServer::start(&t.home, &t.settings, &old, Duration::from_secs(5)).await {
        Err(ServerError::Version(VersionError::TooOld { found, .. })) => {
            assert_eq!(found.to_string(), "2.14.2")
        }
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    assert!(check_version(&fake_server(t.tmp.path(), "2.14.3")?).is_ok());
    assert!(check_version(&fake_server(t.tmp.path(), "2.9.10")?).is_err());

    // The operator sees why, from the command line.
    let old_path = old.display().to_string();
    let (ok, _out, err) = ozone!(
        &t.home,
        &["up", "--detach"],
        &[("OZONE_NATS_SERVER", old_path.as_str())]
    )?;
    assert!(!ok);
    assert!(
        err.contains("2.14.2") && err.contains("permission-bypass"),
        "{err}"
    );
    Ok(())
}
