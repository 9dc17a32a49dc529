//! The eight components as real processes under `ozone up`, bootstrapping through
//! `ecosystem.phase.*` on a real server: phase order, discovery, a killed component,
//! a late starter, validation, and `ozone down` leaving nothing behind.
//!
//! The component binaries must sit next to `ozone-cli` in the target directory:
//! `tests/run.sh` builds them first (`cargo build --workspace --bins`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone::supervisor::read_states;
use ozone_bus_schemas::phase::{ComponentState, PhaseEvent, PhaseTransition, Ping, PingReply};
use ozone_bus_schemas::{Component, Identity, IdentityKind, Subject};
use ozone_nats::audit::{AuditReader, AuditRecord};
use ozone_nats::bus::Bus;
use ozone_security::envelope::{auditor_key, Rotation};
use ozone_security::keydir::DirectoryTrust;
use ozone_security::pki::IssueOptions;
use ozone_tests::{ozone, TestHome};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

fn component_binary(c: Component) -> PathBuf {
    ozone_tests::component_binary(env!("CARGO_BIN_EXE_ozone-cli"), c)
}

/// Issue 18, finding 10: no component process of this home carries the CA passphrase (or the
/// name of its file) in its environment, though `ozone up` was given it.
fn finding_10_components_do_not_inherit_the_ca_passphrase(t: &TestHome) -> R {
    let home = format!("OZONE_STUDIO_HOME={}", t.home.root().display());
    let mut seen = 0;
    for entry in std::fs::read_dir("/proc")? {
        let dir = entry?.path();
        let (Ok(cmdline), Ok(environ)) = (
            std::fs::read(dir.join("cmdline")),
            std::fs::read(dir.join("environ")),
        ) else {
            continue;
        };
        let exe =
            String::from_utf8_lossy(cmdline.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let component = Component::ALL
            .iter()
            .any(|c| exe.ends_with(&format!("/{}", c.binary_name())));
        if component && vars.contains(&home) {
            seen += 1;
            assert!(
                !vars.iter().any(|v| v.starts_with("OZONE_CA_PASSPHRASE")),
                "{exe} inherited the CA passphrase"
            );
        }
    }
    assert!(seen >= 8, "found {seen} component processes of this home");
    Ok(())
}

/// Issue 18, finding 16: a worker `ozone spark scale` asked for is supervised — killed, it is
/// started again under its name (it used to be silently gone).
async fn finding_16_a_killed_extra_spark_worker_is_started_again(
    t: &TestHome,
    scale_output: &str,
) -> R {
    let pid: u32 = scale_output
        .lines()
        .find_map(|l| l.strip_prefix("started SPARK worker pid "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {scale_output}"));
    let record = || read_states(&t.home).get("spark-2").cloned();
    assert_eq!(record().and_then(|r| r.pid), Some(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = record() {
            if r.state == "running" && r.pid.is_some_and(|p| p != pid) {
                assert_eq!(r.restarts, 1, "{r:?}");
                assert!(r.last_exit.is_some_and(|e| e.contains("signal: 9")));
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "spark-2 not started again after kill -9: {:?}",
            record()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every phase event and phase transition in the audit stream, in stream order.
async fn phase_records(t: &TestHome) -> anyhow::Result<(Vec<PhaseEvent>, Vec<PhaseTransition>)> {
    let console = Identity::new(IdentityKind::Auditor, "console")?;
    let conn = t.connect(&console).await?;
    let key = auditor_key::load(&t.home, &console)?;
    let records = AuditReader::new(&conn, key, DirectoryTrust::load(&t.home)?)
        .records(None, false)
        .await?;
    futures::pin_mut!(records);
    let (mut events, mut transitions) = (Vec::new(), Vec::new());
    while let Some(r) = futures::StreamExt::next(&mut records).await {
        match r? {
            AuditRecord::Phase { event, .. } => events.push(event),
            AuditRecord::Transition { event, .. } => transitions.push(event),
            _ => {}
        }
    }
    Ok((events, transitions))
}

/// The core's capability announced each phase becoming ready, in phase order.
async fn core_announced_every_phase_ready(t: &TestHome) -> R {
    let mut transitions = Vec::new();
    for _ in 0..50 {
        transitions = phase_records(t).await?.1;
        if transitions.iter().any(|tr| tr.phase == 3 && tr.ready) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let ready: Vec<u8> = transitions
        .iter()
        .filter(|tr| tr.ready)
        .map(|tr| tr.phase)
        .collect();
    assert_eq!(ready, vec![0, 1, 2, 3], "{transitions:#?}");
    assert!(transitions.iter().all(|tr| tr.component == "ozone-studio"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ozone_up_bootstraps_by_phase_recovers_a_killed_component_and_down_leaves_nothing() -> R {
    for c in Component::ALL {
        component_binary(c);
    }
    let t = TestHome::new()?;
    let _down = ozone_tests::DownOnDrop::new(env!("CARGO_BIN_EXE_ozone-cli"), &t.home);
    let nats = ozone_tests::nats_server_binary()?;
    // The operator hands `ozone` the CA passphrase through the environment.
    let passphrase_file = ozone_security::passphrase::default_file(&t.home);
    let env = [
        ("OZONE_NATS_SERVER", nats.to_str().unwrap()),
        (
            "OZONE_CA_PASSPHRASE_FILE",
            passphrase_file.to_str().unwrap(),
        ),
    ];
    let started = Instant::now();
    let (ok, out, err) = ozone!(&t.home, &["up", "--detach"], &env)?;
    assert!(ok, "ozone up failed:\n{out}\n{err}");
    finding_10_components_do_not_inherit_the_ca_passphrase(&t)?;
    eprintln!(
        "ozone up --detach: {:.2}s in all",
        started.elapsed().as_secs_f64()
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("all phases ready"))
        .unwrap_or_else(|| panic!("no all-ready line:\n{out}\n{err}"));
    eprintln!("{line}");

    // Readiness order on ecosystem.phase.* follows the seed's phases.
    let events = phase_records(&t).await?.0;
    let mut first_ready: BTreeMap<Component, u64> = BTreeMap::new();
    for e in &events {
        if e.state == ComponentState::Ready {
            let c = Component::from_name(&e.component).unwrap();
            first_ready.entry(c).or_insert(e.at_ms);
        }
    }
    assert_eq!(first_ready.len(), 8, "{events:#?}");
    for a in Component::ALL {
        for b in Component::ALL.into_iter().filter(|b| b.phase() < a.phase()) {
            assert!(
                first_ready[&b] <= first_ready[&a],
                "{a} (phase {}) ready before {b} (phase {})",
                a.phase(),
                b.phase()
            );
        }
    }
    let span = first_ready.values().max().unwrap() - events.first().unwrap().at_ms;
    eprintln!("first announcement to all ready: {span} ms");
    core_announced_every_phase_ready(&t).await?;

    // Status as JSON, and one log file per component.
    let (ok, out, err) = ozone!(&t.home, &["status", "--json"], &env)?;
    assert!(ok, "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out)?;
    let rows = status["components"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    assert!(
        rows.iter()
            .all(|r| r["state"] == "ready"
                && r["instances"].as_array().is_some_and(|i| i.len() == 1)),
        "{out}"
    );
    for c in Component::ALL {
        let log = std::fs::read_to_string(t.home.logs().join(format!("{}.log", c.name())))?;
        assert!(log.contains("ready"), "{c}'s log: {log}");
    }

    // An impostor with a foreign CA is refused, and the refusal reaches the audit stream.
    let foreign = TestHome::new()?;
    let spark_id = Identity::component(Component::Spark);
    let impostor = ozone_security::tls::client_config_from_files(
        &t.home,
        &t.cfg,
        &ozone_security::pki::IdentityFiles::of(&foreign.home, &spark_id),
    )?;
    assert!(ozone_nats::connect(&t.url(), &spark_id, impostor)
        .await
        .is_err());
    let (ok, out, _) = ozone!(&t.home, &["audit", "tail"], &env)?;
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, out, _) = ozone!(&t.home, &["audit", "tail"], &env)?;
        if out.contains("nats-server refused 127.0.0.1:") && out.contains("unknown authority") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no authentication failure audited:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A plain client asking `$SRV.PING` hears all eight (through the AUDIT account's import).
    let console = t
        .connect(&Identity::new(IdentityKind::Auditor, "console")?)
        .await?;
    let pings = ozone::cmd::status::discover(&console, "PING", Duration::from_millis(700)).await?;
    let names: BTreeSet<String> = pings
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    let all: BTreeSet<String> = Component::ALL
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(names, all);

    // BRIDGE-side caller pinging the core (phase 2) throughout a phase-1 outage.
    let bridge_id = Identity::component(Component::Bridge);
    let bridge = Bus::start(t.connect(&bridge_id).await?, &t.home, Rotation::daily()).await?;
    let core_ping = Subject::ping(Component::Core);
    let pinger = {
        let bridge = bridge.clone();
        tokio::spawn(async move {
            let mut replies = Vec::new();
            let until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < until {
                let r = bridge
                    .request::<_, PingReply>(
                        &core_ping,
                        &Ping {
                            // A ping must name its authenticated sender.
                            from: Component::Bridge.name().into(),
                        },
                        Duration::from_secs(1),
                    )
                    .await;
                replies.push(r.map_err(|e| e.to_string()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            replies
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cognis_pid = read_states(&t.home)["cognis"].pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cognis_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    // `ozone status` shows it degraded before the restarted process is ready.
    let mut saw_degraded = false;
    for _ in 0..20 {
        let s = ozone::cmd::status::gather_with(&t.home, &t.cfg, Duration::from_millis(50)).await?;
        let cognis = s
            .components
            .iter()
            .find(|c| c.component == "cognis")
            .unwrap();
        if cognis.state == "degraded" {
            saw_degraded = true;
            assert!(
                cognis.detail.as_deref().unwrap_or("").contains("SIGKILL"),
                "{cognis:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(saw_degraded, "status never showed cognis degraded");
    let replies = pinger.await?;

    // The supervisor restarted it and the phase became ready again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = ozone::cmd::status::gather(&t.home, &t.cfg).await?;
        let cognis = s
            .components
            .iter()
            .find(|c| c.component == "cognis")
            .unwrap();
        if s.all_ready() {
            let p = cognis.process.as_ref().unwrap();
            assert_eq!(p.restarts, 1);
            assert_ne!(p.pid, Some(cognis_pid));
            break;
        }
        assert!(Instant::now() < deadline, "not ready again: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing in a later phase served while COGNIS was not ready: no pong between the
    // supervisor's degraded announcement and the new instance's ready.
    let events = phase_records(&t).await?.0;
    let down_at = events
        .iter()
        .find(|e| e.component == "cognis" && matches!(e.state, ComponentState::Degraded { .. }))
        .map(|e| e.at_ms)
        .unwrap();
    let up_again = events
        .iter()
        .filter(|e| e.component == "cognis" && e.state == ComponentState::Ready)
        .map(|e| e.at_ms)
        .find(|at| *at > down_at)
        .unwrap();
    // The core learns it from the bus (its own `waiting` announcement) and from then until it
    // announces `ready` again it serves nothing: no pong in that window.
    let core_waits = events
        .iter()
        .find(|e| {
            e.component == "ozone-studio"
                && e.at_ms >= down_at
                && matches!(&e.state, ComponentState::Waiting { on } if on == &vec!["cognis".to_string()])
        })
        .map(|e| e.at_ms)
        .unwrap();
    let core_ready = events
        .iter()
        .filter(|e| e.component == "ozone-studio" && e.state == ComponentState::Ready)
        .map(|e| e.at_ms)
        .find(|at| *at > core_waits)
        .unwrap();
    assert!(core_ready >= up_again, "the core was ready before cognis");
    assert!(
        core_waits - down_at < 500,
        "the core took {} ms to learn cognis was down",
        core_waits - down_at
    );
    let mut refused = 0;
    for r in &replies {
        match r {
            Ok(PingReply::Pong { served_at_ms, .. }) => assert!(
                *served_at_ms < core_waits || *served_at_ms > core_ready,
                "the core served at {served_at_ms} while waiting for cognis ({core_waits}..{core_ready})"
            ),
            Ok(PingReply::NotReady { waiting_on, .. }) => {
                // Empty in the moment between the core seeing cognis ready again and its own
                // `ready` announcement going out: still refused, for nothing else.
                assert!(
                    waiting_on.is_empty() || waiting_on == &vec!["cognis".to_string()],
                    "{waiting_on:?}"
                );
                refused += 1;
            }
            Err(e) => panic!("ping failed: {e}"),
        }
    }
    assert!(
        refused > 0,
        "the core never said it was waiting: {replies:?}"
    );
    eprintln!(
        "cognis outage {} ms (announced degraded to ready again); the core knew after {} ms and refused {refused} of {} pings",
        up_again - down_at,
        core_waits - down_at,
        replies.len()
    );

    // A second FORGE started after bootstrap learns the state and becomes ready.
    let mut late = std::process::Command::new(component_binary(Component::Forge))
        .arg("--home")
        .arg(t.home.root())
        .arg("--wait-timeout")
        .arg("10s")
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let late_ready = loop {
        let events = phase_records(&t).await?.0;
        if let Some(e) = events.iter().find(|e| {
            e.component == "forge" && e.pid == late.id() && e.state == ComponentState::Ready
        }) {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the late FORGE never became ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("late forge ready (instance {})", late_ready.instance);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(late.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    assert!(late.wait()?.success());

    // `ozone validate`: passes now, naming the settings asked for but not built yet; fails
    // naming a component that stops answering, and a certificate that expires within a day.
    let (ok, out, _) = ozone!(&t.home, &["validate"], &env)?;
    assert!(ok, "{out}");
    assert!(
        out.contains("warn  settings") && out.contains("authentication.api_key_authentication"),
        "{out}"
    );
    assert!(
        out.contains("ok    bootstrap methodology  bootstrap 1.0.0 registered and valid"),
        "{out}"
    );
    let scribe = read_states(&t.home)["scribe"].pid.unwrap() as i32;
    let pid = nix::unistd::Pid::from_raw(scribe);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)?;
    let (ok, out, _) = ozone!(&t.home, &["validate"], &env)?;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT)?;
    assert!(
        !ok && out.contains("FAIL") && out.contains("scribe"),
        "{out}"
    );
    t.issue_with(
        IdentityKind::Device,
        "sensor",
        IssueOptions::valid_for(Duration::from_secs(12 * 3600)),
    )?;
    let (ok, out, _) = ozone!(&t.home, &["validate"], &env)?;
    assert!(
        !ok && out.contains("device sensor expires within a day"),
        "{out}"
    );

    // `ozone spark scale`: a second worker joins the pool (two SPARK instances answer
    // discovery), the pool answers `ozone ask`, scaling back stops it; a scaled worker left
    // running is stopped by `ozone down` below.
    let spark_instances = || async {
        let status = ozone::cmd::status::gather(&t.home, &t.cfg).await?;
        anyhow::Ok(
            status
                .components
                .iter()
                .find(|c| c.component == "spark")
                .map(|c| c.instances.len())
                .unwrap_or(0),
        )
    };
    let wait_for_instances = |n: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while spark_instances().await? != n {
            anyhow::ensure!(Instant::now() < deadline, "SPARK never had {n} instances");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        anyhow::Ok(())
    };
    let (ok, out, err) = ozone!(&t.home, &["spark", "scale", "2"], &env)?;
    assert!(
        ok && out.contains("2 SPARK workers on this host"),
        "{out}{err}"
    );
    wait_for_instances(2).await?;
    let (ok, out, err) = ozone!(
        &t.home,
        &["ask", "Say hello.", "--max-tokens", "4", "--seed", "1"],
        &env
    )?;
    assert!(ok && !out.trim().is_empty(), "{out}{err}");
    assert!(err.contains("4 completion tokens"), "{err}");

    // The methodology registry, from the command line as the console operator: the shipped
    // methodologies are registered, a file is validated locally and registered over the bus.
    let (ok, out, err) = ozone!(&t.home, &["methodology", "list"], &env)?;
    assert!(
        ok && out.contains("summarize-text") && out.contains("bootstrap"),
        "{out}{err}"
    );
    let file = t.tmp.path().join("shout.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "name": "shout", "version": "0.1.0", "description": "Say it louder.",
            "inputs": { "text": { "type": "text" } },
            "steps": [{ "id": "say", "call": "spark.generate",
                        "with": { "prompt": { "raw": "{{ inputs.text | upper }}" } } }]
        })
        .to_string(),
    )?;
    let (ok, out, err) = ozone!(
        &t.home,
        &["methodology", "validate", file.to_str().unwrap()],
        &env
    )?;
    assert!(
        ok && out.contains("valid (shout 0.1.0, 1 steps)"),
        "{out}{err}"
    );
    let (ok, out, err) = ozone!(
        &t.home,
        &["methodology", "register", file.to_str().unwrap()],
        &env
    )?;
    assert!(ok && out.contains("registered shout 0.1.0"), "{out}{err}");
    let (ok, out, err) = ozone!(&t.home, &["methodology", "show", "shout"], &env)?;
    assert!(ok && out.contains("inputs.text | upper"), "{out}{err}");
    std::fs::write(&file, "{ \"name\": \"shout\", \"cal\": 1 }")?;
    let (ok, out, err) = ozone!(
        &t.home,
        &["methodology", "validate", file.to_str().unwrap()],
        &env
    )?;
    assert!(!ok && err.contains("unknown field `cal`"), "{out}{err}");

    // A task: the shipped summarize-text over this repository's README, run by the core
    // through SPARK; the command follows it step by step and prints the summary.
    let readme = format!("text=@{}/../README.md", env!("CARGO_MANIFEST_DIR"));
    let (ok, out, err) = ozone!(
        &t.home,
        &[
            "task",
            "run",
            "summarize-text",
            "--input",
            &readme,
            "--input",
            "max_words=40",
            "--wait"
        ],
        &env
    )?;
    assert!(ok, "{out}{err}");
    let summary = out.split("summary:\n").nth(1).unwrap_or_default();
    assert!(summary.trim().len() > 20, "{out}");
    for step in ["outline", "summary"] {
        assert!(
            err.lines()
                .any(|l| l.trim_start().starts_with(step) && l.contains("succeeded")),
            "{err}"
        );
    }
    let (ok, out, err) = ozone!(&t.home, &["task", "list"], &env)?;
    assert!(
        ok && out.contains("summarize-text") && out.contains("succeeded"),
        "{out}{err}"
    );
    let (ok, out, err) = ozone!(&t.home, &["spark", "scale", "1"], &env)?;
    assert!(ok && out.contains("stopped SPARK worker pid"), "{out}{err}");
    wait_for_instances(1).await?;
    let (ok, out, err) = ozone!(&t.home, &["spark", "scale", "2"], &env)?;
    assert!(ok, "{out}{err}");
    finding_16_a_killed_extra_spark_worker_is_started_again(&t, &out).await?;
    wait_for_instances(2).await?;

    // `ozone down` stops everything: every pid we know of is gone.
    let mut pids: Vec<i32> = read_states(&t.home)
        .values()
        .filter_map(|p| p.pid.map(|x| x as i32))
        .collect();
    pids.push(ozone::processes::supervisor_pid(&t.home).unwrap());
    pids.push(
        std::fs::read_to_string(t.home.run().join("nats-server.pid"))?
            .trim()
            .parse()?,
    );
    // Eight components, the extra SPARK worker, the supervisor and nats-server.
    assert_eq!(pids.len(), 11);
    let (ok, out, err) = ozone!(&t.home, &["down"], &env)?;
    assert!(ok, "{out}{err}");
    for pid in pids {
        assert!(
            !ozone_tests::process_running(pid),
            "pid {pid} still running after ozone down"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_component_whose_dependencies_never_come_up_names_them_and_gives_up() -> R {
    let eco = ozone_tests::TestEcosystem::start().await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let started = Instant::now();
    let out = tokio::process::Command::new(component_binary(Component::Core))
        .arg("--home")
        .arg(eco.t.home.root())
        .args(["--wait-timeout", "2s", "--log-format", "json"])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ozone-studio: timed out after 2s waiting for spark, cognis, zsei"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Its log, as requested, is JSON lines, and says what it waited for.
    let log = std::fs::read_to_string(eco.t.home.logs().join("ozone-studio.log"))?;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("timed out after 2s waiting for spark"))),
        "{log}"
    );
    let events = phase_records(&eco.t).await?.0;
    let states: Vec<&ComponentState> = events.iter().map(|e| &e.state).collect();
    assert!(
        states.contains(&&ComponentState::Waiting {
            on: vec!["spark".into(), "cognis".into(), "zsei".into()]
        }),
        "{states:?}"
    );
    assert!(
        matches!(states.last(), Some(ComponentState::Failed { reason }) if reason.contains("waiting for spark, cognis, zsei")),
        "{states:?}"
    );
    Ok(())
}
