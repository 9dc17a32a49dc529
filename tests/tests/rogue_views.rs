//! Issue 18, finding 14: a captured phase event published again later is refused by every
//! component, and `ozone status` (which reads the audit stream's copy) refuses it too.

use futures::StreamExt;
use ozone_bus_schemas::phase::{ComponentState, PhaseEvent};
use ozone_bus_schemas::{Component, Identity, Subject};
use ozone_nats::bus::{now_ms, Bus};
use ozone_security::envelope::Rotation;
use ozone_tests::TestEcosystem;
use std::time::Duration;

type R = anyhow::Result<()>;

fn event(state: ComponentState) -> PhaseEvent {
    PhaseEvent {
        component: Component::Forge.name().into(),
        phase: Component::Forge.phase(),
        instance: "forge-1".into(),
        version: "test".into(),
        pid: 4242,
        at_ms: now_ms(),
        state,
    }
}

async fn forge_state(eco: &TestEcosystem) -> anyhow::Result<String> {
    let status =
        ozone::cmd::status::gather_with(&eco.t.home, &eco.t.cfg, Duration::from_millis(50)).await?;
    Ok(status
        .components
        .iter()
        .find(|c| c.component == "forge")
        .map(|c| c.state.clone())
        .unwrap_or_default())
}

#[tokio::test]
async fn finding_14_status_refuses_a_replayed_phase_event() -> R {
    let eco = TestEcosystem::start().await?;
    ozone::audit_stream::prepare(&eco.t.home, &eco.t.cfg).await?;
    let forge_id = Identity::component(Component::Forge);
    let forge = Bus::start(
        eco.connect(&forge_id).await?,
        &eco.t.home,
        Rotation::daily(),
    )
    .await?;
    // The rogue's raw tap on its own phase subject (every component may read phase events).
    let tap = eco.connect(&forge_id).await?;
    let mut captured = tap
        .client
        .subscribe(Subject::phase_announce(Component::Forge).to_string())
        .await?;
    tap.sync().await?;

    forge
        .publish(
            &Subject::phase_announce(Component::Forge),
            &event(ComponentState::Waiting {
                on: vec!["cognis".into()],
            }),
        )
        .await?;
    let old = tokio::time::timeout(Duration::from_secs(5), captured.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("nothing captured"))?;
    forge
        .publish(
            &Subject::phase_announce(Component::Forge),
            &event(ComponentState::Ready),
        )
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while forge_state(&eco).await? != "ready" {
        anyhow::ensure!(std::time::Instant::now() < deadline, "FORGE never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The replay: the captured "waiting" bytes, published again as they were.
    tap.client
        .publish(old.subject.clone(), old.payload.clone())
        .await?;
    tap.sync().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = forge_state(&eco).await?;
    assert_eq!(state, "ready", "status believed the replayed event");
    Ok(())
}
