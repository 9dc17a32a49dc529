//! The `ozone-forge` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_forge::SPEC)
}
