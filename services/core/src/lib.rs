//! OZONE STUDIO core: runs methodologies as durable multi-step workflows.
//!
//! For now it takes part in the ecosystem's lifecycle: it joins the encrypted bus, is
//! discoverable through `$SRV`, follows the phased bootstrap, answers its lifecycle ping, and
//! announces each phase's transitions ([`transitions`]). Methodologies arrive with their
//! issue; nothing here pretends to have them.

pub mod transitions;

use ozone_bus_schemas::Component;
use ozone_service::ComponentSpec;

pub const SPEC: ComponentSpec = ComponentSpec {
    component: Component::Core,
    version: env!("CARGO_PKG_VERSION"),
    description: "OZONE STUDIO core: runs methodologies as durable multi-step workflows",
};
