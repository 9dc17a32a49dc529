//! Test harness: a fresh `$OZONE_STUDIO_HOME` initialised exactly as `ozone init` does, and a
//! real nats-server started from the generated configuration on free ports, killed on drop.

use anyhow::Context;
use ozone_bus_schemas::{Identity, IdentityKind};
use ozone_nats::{ConnectError, Connection, NatsServer, NatsSettings};
use ozone_security::pki::{self, IssueOptions};
use ozone_security::{passphrase, tls, Home, SecurityConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod stolen;

/// A port nobody listens on right now, for a test server to bind a moment later.
///
/// Taken below the kernel's ephemeral range: a port from inside it (what binding port 0
/// hands out) can be given to another test's outgoing connection in the gap before
/// nats-server binds it, which made a test fail with "address already in use". Ports are
/// handed out in turn from a per-process start, so two tests of one binary never get the
/// same one; each is checked free before it is returned.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static TURN: AtomicU32 = AtomicU32::new(0);
    let low = 10_000u32;
    let high = ephemeral_range_start().max(low + 1_000);
    let span = high - low;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let turn = TURN.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + turn) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Every port below the range is taken: fall back to one the kernel picks.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The first port the kernel may pick for an outgoing connection (32768 when unknown).
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// An initialised home (no server).
#[derive(Debug)]
pub struct TestHome {
    pub tmp: tempfile::TempDir,
    pub home: Home,
    pub cfg: SecurityConfig,
    pub settings: NatsSettings,
}

impl TestHome {
    pub fn new() -> anyhow::Result<TestHome> {
        let tmp = tempfile::tempdir()?;
        let home = Home::new(tmp.path().join("ozone"));
        let wanted = NatsSettings {
            port: free_port(),
            monitor_port: free_port(),
            ..NatsSettings::default()
        };
        let (_, cfg) = ozone::cmd::init::run(&home, &wanted, &[])?;
        let settings = NatsSettings::load(&home)?;
        Ok(TestHome {
            tmp,
            home,
            cfg,
            settings,
        })
    }

    /// Issues an identity with custom options (expired, no clientAuth…).
    pub fn issue_with(
        &self,
        kind: IdentityKind,
        name: &str,
        opts: IssueOptions,
    ) -> anyhow::Result<Identity> {
        let id = Identity::new(kind, name)?;
        let pass = passphrase::resolve(&self.home, false)?;
        pki::issue(&self.home, &id, &opts, &pass)?;
        Ok(id)
    }

    pub fn issue(&self, kind: IdentityKind, name: &str) -> anyhow::Result<Identity> {
        self.issue_with(
            kind,
            name,
            IssueOptions::valid_for(Duration::from_secs(86_400)),
        )
    }

    /// Writes the generated NATS configuration; `edit` may change it (account-isolation probes).
    pub fn write_config(&self, edit: impl FnOnce(String) -> String) -> anyhow::Result<()> {
        ozone_nats::config::write(&self.home, &self.settings)?;
        let path = self.home.nats_config();
        let text = std::fs::read_to_string(&path)?;
        std::fs::write(&path, edit(text))?;
        Ok(())
    }

    pub async fn start_server(&self) -> anyhow::Result<NatsServer> {
        let binary = nats_server_binary()?;
        Ok(NatsServer::start(&self.home, &self.settings, &binary, Duration::from_secs(20)).await?)
    }

    pub fn url(&self) -> String {
        self.settings.url()
    }

    pub async fn connect(&self, id: &Identity) -> Result<Connection, ConnectError> {
        let tls = tls::client_config(&self.home, &self.cfg, id)?;
        ozone_nats::connect(&self.url(), id, tls).await
    }
}

