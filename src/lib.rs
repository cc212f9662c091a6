//! inspectord: an edge inference daemon for visual inspection. See `ARCHITECTURE.md`.

pub mod bridge;
pub mod cli;
pub mod commands;
pub mod config;
pub mod contract;
pub mod coreset;
pub mod encoder;
pub mod error;
pub mod failures;
pub mod input_file;
pub mod inspect;
pub mod logging;
pub mod onnxruntime;
pub mod pipeline;
pub mod preprocess;
pub mod references;
pub mod report;
pub mod score;
pub mod service;
pub mod sink;
pub mod soart3;
pub mod socket;
pub mod source;
pub mod stop;
pub mod verdict;
pub mod wire;
