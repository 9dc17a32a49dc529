//! The second-language client (tests/example_client, Python, written from docs/ alone) against
//! a real SPARK worker on the project's nats-server: it publishes its own key, pings, generates
//! while sending keepalives, sees an unattended generation stopped, and embeds — sealing and
//! opening every message itself. If the docs missed something a client needs, this fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::{Component, Identity};
use ozone_nats::bus::Bus;
use ozone_security::envelope::Rotation;
use ozone_spark_client::SparkClient;
use ozone_tests::{SparkProcess, TestEcosystem};
use std::time::Duration;

const CLI: &str = env!("CARGO_BIN_EXE_ozone-cli");

/// Runs the example client as FORGE (a caller of SPARK that no process plays here).
fn example_client(eco: &TestEcosystem) -> anyhow::Result<Vec<serde_json::Value>> {
    ozone_tests::run_python("example_client/ozone_example_client.py", eco, "forge")
}

fn field<'a>(lines: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find_map(|l| l.get(name))
        .unwrap_or_else(|| panic!("no {name} line in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_written_from_the_docs_pings_generates_with_keepalives_and_embeds(
) -> anyhow::Result<()> {
    let eco = TestEcosystem::start().await?;
    let _worker = SparkProcess::start(CLI, &eco.t.home, &[])?;
    let bridge = Identity::component(Component::Bridge);
    let bus = Bus::start(eco.connect(&bridge).await?, &eco.t.home, Rotation::daily()).await?;
    SparkClient::new(bus)
        .wait_for_workers(1, Duration::from_secs(90))
        .await?;

    // A process of its own; this test's thread only waits for it.
    let lines = tokio::task::block_in_place(|| example_client(&eco))?;
    for l in &lines {
        eprintln!("{l}");
    }

    let ping = field(&lines, "ping");
    assert_eq!(ping["reply"], "pong", "{ping}");
    assert_eq!(ping["component"], "spark");

    let kept = field(&lines, "generate");
    let done = &kept["done"];
    assert!(done.is_object(), "{kept}");
    let streamed: String = kept["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(streamed, done["text"].as_str().unwrap());
    assert!(kept["keepalives"].as_u64().unwrap() >= 1, "{kept}");
    assert_eq!(
        done["usage"]["completion_tokens"],
        kept["tokens"].as_array().unwrap().len()
    );

    // Without keepalives the worker stops the work after 4 s: the client learned the
    // keepalive's shape and deadline from the docs, or the first generation would have died.
    let left = field(&lines, "unattended");
    assert_eq!(left["failed"], "cancelled", "{left}");
    assert!(left["seconds"].as_f64().unwrap() >= 4.0, "{left}");

    // Answers after a session's first arrive compact (version 7): the client opened both.
    let envelopes = field(&lines, "envelopes");
    assert!(envelopes["full"].as_u64().unwrap() >= 1, "{envelopes}");
    assert!(envelopes["compact"].as_u64().unwrap() >= 100, "{envelopes}");

    let embed = field(&lines, "embed");
    assert_eq!(embed["dimensions"], 384, "{embed}");
    assert!(
        (embed["norm"].as_f64().unwrap() - 1.0).abs() < 1e-3,
        "{embed}"
    );
    Ok(())
}
