//! Decoding errors. Every malformed input maps to one of these; the decoder
//! never panics and never trusts a length prefix beyond the bytes left.

use thiserror::Error;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A fixed-size read (or a region) needed more bytes than remain.
    #[error("truncated: needed {needed} bytes, {remaining} remaining")]
    Truncated { needed: usize, remaining: usize },
    /// A length prefix is negative (other than the null marker) or larger
    /// than the bytes left in the frame.
    #[error("invalid length {length} with {remaining} bytes remaining")]
    InvalidLength { length: i64, remaining: usize },
    /// A null string, bytes, array or struct where this version forbids null.
    #[error("null value in a non-nullable field")]
    UnexpectedNull,
    /// A string field is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// An unsigned varint longer than 5 bytes.
    #[error("invalid varint")]
    InvalidVarint,
    /// A boolean byte other than 0 or 1.
    #[error("invalid bool byte {0}")]
    InvalidBool(u8),
    /// The API key is known but this version is not one we can decode.
    #[error("unsupported version {version} for api key {api_key}")]
    UnsupportedVersion { api_key: i16, version: i16 },
    /// The API key is not in Kafka's schemas.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
}
