#![forbid(unsafe_code)]
pub mod job;
pub mod phase;
pub mod plan;
pub mod render;
