//! The `ozone` command's library: each subcommand is a module of `cmd/` with a `run` (or
//! named) function, so the binary only parses arguments and integration tests can call the
//! same code. The other modules are what commands share: joining the bus (`connect`), the
//! audit plane's setup (`audit_stream`), our processes by pid (`processes`), the component
//! supervisor (`supervisor/`), `up`'s progress and self-check.

pub mod audit_quota;
pub mod audit_stream;
pub mod cli;
pub mod cmd;
pub mod connect;
pub mod env_file;
pub mod processes;
pub mod progress;
pub mod selfcheck;
pub mod supervisor;
