//! The `ozone-scribe` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_scribe::SPEC)
}