/// Replaces the `permissions` of one identity's users in a generated server configuration:
/// how tests make a privileged observer (a probe on `>`) without touching the product's
/// table. Users are per certificate (`urn:ozone:<kind>:<name>:<serial>`), so they are found
/// by the identity's prefix. Panics when there is none, so a change in the generated layout
/// fails loudly.
pub fn with_permissions(config: &str, identity: &Identity, permissions: &str) -> String {
    let needle = format!("{{ user: \"{}", identity.nats_user_prefix());
    let mut found = false;
    let lines: Vec<String> = config
        .lines()
        .map(|l| {
            let user_end = l.find(&needle).and_then(|at| {
                let name_end = at + needle.len();
                l[name_end..].find("\", ").map(|e| (at, name_end + e))
            });
            match user_end {
                Some((_, end)) => {
                    found = true;
                    let comma = if l.trim_end().ends_with(',') { "," } else { "" };
                    format!("{}\", permissions: {permissions} }}{comma}", &l[..end])
                }
                None => l.to_string(),
            }
        })
        .collect();
    assert!(
        found,
        "no user of {identity} in the generated configuration"
    );
    lines.join("\n")
}

/// A home plus a running server.
#[derive(Debug)]
pub struct TestEcosystem {
    pub server: NatsServer,
    pub t: TestHome,
}

impl TestEcosystem {
    pub async fn start() -> anyhow::Result<TestEcosystem> {
        Self::start_with(|_| Ok(()), |c| c).await
    }

    /// `prepare` runs before the configuration is generated (issue identities there);
    /// `edit` may alter the generated configuration.
    pub async fn start_with(
        prepare: impl FnOnce(&TestHome) -> anyhow::Result<()>,
        edit: impl FnOnce(String) -> String,
    ) -> anyhow::Result<TestEcosystem> {
        let t = TestHome::new()?;
        prepare(&t)?;
        t.write_config(edit)?;
        let server = t.start_server().await?;
        Ok(TestEcosystem { server, t })
    }

    pub async fn connect(&self, id: &Identity) -> Result<Connection, ConnectError> {
        self.t.connect(id).await
    }

    /// A running server with a second auditor (`siem`), the audit stream prepared and the
    /// auditors' keys published: what `ozone up` sets up before the components start.
    pub async fn audited() -> anyhow::Result<TestEcosystem> {
        let eco = Self::start_with(
            |t| t.issue(IdentityKind::Auditor, "siem").map(|_| ()),
            |c| c,
        )
        .await?;
        ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
        Ok(eco)
    }

    /// Component `c` joined to the bus as its process joins it: its key published, the key
    /// directory followed, keys rotated daily.
    pub async fn join(
        &self,
        c: ozone_bus_schemas::Component,
    ) -> anyhow::Result<ozone_nats::bus::Bus> {
        let conn = self.connect(&Identity::component(c)).await?;
        Ok(ozone_nats::bus::Bus::start(
            conn,
            &self.t.home,
            ozone_security::envelope::Rotation::daily(),
        )
        .await?)
    }
}

/// A component's capability served in this process, as its process serves it once its
/// dependencies are ready: joined to the bus, its micro-service registered, its tasks
/// running. Dropping it stops the tasks.
pub struct Served {
    pub bus: ozone_nats::bus::Bus,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _service: async_nats::service::Service,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Served({} tasks)", self.tasks.len())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TestEcosystem {
    /// Starts `capability` as component `c` (see [`Served`]).
    pub async fn serve(
        &self,
        c: ozone_bus_schemas::Component,
        capability: Box<dyn ozone_service::Capability>,
    ) -> anyhow::Result<Served> {
        use async_nats::service::ServiceExt;
        let bus = self.join(c).await?;
        let service = bus
            .connection()
            .client
            .service_builder()
            .start(c.name(), "0.1.0")
            .await
            .map_err(|e| anyhow::anyhow!("micro-service: {e}"))?;
        let (view, follower) = ozone_service::PhaseView::follow(&bus).await?;
        let serving = ozone_service::Serving {
            component: c,
            view,
            bus: bus.clone(),
            service: &service,
            instance: format!("test-{}", std::process::id()),
            home: self.t.home.clone(),
            stats: ozone_service::StatsSlot::default(),
        };
        let mut tasks = capability.start(serving).await?;
        tasks.push(follower);
        Ok(Served {
            bus,
            tasks,
            _service: service,
        })
    }
}

