//! The models themselves, in-process: no bus here. The worker wraps these; benchmarks call
//! them directly as the in-process baseline.

pub mod embed;
pub mod stop;
pub mod template;
pub mod textgen;

pub use embed::Embedder;
pub use textgen::{Generation, Step, TextModel};

/// Where models run: the first CUDA GPU when built with `--features cuda` and one is present,
/// the CPU otherwise. The worker and the in-process baseline of `ozone bench spark` both ask
/// here, so the benchmark compares like with like.
pub fn compute_device() -> candle_core::Result<candle_core::Device> {
    candle_core::Device::cuda_if_available(0)
}
