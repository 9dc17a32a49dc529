//! The `ozone-bridge` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_bridge::SPEC)
}
