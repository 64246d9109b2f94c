//! The Kafka protocol codec: every request and response of every API at
//! every version, generated from Kafka's message JSON schemas by
//! `net/codegen` (see `net/codegen/regen.sh`), plus the hand-written runtime
//! it runs on.
//!
//! It must never panic on input from a socket, and never trust a length
//! prefix further than the bytes left in the frame: an array, string or bytes
//! length beyond them is an error before anything is allocated. `records`
//! fields are [`Records`]: decoded, a zero-copy slice of the frame; built by
//! the broker, any number of stored `Bytes` chunks. Encoding returns chunks,
//! each records chunk its own, so record bytes reach the socket by vectored
//! write without being copied or joined.
//!
//! An unstable latest version (`latestVersionUnstable`) is decodable but not
//! advertised by [`ApiKey::supported_versions`]. APIs whose versions were all
//! removed (`validVersions: none`) have an [`ApiKey`] but no message types.
//! Unknown tagged fields are skipped on decode and not kept.

mod decoder;
mod encoder;
mod error;
mod error_code;
pub mod generated;
mod records;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use decoder::{Decoder, Region};
pub use encoder::{Encoder, RECORDS_COPY_THRESHOLD_BYTES};
pub use error::DecodeError;
pub use error_code::ErrorCode;
pub use generated::*;
pub use records::Records;

/// Bytes of the fixed request-header prefix: api key, version, correlation id.
pub const REQUEST_HEADER_PREFIX_BYTES: usize = 8;

impl ApiKey {
    /// The request header version used with `version` of this API.
    pub fn request_header_version(self, version: i16) -> i16 {
        if self.is_flexible_request(version) {
            2
        } else if self == ApiKey::ControlledShutdown && version == 0 {
            // ControlledShutdown v0 predates the client id.
            0
        } else {
            1
        }
    }

    /// The response header version used with `version` of this API.
    pub fn response_header_version(self, version: i16) -> i16 {
        // ApiVersions responses always use v0 so any client can read them.
        if self != ApiKey::ApiVersions && self.is_flexible_response(version) {
            1
        } else {
            0
        }
    }
}

/// Reads only the api key, api version and correlation id at the start of a
/// request frame (after the size prefix), so a broker can answer a request it
/// cannot decode with the right correlation id.
pub fn decode_request_header_prefix(frame: &Bytes) -> Result<(i16, i16, i32), DecodeError> {
    let Some(prefix) = frame.get(..REQUEST_HEADER_PREFIX_BYTES) else {
        return Err(DecodeError::Truncated {
            needed: REQUEST_HEADER_PREFIX_BYTES,
            remaining: frame.len(),
        });
    };
    let api_key = i16::from_be_bytes([prefix[0], prefix[1]]);
    let api_version = i16::from_be_bytes([prefix[2], prefix[3]]);
    let correlation_id = i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    Ok((api_key, api_version, correlation_id))
}

/// Decodes a whole request frame (the bytes after the 4-byte size prefix).
/// `records` fields in the body are slices of `frame`.
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, RequestBody), DecodeError> {
    let (key, version, _) = decode_request_header_prefix(&frame)?;
    let api_key = ApiKey::from_i16(key).ok_or(DecodeError::UnknownApiKey(key))?;
    match api_key.valid_versions() {
        Some((lo, hi)) if lo <= version && version <= hi => {}
        _ => {
            return Err(DecodeError::UnsupportedVersion {
                api_key: key,
                version,
            })
        }
    }
    let mut dec = Decoder::new(frame);
    let header = RequestHeader::decode(&mut dec, api_key.request_header_version(version))?;
    let body = RequestBody::decode(api_key, version, &mut dec)?;
    Ok((header, body))
}

/// Encodes a request frame, size prefix included. The header's api key and
/// version select the encoding; they must match `body`.
pub fn encode_request(header: &RequestHeader, body: &RequestBody) -> Vec<Bytes> {
    let api_key = body.api_key();
    debug_assert_eq!(header.api_key, api_key.as_i16(), "header and body disagree");
    let mut enc = Encoder::with_size_prefix();
    header.encode(&mut enc, api_key.request_header_version(header.api_version));
    body.encode(&mut enc, header.api_version);
    enc.finish_frame()
}

/// Encodes a response frame, size prefix included, as chunks for a vectored
/// write. `api_key` must be the body's API.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseBody,
) -> Vec<Bytes> {
    debug_assert_eq!(api_key, body.api_key(), "api key and body disagree");
    let mut enc = Encoder::with_size_prefix();
    let header = ResponseHeader { correlation_id };
    header.encode(&mut enc, api_key.response_header_version(version));
    body.encode(&mut enc, version);
    enc.finish_frame()
}

/// Decodes a response frame (after the size prefix) to a request the client
/// sent with `api_key` and `version`.
///
/// A broker that does not know the ApiVersions version asked for answers in
/// v0 (with `UNSUPPORTED_VERSION` and its key list); as Kafka's clients do,
/// an ApiVersions response that does not parse at `version` is read as v0.
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<(i32, ResponseBody), DecodeError> {
    let decode_at = |version: i16, frame: Bytes| {
        let mut dec = Decoder::new(frame);
        let header = ResponseHeader::decode(&mut dec, api_key.response_header_version(version))?;
        let body = ResponseBody::decode(api_key, version, &mut dec)?;
        Ok((header.correlation_id, body))
    };
    match decode_at(version, frame.clone()) {
        Err(err) if api_key == ApiKey::ApiVersions && version > 0 => {
            decode_at(0, frame).map_err(|_| err)
        }
        result => result,
    }
}
