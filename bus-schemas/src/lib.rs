//! Every NATS subject, identity and permission of OZONE STUDIO, declared once.
//!
//! No other crate spells a subject string: they ask this crate. The permission table in
//! [`permissions`] is the single source for the generated nats-server configuration.

pub mod audit;
pub mod catalogue;
pub mod component;
pub mod core;
pub mod identity;
pub mod operation;
pub mod permissions;
pub mod phase;
pub mod reference;
pub mod spark;
pub mod streams;
pub mod subject;
pub mod table;
pub mod zsei;

pub use audit::{AuditEvent, AuditKind, AUDIT_SCHEMA};
pub use component::Component;
pub use identity::{Identity, IdentityKind, InvalidName, NatsAccount};
pub use permissions::Permissions;
pub use subject::Subject;
