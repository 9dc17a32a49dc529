//! The `ozone-studio` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_studio_core::SPEC)
}
