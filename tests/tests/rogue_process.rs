//! Issue 18, finding 10, attacked as a compromised component process would: FORGE runs the
//! way the units of `ozone install systemd` run it — a user of its own in the units' group,
//! its own certificate, chain and key and the trust bundle handed over as credentials, its key
//! ring in a state directory of its own, `security/` opened to the group — against a real
//! nats-server with the generated configuration. It joins the bus; code running as its user
//! reads none of the other keys, the CA's key or passphrase, and cannot rewrite the registry.
//!
//! Running a process as another user needs root (CI runs the tests as root); elsewhere the
//! test says it was skipped.

use ozone_bus_schemas::{Component, Identity};
use ozone_nats::KeyDirectory;
use ozone_security::credentials;
use ozone_security::envelope::Rotation;
use ozone_security::passphrase;
use ozone_security::pki::{CaKind, CertificateAuthorities, IdentityFiles};
use ozone_tests::TestEcosystem;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

/// The component's own user and the units' group (numbers no account uses: systemd's
/// dynamic users are such numbers too).
const UID: u32 = 64_011;
const GID: u32 = 64_012;

fn component_binary(c: Component) -> PathBuf {
    ozone_tests::component_binary(env!("CARGO_BIN_EXE_ozone-cli"), c)
}

/// Makes `cmd` run as the component's user, with the units' group as its only group (the
/// standard library drops root's supplementary groups when it changes the user).
fn as_component_user(cmd: &mut Command) -> &mut Command {
    cmd.uid(UID).gid(GID)
}

fn own(path: &Path, mode: u32) -> R {
    std::os::unix::fs::chown(path, Some(UID), Some(GID))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Kills the component when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cat`s `path` as the component's user: Ok(bytes) or the error it printed.
fn read_as_component(path: &Path) -> anyhow::Result<Result<Vec<u8>, String>> {
    let out = as_component_user(Command::new("cat").arg(path)).output()?;
    Ok(if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

#[tokio::test]
async fn finding_10_a_component_as_its_own_user_reads_only_its_own_key_material() -> R {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: running a component as a user of its own needs root");
        return Ok(());
    }
    let eco = TestEcosystem::start().await?;
    let home = &eco.t.home;
    // The home is reachable by everyone, as /opt/ozone-studio is (the temporary directory
    // above it is the test's own 0700).
    std::fs::set_permissions(eco.t.tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    ozone::cmd::systemd::open_security_to(home, GID)?;

    // What `LoadCredential=` does: copies of FORGE's own files, readable by its user alone.
    let forge = Identity::component(Component::Forge);
    let stem = forge.file_stem();
    let files = IdentityFiles::of(home, &forge);
    let creds = tempfile::tempdir()?;
    let mut handed = vec![
        (format!("{stem}.crt"), files.cert.clone()),
        (format!("{stem}-chain.crt"), files.chain.clone()),
        (format!("{stem}.key"), files.key.clone()),
    ];
    handed.extend(CertificateAuthorities::new(home).component_trust_files());
    for (name, source) in &handed {
        let copy = creds.path().join(name);
        std::fs::copy(source, &copy)?;
        own(&copy, 0o400)?;
    }
    own(creds.path(), 0o500)?;
    // What `StateDirectory=` does: a directory its user alone owns.
    let state = tempfile::tempdir()?;
    own(state.path(), 0o700)?;
    let log = tempfile::NamedTempFile::new()?;

    let _forge = Running(
        as_component_user(
            Command::new(component_binary(Component::Forge))
                .arg("--home")
                .arg(home.root())
                .args(["--wait-timeout", "120s"]),
        )
        .env("OZONE_STUDIO_HOME", home.root())
        .env(credentials::CREDENTIALS_DIRECTORY, creds.path())
        .env(credentials::KEY_DIR, state.path())
        // systemd's sign that stderr is the journal: the component logs there, not to var/log.
        .env("JOURNAL_STREAM", "0:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen()?)
        .spawn()?,
    );

    // It joins the bus with what it was handed: its key-directory entry appears, signed with
    // the key from its credentials (the directory verifies it against its certificate).
    let spark = eco.connect(&Identity::component(Component::Spark)).await?;
    let keydir = KeyDirectory::open(&spark.client).await?;
    let epoch = Rotation::daily().epoch_at(ozone_nats::bus::now_ms());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(Ok(entry)) = keydir.entry(&forge, epoch).await? {
            assert_eq!(entry.epoch, epoch);
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "FORGE never published its key; its log:\n{}",
            std::fs::read_to_string(log.path())?
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its ring is in its own state directory, its own and 0600; none in the home.
    let ring = state.path().join(format!("{stem}.keyring"));
    let meta = std::fs::metadata(&ring)?;
    assert_eq!((meta.uid(), meta.mode() & 0o777), (UID, 0o600));
    assert!(!home.keys_dir().join(format!("{stem}.keyring")).exists());

    // What code running as FORGE's user can read: the public registry, and nothing secret.
    assert!(read_as_component(&home.security().join("identities.json"))?.is_ok());
    let secrets = [
        IdentityFiles::of(home, &Identity::component(Component::Spark)).key,
        IdentityFiles::of(home, &Identity::component(Component::Core)).key,
        // Its own key in the home: it has its copy, it needs no more.
        files.key.clone(),
        CertificateAuthorities::new(home).key_path(CaKind::Root),
        CertificateAuthorities::new(home).key_path(CaKind::AiApp),
        passphrase::default_file(home),
    ];
    for secret in secrets {
        assert!(secret.exists(), "{} missing", secret.display());
        match read_as_component(&secret)? {
            Ok(_) => panic!("FORGE's user read {}", secret.display()),
            Err(e) => assert!(e.contains("Permission denied"), "{e}"),
        }
    }
    // Nor list the key directory (whose rings are there), nor rewrite the registry.
    let listed = as_component_user(Command::new("ls").arg(home.keys_dir())).output()?;
    assert!(!listed.status.success());
    let registry = home.security().join("identities.json");
    let before = std::fs::read(&registry)?;
    let wrote = as_component_user(
        Command::new("sh")
            .arg("-c")
            .arg(format!("echo '{{}}' > '{}'", registry.display())),
    )
    .output()?;
    assert!(!wrote.status.success());
    assert_eq!(std::fs::read(&registry)?, before);
    Ok(())
}
