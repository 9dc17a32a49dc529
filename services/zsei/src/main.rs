//! The `ozone-zsei` process.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ozone_service::main_with(
        ozone_zsei::SPEC,
        ozone_service::Args::parse(),
        Some(Box::new(ozone_zsei::ZseiCapability)),
    )
}
