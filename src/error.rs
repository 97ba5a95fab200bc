//! The one error type of request handling, and how each error becomes a status and a JSON body.
//!
//! Every refusal and fault of a request ends here: [`ApiError::error_response`] picks the status,
//! writes `{"error":{"code":…,"message":…}}`, and logs the cause once (`warn` for a refused
//! request, `error` with the full cause for a server fault, whose detail never reaches the client).

use std::io;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use nix::errno::Errno;
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("malformed multipart/form-data body: {0}")]
    MalformedMultipart(String),
    #[error(
        "the request carries no file part; send the image as a multipart/form-data part with a filename"
    )]
    NoFile,
    #[error("at most {max} files may be sent in one request")]
    TooManyFiles { max: usize },
    #[error("the file {name:?} is empty; there is nothing to store")]
    EmptyFile { name: String },
    #[error("the path is not a valid file name")]
    InvalidPath,

    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the bearer token is not valid")]
    WrongToken,
    #[error("no upload token is configured, so only loopback clients may write")]
    WritesNeedToken,
    #[error("the upload token cannot be read: {0}")]
    TokenUnavailable(#[source] io::Error),

    #[error("no collection named {0:?}")]
    UnknownCollection(String),
    #[error("no such file")]
    FileNotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("the requested range is outside the file of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("the file does not match the request's precondition")]
    PreconditionFailed,
    #[error("the Range header is not valid")]
    InvalidRange,

    #[error("file too large: the limit is {limit} bytes per file")]
    TooLarge { limit: u64 },
    #[error("not an allowed image type: the file's bytes are {detected}; allowed: {allowed}")]
    UnsupportedType { detected: String, allowed: String },
    #[error("the upload body stalled for {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("the upload took longer than {secs} s")]
    UploadTimeout { secs: u64 },

    /// A file-system operation failed; the status depends on the OS error.
    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ApiError {
    /// A server fault while doing `context`; the status follows the OS error (507, 503 or 500).
    pub fn internal(context: impl Into<String>, source: io::Error) -> Self {
        Self::Storage {
            context: context.into(),
            source,
        }
    }

    /// The stable, machine-readable code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedMultipart(_) => "malformed_multipart",
            Self::NoFile => "no_file",
            Self::TooManyFiles { .. } => "too_many_files",
            Self::EmptyFile { .. } => "empty_file",
            Self::InvalidPath => "invalid_path",
            Self::MissingToken | Self::WrongToken => "unauthorized",
            Self::WritesNeedToken => "forbidden",
            Self::TokenUnavailable(_) => "internal",
            Self::UnknownCollection(_) | Self::FileNotFound | Self::RouteNotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            Self::PreconditionFailed => "precondition_failed",
            Self::InvalidRange => "invalid_range",
            Self::TooLarge { .. } => "too_large",
            Self::UnsupportedType { .. } => "unsupported_type",
            Self::BodyTimeout { .. } | Self::UploadTimeout { .. } => "request_timeout",
            Self::Storage { source, .. } => match storage_status(source) {
                StatusCode::INSUFFICIENT_STORAGE => "insufficient_storage",
                StatusCode::SERVICE_UNAVAILABLE => "storage_unavailable",
                _ => "internal",
            },
        }
    }

    /// What the client is told. Server faults stay generic: their detail is only logged.
    fn public_message(&self) -> String {
        match self {
            Self::Storage { source, .. } => match storage_status(source) {
                StatusCode::INSUFFICIENT_STORAGE => {
                    "the storage volume is full; nothing was written".to_owned()
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    "the storage volume is not available or not writable right now; nothing was changed".to_owned()
                }
                _ => "internal error; nothing was changed".to_owned(),
            },
            Self::TokenUnavailable(_) => {
                "internal error: the server cannot check upload tokens right now".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// ENOSPC and EDQUOT mean a full disk; EROFS, EACCES, EPERM, ENOENT and ENOTDIR (the folder is
/// gone or replaced) a volume we cannot use now.
fn storage_status(err: &io::Error) -> StatusCode {
    match err.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOSPC | Errno::EDQUOT) => StatusCode::INSUFFICIENT_STORAGE,
        Some(Errno::EROFS | Errno::EACCES | Errno::EPERM | Errno::ENOENT | Errno::ENOTDIR) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedMultipart(_)
            | Self::NoFile
            | Self::TooManyFiles { .. }
            | Self::EmptyFile { .. }
            | Self::InvalidPath
            | Self::InvalidRange => StatusCode::BAD_REQUEST,
            Self::MissingToken | Self::WrongToken => StatusCode::UNAUTHORIZED,
            Self::WritesNeedToken => StatusCode::FORBIDDEN,
            Self::TokenUnavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UnknownCollection(_) | Self::FileNotFound | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout { .. } | Self::UploadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Storage { source, .. } => storage_status(source),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("request failed ({}): {self}", self.code());
        } else if status == StatusCode::NOT_FOUND {
            log::debug!("request refused ({}): {self}", self.code());
        } else {
            log::warn!("request refused ({}): {self}", self.code());
        }

        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        match self {
            Self::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            Self::RangeNotSatisfiable { size } => {
                response.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            _ => {}
        }
        if matches!(
            self,
            Self::TooLarge { .. } | Self::BodyTimeout { .. } | Self::UploadTimeout { .. }
        ) {
            // NOTE: the rest of the body is left unread, so the connection cannot be reused.
            response.insert_header((header::CONNECTION, HeaderValue::from_static("close")));
        }
        response.json(json!({
            "error": { "code": self.code(), "message": self.public_message() }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_the_documented_statuses() {
        let cases = [
            (Errno::ENOSPC, 507, "insufficient_storage"),
            (Errno::EDQUOT, 507, "insufficient_storage"),
            (Errno::EROFS, 503, "storage_unavailable"),
            (Errno::EACCES, 503, "storage_unavailable"),
            (Errno::EIO, 500, "internal"),
        ];
        for (errno, status, code) in cases {
            let err = ApiError::internal("writing", io::Error::from_raw_os_error(errno as i32));
            assert_eq!(err.status_code().as_u16(), status, "{errno}");
            assert_eq!(err.code(), code, "{errno}");
        }
    }

    #[test]
    fn server_fault_detail_stays_out_of_the_body() {
        let err = ApiError::internal("opening /secret/path", io::Error::other("boom"));
        assert!(!err.public_message().contains("/secret/path"));
    }
}
