//! One log file per component under `var/log`, human-readable or JSON.

use crate::args::LogFormat;
use ozone_security::Home;
use std::sync::Mutex;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Starts logging to `var/log/<name>.log` (appending); `OZONE_LOG` sets the filter. Under
/// systemd (`JOURNAL_STREAM` set: stderr is the journal) it logs to stderr alone: the unit's
/// own user cannot write the home's `var/log`, and the journal keeps the log.
pub fn init(home: &Home, name: &str, format: LogFormat, stderr: bool) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("OZONE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let result = match format {
            LogFormat::Json => builder.json().with_writer(std::io::stderr).try_init(),
            LogFormat::Human => builder.with_writer(std::io::stderr).try_init(),
        };
        return result.map_err(|e| anyhow::anyhow!("cannot start logging: {e}"));
    }
    std::fs::create_dir_all(home.logs())?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.logs().join(format!("{name}.log")))?;
    let file = Mutex::new(file);
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
