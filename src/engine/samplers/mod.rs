//! Noise schedulers.

pub mod case;
pub mod flow_unipc;

pub use case::run_golden_case;
pub use flow_unipc::FlowUniPcScheduler;
