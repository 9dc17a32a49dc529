//! The `ozone-zsei` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_zsei::SPEC)
}
