#![forbid(unsafe_code)]
pub mod job;
pub mod phase;
pub mod plan;
pub mod preview;
pub mod render;
pub mod leader;
pub mod metrics;
pub mod context;
pub mod controller;
pub mod execute;
pub mod observe;
