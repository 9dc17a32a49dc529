//! `ozone-spark`'s own arguments (beside the runtime's).

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ozone-spark",
    about = "SPARK worker: serves local models on the bus"
)]
pub struct SparkArgs {
    #[command(flatten)]
    pub runtime: ozone_service::Args,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Models folder [default: $OZONE_STUDIO_HOME/models]
    #[arg(long, env = "OZONE_MODELS_DIR")]
    pub models: Option<PathBuf>,
    /// Compute threads for this worker (0: all cores). Scale out with more workers.
    #[arg(long, env = "OZONE_SPARK_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Generations that run at once on this worker
    #[arg(long, env = "OZONE_SPARK_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,
    /// Generations that may wait for a slot; beyond this the answer is "overloaded"
    #[arg(long, env = "OZONE_SPARK_QUEUE", default_value_t = 8)]
    pub queue: usize,
    /// How long a queued request waits for a slot before it is answered "overloaded"
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub queue_wait: Duration,
    /// Largest max_tokens a request may ask for
    #[arg(long, default_value_t = 2048)]
    pub max_tokens_limit: u32,
    /// Most texts in one embedding request
    #[arg(long, default_value_t = 256)]
    pub embed_request_limit: usize,
    /// Most texts in one forward pass (requests are batched together up to this)
    #[arg(long, default_value_t = 64)]
    pub embed_batch: usize,
    /// Texts that may wait for the embedding model; beyond this the answer is "overloaded"
    #[arg(long, env = "OZONE_SPARK_EMBED_QUEUE", default_value_t = 2048)]
    pub embed_queue: usize,
}
