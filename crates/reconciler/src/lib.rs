#![forbid(unsafe_code)]
pub mod context;
pub mod controller;
pub mod execute;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod phase;
pub mod plan;
pub mod preview;
pub mod render;
