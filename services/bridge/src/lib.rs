//! BRIDGE: web UI, HTTP and OpenAI-compatible API.
//!
//! For now it takes part in the ecosystem's lifecycle only: it joins the encrypted bus, is
//! discoverable through `$SRV`, follows the phased bootstrap and answers its lifecycle ping.
//! Its own capabilities arrive with their issues; nothing here pretends to have them.

use ozone_bus_schemas::Component;
use ozone_service::ComponentSpec;

pub const SPEC: ComponentSpec = ComponentSpec {
    component: Component::Bridge,
    version: env!("CARGO_PKG_VERSION"),
    description: "BRIDGE: web UI, HTTP and OpenAI-compatible API",
};
