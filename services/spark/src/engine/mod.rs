//! The models themselves, in-process: no bus here. The worker wraps these; benchmarks call
//! them directly as the in-process baseline.

pub mod embed;
pub mod stop;
pub mod template;
pub mod textgen;

pub use embed::Embedder;
pub use textgen::{Generation, Step, TextModel};
