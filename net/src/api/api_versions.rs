//! ApiVersions, v0-v4: the APIs and version ranges this broker serves.

use sluice_codec::api_versions_response::{ApiVersion, ApiVersionsResponse};
use sluice_codec::ErrorCode;

use super::{supported_range, SUPPORTED};

pub fn handle() -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .filter_map(|&(key, _, _)| {
            let (min_version, max_version) = supported_range(key)?;
            Some(ApiVersion {
                api_key: key.as_i16(),
                min_version,
                max_version,
            })
        })
        .collect();
    ApiVersionsResponse {
        api_keys,
        ..ApiVersionsResponse::default()
    }
}

/// The answer to an ApiVersions version this broker does not know.
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: ErrorCode::UNSUPPORTED_VERSION.0,
        ..handle()
    }
}
