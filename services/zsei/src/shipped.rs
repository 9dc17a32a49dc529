//! The methodologies the platform ships (the repository's `methodologies/` folder, built
//! into the binary): registered when ZSEI starts, when absent. A shipped file changed without
//! a new version is refused by the registry like any other and reported, never overwritten.

use crate::registry::Registry;
use ozone_bus_schemas::zsei::{DocumentFormat, ZseiError};

/// (file name, document) of every shipped methodology.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "summarize-text.toml",
        include_str!("../../../methodologies/summarize-text.toml"),
    ),
    (
        "bootstrap.toml",
        include_str!("../../../methodologies/bootstrap.toml"),
    ),
];

/// Who the registry names as the registrant of shipped methodologies.
pub const SHIPPED_BY: &str = "zsei (shipped)";

/// Registers each shipped methodology that is absent; failures are logged, not fatal (the
/// registry keeps serving what it holds).
pub async fn register_absent(registry: &Registry, now_ms: u64) {
    for (file, text) in SHIPPED {
        match registry
            .register(DocumentFormat::Toml, text, SHIPPED_BY, now_ms)
            .await
        {
            Ok(r) => {
                tracing::debug!(name = %r.name, version = %r.version, "shipped methodology present")
            }
            Err(e @ ZseiError::VersionTaken { .. }) => {
                tracing::warn!("shipped {file}: {e}; the stored one stays")
            }
            Err(e) => tracing::error!("shipped {file} not registered: {e}"),
        }
    }
}
