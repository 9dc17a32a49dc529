//! One log file per component under `var/log`, human-readable or JSON.

use crate::args::LogFormat;
use ozone_security::Home;
use std::sync::Mutex;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Starts logging to `var/log/<name>.log` (appending); `OZONE_LOG` sets the filter.
pub fn init(home: &Home, name: &str, format: LogFormat, stderr: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(home.logs())?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.logs().join(format!("{name}.log")))?;
    let filter = EnvFilter::try_from_env("OZONE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let file = Mutex::new(file);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let result = match (format, stderr) {
        (LogFormat::Json, true) => builder
            .json()
            .with_writer(file.and(std::io::stderr))
            .try_init(),
        (LogFormat::Json, false) => builder.json().with_writer(file).try_init(),
        (LogFormat::Human, true) => builder.with_writer(file.and(std::io::stderr)).try_init(),
        (LogFormat::Human, false) => builder.with_writer(file).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}
