//! The `ozone-nexus` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_nexus::SPEC)
}
