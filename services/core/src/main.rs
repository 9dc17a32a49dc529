//! The `ozone-studio` process.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ozone_service::main_with(
        ozone_studio_core::SPEC,
        ozone_service::Args::parse(),
        Some(Box::new(ozone_studio_core::CoreCapability)),
    )
}
