//! SPARK: local models (candle) served by a queue-group worker pool.
//!
//! - [`models`]: installing the shipped models, converting them, discovering others.
//! - [`engine`]: the models in-process (generation, embeddings).
//! - [`worker`]: one `ozone-spark` process serving them on the bus, with admission limits,
//!   cross-request embedding batches and metrics.
//! - [`tools`]: what the `ozone` command asks of this binary (`ozone-spark models …`,
//!   `ozone-spark baseline`), so that the CLI links no model code.
//!
//! Callers use `ozone-spark-client` (`services/spark-client`), which has no engine in it.

pub mod engine;
pub mod models;
pub mod tools;
pub mod worker;

use ozone_bus_schemas::Component;
use ozone_service::ComponentSpec;

pub const SPEC: ComponentSpec = ComponentSpec {
    component: Component::Spark,
    version: env!("CARGO_PKG_VERSION"),
    description: "SPARK: local models (candle) served by a queue-group worker pool",
};
