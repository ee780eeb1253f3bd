//! Networks as score models: the device engines (U-Net and action network), the model
//! file, model loading and the memory estimates.

pub mod action_engine;
pub mod build;
pub mod engine;
pub mod memory;
pub mod model;
pub mod model_file;
