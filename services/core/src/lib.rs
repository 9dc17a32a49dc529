//! OZONE STUDIO core: runs methodologies as durable multi-step tasks ([`tasks`]) and
//! announces each phase's transitions ([`transitions`]).

pub mod tasks;
pub mod transitions;

use futures::future::BoxFuture;
use ozone_bus_schemas::Component;
use ozone_service::{Capability, ComponentSpec, Serving};

pub const SPEC: ComponentSpec = ComponentSpec {
    component: Component::Core,
    version: env!("CARGO_PKG_VERSION"),
    description: "OZONE STUDIO core: runs methodologies as durable multi-step workflows",
};

/// What `ozone-studio` runs: the phase transitions and the tasks.
#[derive(Debug, Default)]
pub struct CoreCapability;

impl Capability for CoreCapability {
    fn start<'a>(
        self: Box<Self>,
        serving: Serving<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>> {
        Box::pin(async move {
            let mut handles = transitions::start(&serving);
            handles.extend(tasks::start(serving).await?);
            Ok(handles)
        })
    }
}
