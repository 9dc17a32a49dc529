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
    let limit = ozone::spark_cmd::max_workers();
    assert!(err.contains(&format!("at most {limit}")), "{err}");
    // Within the bound, but nothing is up in this home: refused, nothing started.
    let (ok, out, err) = ozone!(&t.home, &["spark", "scale", "2"], &[])?;
    assert!(!ok, "scale 2 without an ecosystem succeeded: {out}");
    assert!(err.contains("not up"), "{err}");
    assert!(ozone::spark_cmd::extra_workers(&t.home).is_empty());
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
