//! The `ozone` command as an operator runs it: init, pki verify, up, down.

use ozone_bus_schemas::{Component, Identity};
use ozone_security::pki::IdentityFiles;
use ozone_security::Home;
use ozone_tests::{free_port, nats_server_binary, ozone, process_running};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;

fn security_files(home: &Home) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for dir in [home.ca_dir(), home.keys_dir(), home.certs_dir()] {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            out.push((p.display().to_string(), std::fs::read(&p)?));
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn init_twice_leaves_every_key_byte_identical() -> R {
    let tmp = tempfile::tempdir()?;
    let home = Home::new(tmp.path().join("h"));
    let (ok, out, err) = ozone!(&home, &["init"], &[])?;
    assert!(ok, "{out}{err}");
    let before = security_files(&home)?;
    let keys = before.iter().filter(|(p, _)| p.ends_with(".key")).count();
    assert_eq!(
        keys,
        3 + 1 + 8 + 2,
        "3 CA keys, the server's, 8 components', the console auditor's and operator's"
    );
    assert!(
        before
            .iter()
            .any(|(p, _)| p.ends_with("operator-console.key")),
        "init issues the console operator"
    );
    let (ok, out, _) = ozone!(&home, &["init"], &[])?;
    assert!(ok && out.contains("nothing changed"), "{out}");
    assert_eq!(security_files(&home)?, before);
    for sub in [
        "bin",
        "lib",
        "etc",
        "var/log",
        "var/data",
        "var/cache",
        "security/ca",
        "security/certificates",
        "security/keys",
        "models",
        "methodologies",
        "backups",
    ] {
        assert!(home.root().join(sub).is_dir(), "{sub} missing");
    }
    let env = std::fs::read_to_string(home.ecosystem_env())?;
    assert!(
        env.contains("OZONE_NATS_URL=\"tls://127.0.0.1:4222\"") && env.contains("SPARK_ENDPOINT"),
        "{env}"
    );
    Ok(())
}

#[test]
fn pki_verify_exits_non_zero_and_says_how_to_fix() -> R {
    let tmp = tempfile::tempdir()?;
    let home = Home::new(tmp.path().join("h"));
    assert!(ozone!(&home, &["init"], &[])?.0);
    let (ok, out, _) = ozone!(&home, &["pki", "verify"], &[])?;
    assert!(ok, "{out}");
    let key = IdentityFiles::of(&home, &Identity::component(Component::Bridge)).key;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640))?;
    let (ok, _, err) = ozone!(&home, &["pki", "verify"], &[])?;
    assert!(!ok);
    assert!(
        err.contains("bridge.key") && err.contains("0640") && err.contains("fix: chmod 600"),
        "{err}"
    );
    Ok(())
}

#[test]
fn configuration_layers_reach_the_code() -> R {
    let tmp = tempfile::tempdir()?;
    let home = Home::new(tmp.path().join("h"));
    assert!(ozone!(&home, &["init"], &[])?.0);
    // Environment over file.
    let (ok, _, err) = ozone!(
        &home,
        &["pki", "verify"],
        &[("OZONE_NETWORK_SECURITY__TLS_VERSION", "1.2")]
    )?;
    assert!(!ok && err.contains("only TLS 1.3"), "{err}");
    // Flag over environment.
    let (ok, out, err) = ozone!(
        &home,
        &["--set", "network_security.tls_version=1.3", "pki", "verify"],
        &[("OZONE_NETWORK_SECURITY__TLS_VERSION", "1.2")]
    )?;
    assert!(ok, "{out}{err}");
    // File values are used: a 45-day validity is what `issue` produces.
    let cfg = home.security_config();
    let text = std::fs::read_to_string(&cfg)?;
    assert!(
        text.contains("certificate_validity_duration = \"365d\""),
        "{text}"
    );
    std::fs::write(
        &cfg,
        text.replace(
            "certificate_validity_duration = \"365d\"",
            "certificate_validity_duration = \"45d\"",
        ),
    )?;
    let (ok, out, err) = ozone!(&home, &["pki", "issue", "device", "tablet"], &[])?;
    assert!(ok, "{out}{err}");
    let (_, list, _) = ozone!(&home, &["pki", "list"], &[])?;
    let expected = (time::OffsetDateTime::now_utc() + time::Duration::days(45))
        .date()
        .to_string();
    assert!(
        list.lines()
            .any(|l| l.contains("tablet") && l.contains(&expected)),
        "{list}"
    );
    Ok(())
}

