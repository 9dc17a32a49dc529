//! OZONE STUDIO's nats-server: its configuration generated from one description of who may
//! publish and subscribe to what, its supervision, and mTLS client connections.

pub mod audit;
pub mod buckets;
pub mod bus;
pub mod client;
pub mod config;
pub mod keydir;
pub mod phase_stream;
pub mod server;
pub mod sessions;
pub mod settings;
pub mod stored;
pub mod version;

pub use client::{connect, ConnectError, Connection, Violation};
pub use config::render as render_config;
pub use keydir::{KeyDirError, KeyDirectory};
pub use server::{NatsServer, ServerError};
pub use sessions::{SessionStore, SessionStoreError};
pub use settings::NatsSettings;
pub use version::{check_version, find_binary, MIN_VERSION};