/// Every audit event in the stream so far, as (authenticated sender, event), read as
/// `auditor`.
pub async fn audit_events(
    eco: &TestEcosystem,
    auditor: &str,
) -> anyhow::Result<Vec<(String, ozone_bus_schemas::AuditKind)>> {
    use ozone_nats::audit::{AuditReader, AuditRecord};
    let id = Identity::new(IdentityKind::Auditor, auditor)?;
    let key = ozone_security::envelope::auditor_key::load(&eco.t.home, &id)?;
    let conn = eco.connect(&id).await?;
    let trust = ozone_security::keydir::DirectoryTrust::load(&eco.t.home)?;
    let records = AuditReader::new(&conn, key, trust)
        .records(None, false)
        .await?;
    futures::pin_mut!(records);
    let mut out = Vec::new();
    while let Some(r) = futures::StreamExt::next(&mut records).await {
        if let AuditRecord::Event { sender, event, .. } = r? {
            out.push((sender, event.event));
        }
    }
    Ok(out)
}

/// Waits (up to 10 s) until the audit stream holds an event `wanted` accepts, given its
/// authenticated sender; the error names `what` and lists what the stream holds.
pub async fn audited(
    eco: &TestEcosystem,
    what: &str,
    wanted: impl Fn(&str, &ozone_bus_schemas::AuditKind) -> bool,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = audit_events(eco, "console").await?;
        if events.iter().any(|(by, e)| wanted(by, e)) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "not audited: {what}; {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 5 s) for the server to report violation `v` on `conn` (`events` taken from
/// `conn.events()` before acting).
pub async fn expect_violation(
    conn: &Connection,
    events: &mut tokio::sync::broadcast::Receiver<ozone_nats::client::ConnEvent>,
    v: ozone_nats::client::Violation,
) -> anyhow::Result<()> {
    use ozone_nats::client::ConnEvent;
    let wait = Duration::from_secs(5);
    let got = Connection::wait_for(events, wait, |e| *e == ConnEvent::Violation(v.clone())).await;
    anyhow::ensure!(got.is_some(), "{}: no violation for {v:?}", conn.identity);
    Ok(())
}

/// Runs one of the Python programs beside the tests (`audit_reader/ozone_audit_reader.py`,
/// `example_client/ozone_example_client.py`) against `eco` as identity `name` (`--as`), with
/// `$OZONE_AUDIT_PYTHON` (tests/run.sh prepares it); one JSON value per line it prints.
pub fn run_python(
    script: &str,
    eco: &TestEcosystem,
    name: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let python = std::env::var("OZONE_AUDIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .arg("--home")
        .arg(eco.t.home.root())
        .args(["--as", name, "--url", &eco.t.url()])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        anyhow::bail!(
            "{python} lacks the packages: run tests/run.sh, or pip install -r \
             tests/audit_reader/requirements.txt and set OZONE_AUDIT_PYTHON\n{stderr}"
        );
    }
    anyhow::ensure!(out.status.success(), "{script} failed: {stderr}");
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// `fut`, or an error naming `what` after 15 s (generous: the whole suite shares two cores).
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| anyhow::anyhow!("no {what} within 15 s"))
}

/// Bus keys for every component, each with its own copy of the key directory.
pub fn bus_keys(
    home: &Home,
) -> anyhow::Result<std::collections::HashMap<ozone_bus_schemas::Component, ozone_nats::bus::BusKeys>>
{
    Ok(ozone_nats::bus::local_keys(
        home,
        &ozone_bus_schemas::Component::ALL,
    )?)
}