fn pid_in(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn up_checks_the_security_plane_restarts_a_dead_server_and_down_leaves_nothing() -> R {
    nats_server_binary()?;
    let tmp = tempfile::tempdir()?;
    let home = Home::new(tmp.path().join("h"));
    let _down = ozone_tests::DownOnDrop::new(env!("CARGO_BIN_EXE_ozone-cli"), &home);
    let port = free_port().to_string();
    let monitor = free_port().to_string();
    let (ok, out, err) = ozone!(
        &home,
        &[
            "up",
            "--detach",
            "--nats-port",
            &port,
            "--monitor-port",
            &monitor
        ],
        &[]
    )?;
    assert!(ok, "up failed:\n{out}\n{err}");
    assert!(
        out.contains("security plane UP") && out.contains("8 of 8"),
        "{out}"
    );

    let supervisor = pid_in(&home.run().join("ozone-supervisor.pid"))
        .ok_or_else(|| anyhow::anyhow!("no supervisor pid"))?;
    let first = pid_in(&home.run().join("nats-server.pid"))
        .ok_or_else(|| anyhow::anyhow!("no nats pid"))?;
    assert!(ozone_tests::process_running(supervisor) && ozone_tests::process_running(first));

    // The server dies hard; the supervisor brings it back.
    std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut second = None;
    while Instant::now() < deadline {
        if let Some(p) = pid_in(&home.run().join("nats-server.pid"))
            .filter(|p| *p != first && ozone_tests::process_running(*p))
        {
            second = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = second.ok_or_else(|| anyhow::anyhow!("nats-server was not restarted"))?;
    // A second `up` finds it running and the security plane intact.
    let (ok, out, err) = ozone!(&home, &["up", "--detach"], &[])?;
    assert!(ok && out.contains("8 of 8"), "{out}{err}");

    let (ok, out, _) = ozone!(&home, &["down"], &[])?;
    assert!(ok && out.contains("stopped ozone supervisor"), "{out}");
    for pid in [supervisor, second] {
        assert!(
            !ozone_tests::process_running(pid),
            "pid {pid} still running after down"
        );
    }
    Ok(())
}

/// The processes whose parent is `parent`, with their command names.
fn children_of(parent: u32) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid …: the name may hold spaces, so split after its ')'.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some((pid, comm))
        })
        .collect()
}

#[test]
fn a_benchmark_stopped_midway_leaves_no_server_behind() -> R {
    // `ozone bench bus` runs its own nats-server; Ctrl-C or SIGTERM must not orphan it.
    for signal in [nix::sys::signal::SIGTERM, nix::sys::signal::SIGINT] {
        let mut bench = std::process::Command::new(env!("CARGO_BIN_EXE_ozone-cli"))
            .args(["bench", "bus", "--messages", "5000000"])
            .env("OZONE_NATS_SERVER", nats_server_binary()?)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let server = loop {
            if let Some((pid, _)) = children_of(bench.id())
                .into_iter()
                .find(|(_, comm)| comm == "nats-server")
            {
                break pid;
            }
            if Instant::now() > deadline {
                let _ = bench.kill();
                anyhow::bail!("the benchmark started no nats-server within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(bench.id() as i32), signal)?;
        let out = bench.wait_with_output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{signal}: exited as if it had finished: {err}"
        );
        assert!(err.contains("servers are stopped"), "{signal}: {err}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_running(server) {
            assert!(
                Instant::now() < deadline,
                "{signal}: nats-server {server} still runs after the benchmark stopped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

#[test]
fn the_bus_benchmark_prints_a_row_per_chosen_size_with_its_ratios() -> R {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ozone-cli"))
            .args(["bench", "bus"])
            .args(args)
            .env("OZONE_NATS_SERVER", nats_server_binary()?)
            .output()
            .map_err(anyhow::Error::from)
    };
    let out = run(&[
        "--sizes",
        "300,5000",
        "--rounds",
        "2",
        "--messages",
        "400",
        "--requests",
        "20",
    ])?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    for size in ["300", "5000"] {
        let row = stdout
            .lines()
            .find(|l| l.split('|').next().map(str::trim) == Some(size))
            .ok_or_else(|| anyhow::anyhow!("no row for {size} B in:\n{stdout}"))?;
        // raw msg/s, sealed msg/s, ratio: all measured, none zero.
        let pubsub: Vec<f64> = row
            .split('|')
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        assert!(
            pubsub.len() == 3 && pubsub.iter().all(|v| v.is_finite() && *v > 0.0),
            "{row}"
        );
        assert!(
            stderr.contains(&format!("{size} B: a warm-up, then 2 rounds")),
            "{stderr}"
        );
    }
    assert_eq!(stderr.matches("round 2/2:").count(), 2, "{stderr}");
    assert!(!stdout.lines().any(|l| l.trim_start().starts_with("256 |")));

    for (flag, value) in [("--sizes", "0"), ("--messages", "0"), ("--requests", "0")] {
        let refused = run(&[flag, value])?;
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && err.contains(flag),
            "{flag}: {err}"
        );
    }
    Ok(())
}
