//! The `ozone-cognis` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_cognis::SPEC)
}
