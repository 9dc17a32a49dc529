//! The `ozone` command's library: each subcommand is a module with a `run` function, so the
//! binary only parses arguments and integration tests can call the same code.

pub mod audit_cmd;
pub mod audit_quota;
pub mod bench;
pub mod cli;
pub mod components;
pub mod down;
pub mod env_file;
pub mod init;
pub mod pki_cmd;
pub mod progress;
pub mod selfcheck;
pub mod spark_bench;
pub mod spark_cmd;
pub mod spark_pool;
pub mod status;
pub mod supervise;
pub mod systemd;
pub mod up;
pub mod validate;
pub mod validate_audit;
pub mod validate_directory;
