//! Waiting for the earlier phases: announce what is missing until nothing is, a stop is
//! requested, or the wait times out (announced as `failed`).

use crate::join::Joined;
use crate::run::RunError;
use ozone_bus_schemas::phase::ComponentState;
use std::time::Duration;

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    Ready,
    Stop,
}

/// The `waiting` state naming each missing component.
pub(crate) fn waiting_on(missing: &[ozone_bus_schemas::Component]) -> ComponentState {
    ComponentState::Waiting {
        on: missing.iter().map(|d| d.name().to_string()).collect(),
    }
}

impl Joined {
    pub(crate) async fn wait_for_dependencies(
        &mut self,
        timeout: Duration,
    ) -> Result<Waited, RunError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing = self.view.missing(&self.deps);
            if missing.is_empty() {
                return Ok(Waited::Ready);
            }
            self.announcer
                .announce(waiting_on(&missing))
                .await
                .map_err(anyhow::Error::from)?;
            tokio::select! {
                _ = self.view.changed() => {}
                _ = self.stopping.requested() => return Ok(Waited::Stop),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(RunError::DependencyTimeout {
                        component: self.component,
                        waited: timeout,
                        waiting_for: missing,
                    });
                }
            }
        }
    }
}
