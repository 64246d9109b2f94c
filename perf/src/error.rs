//! The errors a benchmark run can end with.

use sluice_codec::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decode a {api} response: {source}")]
    Decode {
        api: &'static str,
        #[source]
        source: DecodeError,
    },
    /// The broker broke a protocol rule (e.g. answered out of order).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The broker refused or failed something the run cannot go on without.
    #[error("broker error: {0}")]
    Broker(String),
}

impl PerfError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> PerfError {
        PerfError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = PerfError> = std::result::Result<T, E>;
