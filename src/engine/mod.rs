//! The compute side: device and dtype, weight loading, model ports, samplers, pipelines.
//! No terminal or CLI crates here.

pub mod bench;
pub mod golden;
pub mod hub;
pub mod models;
pub mod ops;
pub mod pipelines;
pub mod registry;
pub mod samplers;
pub mod weights;
