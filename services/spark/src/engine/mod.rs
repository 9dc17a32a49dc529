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

/// A device as an operator reads it: `cpu`, `cuda:0`.
pub fn device_label(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
