//! Command-line arguments shared by every component binary.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Parser)]
pub struct Args {
    /// Installation directory [default: $OZONE_STUDIO_HOME, else ~/.ozone-studio]
    #[arg(long, env = "OZONE_STUDIO_HOME")]
    pub home: Option<PathBuf>,
    /// How long to wait for the components of earlier phases before giving up
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
    /// Log format of var/log/<component>.log
    #[arg(long, env = "OZONE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Threads for messaging [default: one per core; SPARK: 1]. A compute-heavy component
    /// does its work on threads of its own; fewer messaging threads means fewer wake-ups
    /// competing with that work for the cores.
    #[arg(long, env = "OZONE_ASYNC_THREADS")]
    pub async_threads: Option<usize>,
    /// Also log to standard error (for running it by hand)
    #[arg(long)]
    pub log_stderr: bool,
}
