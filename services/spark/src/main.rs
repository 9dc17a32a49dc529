//! The `ozone-spark` process.

fn main() -> std::process::ExitCode {
    ozone_service::main(ozone_spark::SPEC)
}
