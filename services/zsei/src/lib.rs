//! ZSEI: methodology registry and semantic index.
//!
//! Today it serves the methodology registry ([`registry`]): `zsei.methodology.register`,
//! `get`, `list` and `deprecate`, on the component kit, and registers the methodologies the
//! platform ships when they are absent ([`shipped`]). The semantic index arrives with its
//! issue; nothing here pretends to have it.

pub mod registry;
pub mod shipped;

use futures::future::BoxFuture;
use ozone_bus_schemas::zsei::{
    Deprecate, DeprecateReply, DeprecateRequest, Get, GetReply, GetRequest, List, ListReply,
    ListRequest, Register, RegisterReply, RegisterRequest,
};
use ozone_bus_schemas::Component;
use ozone_service::kit::{handler_fn, Kit};
use ozone_service::{Capability, ComponentSpec, Serving};
use registry::Registry;
use std::sync::Arc;

pub const SPEC: ComponentSpec = ComponentSpec {
    component: Component::Zsei,
    version: env!("CARGO_PKG_VERSION"),
    description: "ZSEI: methodology registry and semantic index",
};

/// ZSEI's operations.
#[derive(Debug, Default)]
pub struct ZseiCapability;

impl Capability for ZseiCapability {
    fn start<'a>(
        self: Box<Self>,
        serving: Serving<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>> {
        Box::pin(start(serving))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn start(serving: Serving<'_>) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let registry = Registry::open(&serving.bus.connection().client).await?;
    shipped::register_absent(&registry, now_ms()).await;
    let mut kit = Kit::new(&serving);

    let r = registry.clone();
    kit.serve::<Register, _>(handler_fn(move |req: RegisterRequest, caller: Arc<str>| {
        let r = r.clone();
        async move {
            let record = r
                .register(req.format, &req.document, &caller, now_ms())
                .await?;
            tracing::info!(
                name = %record.name,
                version = %record.version,
                by = %caller,
                "methodology registered"
            );
            Ok(RegisterReply::Registered {
                name: record.name,
                version: record.version,
            })
        }
    }))
    .await?;

    let r = registry.clone();
    kit.serve::<Get, _>(handler_fn(move |req: GetRequest, _| {
        let r = r.clone();
        async move {
            let record = r.get(&req.name, req.version.as_deref()).await?;
            Ok(GetReply::Found(record))
        }
    }))
    .await?;

    let r = registry.clone();
    kit.serve::<List, _>(handler_fn(move |_: ListRequest, _| {
        let r = r.clone();
        async move { Ok(ListReply::Listed(r.all().await?)) }
    }))
    .await?;

    let r = registry;
    kit.serve::<Deprecate, _>(handler_fn(move |req: DeprecateRequest, caller| {
        let r = r.clone();
        async move {
            r.deprecate(&req.name, &req.version).await?;
            tracing::info!(name = %req.name, version = %req.version, by = %caller, "methodology deprecated");
            Ok(DeprecateReply::Deprecated {
                name: req.name,
                version: req.version,
            })
        }
    }))
    .await?;
    Ok(kit.into_tasks())
}