/// The current value of every key of a bucket (`bucket`, behind `stream`), read as a member
/// reads it: by batch direct get (members hold no consumer). Erased keys are left out.
pub async fn bucket_entries(
    conn: &Connection,
    stream: &str,
    bucket: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, bytes::Bytes>> {
    use ozone_bus_schemas::streams::{bucket_key, bucket_subjects};
    let stored =
        ozone_nats::stored::last_per_subject(&conn.client, stream, &bucket_subjects(bucket))
            .await?;
    Ok(stored
        .into_iter()
        .filter(|s| !s.is_delete_marker())
        .filter_map(|s| Some((bucket_key(bucket, &s.subject)?.to_string(), s.payload)))
        .collect())
}

/// nats-server as the product finds it (OZONE_NATS_SERVER, PATH).
pub fn nats_server_binary() -> anyhow::Result<PathBuf> {
    ozone_nats::find_binary(std::path::Path::new("/nonexistent"))
        .context("the integration tests need nats-server ≥ 2.14.3: run nats/install-nats-server.sh")
}

/// Component `c`'s current envelope key, read from its ring file in the home as a process of
/// it (or a thief of its ring) holds it.
pub fn current_key(
    home: &Home,
    c: ozone_bus_schemas::Component,
) -> anyhow::Result<ozone_security::envelope::SecretKeyPair> {
    let ring = ozone_security::envelope::keyring_file::load_or_create(
        home,
        &Identity::component(c),
        ozone_security::envelope::Rotation::daily(),
        ozone_nats::bus::now_ms(),
    )?;
    ring.current()
        .map(|k| k.duplicate())
        .with_context(|| format!("{c} holds no current key"))
}

/// The executable of component `c`, built beside `cli` (`env!("CARGO_BIN_EXE_ozone-cli")` of
/// the calling test: `tests/run.sh` builds every binary first).
pub fn component_binary(cli: &str, c: ozone_bus_schemas::Component) -> PathBuf {
    let path = std::path::Path::new(cli).with_file_name(c.binary_name());
    assert!(
        path.exists(),
        "{} missing: run tests/run.sh (it builds the component binaries first)",
        path.display()
    );
    path
}

/// Runs `ozone --home <home> args…`; returns (exit ok, stdout, stderr).
/// `bin` is `env!("CARGO_BIN_EXE_ozone-cli")` of the calling test.
pub fn ozone_at(
    bin: &str,
    home: &Home,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(bool, String, String)> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--home").arg(home.root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs the `ozone` command built for this test package.
#[macro_export]
macro_rules! ozone {
    ($home:expr, $args:expr, $env:expr) => {
        $crate::ozone_at(env!("CARGO_BIN_EXE_ozone-cli"), $home, $args, $env)
    };
}

/// Runs `ozone down` for a home when dropped, so a failing test leaves no supervisor, server
/// or component behind.
#[derive(Debug)]
pub struct DownOnDrop {
    bin: String,
    home: Home,
}

impl DownOnDrop {
    pub fn new(bin: &str, home: &Home) -> DownOnDrop {
        DownOnDrop {
            bin: bin.to_string(),
            home: home.clone(),
        }
    }
}

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = ozone_at(&self.bin, &self.home, &["down"], &[]);
    }
}

/// Whether a process with this pid is running (a zombie waiting to be reaped is not).
pub fn process_running(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// The models folder the SPARK tests serve from: `$OZONE_MODELS_DIR` (tests/run.sh installs
/// the shipped models there first), else the per-user cache, installed on first use.
pub fn models_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("OZONE_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("HOME is not set")?
            .join(".cache/ozone-studio/models"),
    };
    if !ozone_spark::models::install::installed(&dir) {
        let mut opts = ozone_spark::models::InstallOptions::new(dir.clone());
        opts.progress = false;
        ozone_spark::models::install(&opts)?;
    }
    Ok(dir)
}

/// An `ozone-spark` worker process on a test home; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct SparkProcess {
    pub child: std::process::Child,
}

impl SparkProcess {
    /// Starts a worker next to the test's `ozone-cli` binary with `env` added.
    pub fn start(cli_bin: &str, home: &Home, env: &[(&str, &str)]) -> anyhow::Result<SparkProcess> {
        let bin = std::path::Path::new(cli_bin)
            .parent()
            .context("no bin dir")?
            .join("ozone-spark");
        let mut cmd = std::process::Command::new(bin);
        cmd.env("OZONE_STUDIO_HOME", home.root())
            .env("OZONE_MODELS_DIR", models_dir()?)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(SparkProcess {
            child: cmd.spawn()?,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Resident memory in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SparkProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "a port handed out twice: {ports:?}"
        );
        let ephemeral = ephemeral_range_start();
        assert!(ports.iter().all(|&p| (p as u32) < ephemeral && p >= 10_000));
    }
}
