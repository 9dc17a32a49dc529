//! The `ozone-spark` process: one worker of the SPARK pool.

use clap::Parser;
use ozone_spark::worker::{SparkArgs, SparkCapability};

fn main() -> std::process::ExitCode {
    if ozone_spark::tools::requested() {
        return match ozone_spark::tools::run(ozone_spark::tools::ToolArgs::parse()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut args = SparkArgs::parse();
    // Messaging on one thread: the cores are for the model, and each streamed token then
    // wakes one messaging thread. (`ozone bench spark` is too noisy here to show the effect
    // clearly: bus/in-process 0.93–1.01 with it, 0.88–1.07 without.)
    args.runtime.async_threads.get_or_insert(1);
    if args.worker.threads > 0 {
        // candle sizes its thread pool from this (read at first use).
        std::env::set_var("RAYON_NUM_THREADS", args.worker.threads.to_string());
    }
    let capability = Box::new(SparkCapability {
        args: args.worker.clone(),
    });
    ozone_service::main_with(ozone_spark::SPEC, args.runtime, Some(capability))
}
