//! What the `ozone` command asks of `ozone-spark` besides serving: the models folder
//! (`ozone-spark models install|list|check`) and the in-process baseline of `ozone bench
//! spark` (`ozone-spark baseline`). The CLI runs these as this binary's subcommands, so it
//! links no model code: candle stays in this crate.

pub mod baseline;
pub mod models;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The subcommands, by their first word (anything else starts a worker).
pub const TOOLS: [&str; 2] = ["models", "baseline"];

#[derive(Debug, Parser)]
#[command(
    name = "ozone-spark",
    about = "SPARK's model tools (no arguments: serve as a worker)"
)]
pub struct ToolArgs {
    #[command(subcommand)]
    pub tool: Tool,
}

#[derive(Debug, Subcommand)]
pub enum Tool {
    /// The models folder
    #[command(subcommand)]
    Models(models::ModelsTool),
    /// In-process figures for `ozone bench spark`: reads `decode <tokens>` and
    /// `embed <count>` lines on stdin, answers one JSON line each on stdout
    Baseline {
        #[arg(long)]
        models: PathBuf,
    },
}

/// Whether this command line asks for a tool rather than a worker.
pub fn requested() -> bool {
    std::env::args()
        .nth(1)
        .is_some_and(|a| TOOLS.contains(&a.as_str()))
}

pub fn run(args: ToolArgs) -> anyhow::Result<()> {
    match args.tool {
        Tool::Models(m) => models::run(m),
        Tool::Baseline { models } => baseline::run(&models),
    }
}
