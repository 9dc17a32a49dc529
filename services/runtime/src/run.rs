//! A component's life: join (connect, bus, discovery, announcements), wait for the earlier
//! phases, serve while they stay ready, stop cleanly on SIGTERM.

use crate::args::Args;
use crate::capability::Capability;
use crate::join::Joined;
use crate::wait::Waited;
use clap::Parser;
use ozone_bus_schemas::Component;
use std::process::ExitCode;
use std::time::Duration;

/// What a component binary declares about itself.
#[derive(Debug, Clone, Copy)]
pub struct ComponentSpec {
    pub component: Component,
    pub version: &'static str,
    pub description: &'static str,
}

/// Why a component stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{component}: timed out after {waited:?} waiting for {}", names(.waiting_for))]
    DependencyTimeout {
        component: Component,
        waited: Duration,
        waiting_for: Vec<Component>,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn names(cs: &[Component]) -> String {
    cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// The components this one needs ready before it serves: every one of an earlier phase.
pub fn dependencies(c: Component) -> Vec<Component> {
    Component::ALL
        .into_iter()
        .filter(|d| d.phase() < c.phase())
        .collect()
}

/// The whole binary: parse arguments, run, map the outcome to an exit code (2: a dependency
/// never became ready).
pub fn main(spec: ComponentSpec) -> ExitCode {
    main_with(spec, Args::parse(), None)
}

/// [`main`] for a component with its own endpoints (and its own arguments, parsed by the
/// caller with [`Args`] flattened in).
pub fn main_with(
    spec: ComponentSpec,
    args: Args,
    capability: Option<Box<dyn Capability>>,
) -> ExitCode {
    let runtime = match args.async_threads.unwrap_or(0) {
        0 => tokio::runtime::Runtime::new(),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(spec, args, capability)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ RunError::DependencyTimeout { .. }) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(
    spec: ComponentSpec,
    args: Args,
    capability: Option<Box<dyn Capability>>,
) -> Result<(), RunError> {
    let mut joined = Joined::join(spec, &args).await?;
    match joined.wait_for_dependencies(args.wait_timeout).await {
        Ok(Waited::Stop) => joined.stop().await,
        Ok(Waited::Ready) => joined.serve(capability).await,
        Err(e) => {
            joined.fail(e.to_string()).await;
            Err(e)
        }
    }
}
