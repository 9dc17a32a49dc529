//! One module per `ozone` command.

pub mod audit;
pub mod bench_bus;
pub mod bench_spark;
pub mod down;
pub mod init;
pub mod methodology;
pub mod pki;
pub mod schema;
pub mod spark;
pub mod status;
pub mod supervise;
pub mod systemd;
pub mod task;
pub mod up;
pub mod validate;
