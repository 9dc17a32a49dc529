//! The runtime every OZONE STUDIO component runs on.
//!
//! A component binary is a [`ComponentSpec`] and a call to [`main`]. The runtime connects with
//! the component's certificate, joins the encrypted bus (key directory, rotation, audit),
//! registers a NATS micro-service (so `$SRV.PING/INFO/STATS` find it), and follows the
//! bootstrap protocol on `ecosystem.phase.*`: it announces its state, waits until every
//! component of an earlier phase is ready, serves only while they stay ready, and says what it
//! waits for.

mod announce;
mod args;
mod capability;
mod join;
pub mod kit;
mod logging;
mod run;
mod serve;
mod view;
mod wait;

pub use args::Args;
pub use capability::{Capability, Serving, StatsFn, StatsSlot};
pub use run::{main, main_with, run, ComponentSpec, RunError};
pub use view::PhaseView;
