//! SPARK: local models (candle) served by a queue-group worker pool.
//!
//! - [`models`]: installing the shipped models, converting them, discovering others.
//! - [`engine`]: the models in-process (generation, embeddings).
//! - [`worker`]: one `ozone-spark` process serving them on the bus, with admission limits,
//!   cross-request embedding batches and metrics.
//! - [`client`]: how other components (and the CLI) call the pool: streaming, cancellation,
//!   retry on another worker when one dies.

pub mod client;
pub mod engine;
pub mod models;
pub mod worker;

use ozone_bus_schemas::Component;
use ozone_service::ComponentSpec;

pub const SPEC: ComponentSpec = ComponentSpec {
    component: Component::Spark,
    version: env!("CARGO_PKG_VERSION"),
    description: "SPARK: local models (candle) served by a queue-group worker pool",
};
