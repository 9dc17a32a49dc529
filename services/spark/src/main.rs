//! The `ozone-spark` process: one worker of the SPARK pool.

use clap::Parser;
use ozone_spark::worker::{SparkArgs, SparkCapability};

fn main() -> std::process::ExitCode {
    let args = SparkArgs::parse();
    if args.worker.threads > 0 {
        // candle sizes its thread pool from this (read at first use).
        std::env::set_var("RAYON_NUM_THREADS", args.worker.threads.to_string());
    }
    let capability = Box::new(SparkCapability {
        args: args.worker.clone(),
    });
    ozone_service::main_with(ozone_spark::SPEC, args.runtime, Some(capability))
}
