//! Issue 18, finding 16: operator mistakes get a clear refusal instead of damage or silence.

use ozone_security::Home;
use ozone_tests::{ozone, TestHome};

type R = anyhow::Result<()>;

#[test]
fn finding_16_an_empty_question_is_refused_before_it_reaches_spark() -> R {
    let t = TestHome::new()?;
    for prompt in ["", "   "] {
        let (ok, out, err) = ozone!(&t.home, &["ask", prompt], &[])?;
        assert!(!ok, "`ozone ask {prompt:?}` succeeded: {out}");
        assert!(err.contains("the prompt is empty"), "{err}");
    }
    Ok(())
}

#[test]
fn finding_16_spark_scale_is_bounded_and_needs_a_running_ecosystem() -> R {
    let t = TestHome::new()?;
    let (ok, out, err) = ozone!(&t.home, &["spark", "scale", "1000"], &[])?;
    assert!(!ok, "scale 1000 succeeded: {out}");
    let limit = ozone::cmd::spark::max_workers();
    assert!(err.contains(&format!("at most {limit}")), "{err}");
    // Within the bound, but nothing is up in this home: refused, nothing started.
    let (ok, out, err) = ozone!(&t.home, &["spark", "scale", "2"], &[])?;
    assert!(!ok, "scale 2 without an ecosystem succeeded: {out}");
    assert!(err.contains("not up"), "{err}");
    assert!(!ozone::supervisor::spark_pool::request_file(&t.home).exists());
    Ok(())
}

#[test]
fn finding_16_init_names_the_directory_it_cannot_create() -> R {
    let tmp = tempfile::tempdir()?;
    // A regular file where a directory of the home would go.
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"")?;
    let home = Home::new(blocker.join("ozone"));
    let (ok, out, err) = ozone!(&home, &["init"], &[])?;
    assert!(!ok, "init succeeded: {out}");
    assert!(
        err.contains(&blocker.join("ozone").display().to_string()),
        "the error does not name the path: {err}"
    );
    Ok(())
}

/// The supervisor's record of one component: (state, pid).
fn process_of(home: &Home, c: &str) -> (String, Option<u32>) {
    ozone::supervisor::read_states(home)
        .get(c)
        .map(|p| (p.state.clone(), p.pid))
        .unwrap_or_default()
}

#[tokio::test]
async fn finding_16_a_component_given_up_on_is_started_again_by_ozone_up() -> R {
    let t = TestHome::new()?;
    let _down = ozone_tests::DownOnDrop::new(env!("CARGO_BIN_EXE_ozone-cli"), &t.home);
    let nats = ozone_tests::nats_server_binary()?;
    let env = [("OZONE_NATS_SERVER", nats.to_str().unwrap_or_default())];
    let (ok, out, err) = ozone!(&t.home, &["up", "--detach"], &env)?;
    assert!(ok, "ozone up failed:\n{out}\n{err}");

    // SCRIBE dies at once, again and again, until the supervisor gives up on it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut kills = 0;
    loop {
        let (state, pid) = process_of(&t.home, "scribe");
        if state == "failed" {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the supervisor never gave up on scribe ({kills} kills, state {state})"
        );
        if let (Some(pid), "running") = (pid, state.as_str()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            kills += 1;
            // Wait for the supervisor to notice before looking again.
            while process_of(&t.home, "scribe").1 == Some(pid) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // `ozone up` says what had been given up on and starts it again.
    let (ok, out, err) = ozone!(&t.home, &["up", "--detach"], &env)?;
    assert!(ok, "ozone up failed:\n{out}\n{err}");
    assert!(err.contains("had given up on scribe"), "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (state, pid) = process_of(&t.home, "scribe");
        if state == "running" && pid.is_some_and(|p| ozone_tests::process_running(p as i32)) {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "scribe not running again after ozone up (state {state})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}
