//! The API's error answer: a status and `{"error": "…"}`, and how each [`LibraryError`] maps
//! to a status. Bad input is always a 4xx; a library the service cannot read is a 503.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::library::LibraryError;

/// An error answer: `status` with the body `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            eprintln!("model-library: serve: {}: {}", self.status, self.message);
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Bad input is 400 (404 for an id with nothing on disk); a library that cannot be read
/// (missing folder, corrupt registry, I/O failure, a held lock) is 503 with the core's
/// message, which names the file. An I/O error of kind `Unsupported` is an operation this
/// build cannot do: 501 with just its message.
impl From<LibraryError> for ApiError {
    fn from(err: LibraryError) -> Self {
        let status = match &err {
            LibraryError::InvalidTtl { .. }
            | LibraryError::InvalidId { .. }
            | LibraryError::UnknownStatus(_) => StatusCode::BAD_REQUEST,
            LibraryError::NothingToDelete { .. }
            | LibraryError::UnknownModel(_)
            | LibraryError::NotListed(_) => StatusCode::NOT_FOUND,
            // A download already running, or a library that is read-only because one of
            // its folders is a link: the request is fine, the library's state forbids it.
            LibraryError::CannotDownload { .. }
            | LibraryError::WritesOff { .. }
            | LibraryError::Busy(_) => StatusCode::CONFLICT,
            LibraryError::Io { source, .. } if source.kind() == std::io::ErrorKind::Unsupported => {
                return ApiError::new(StatusCode::NOT_IMPLEMENTED, source.to_string());
            }
            LibraryError::Io { .. }
            | LibraryError::LibraryUnreachable { .. }
            | LibraryError::RegistrySyntax { .. }
            | LibraryError::RegistryShape { .. }
            | LibraryError::LockTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // `NotConfirmed` cannot come from the API, and variants added later are a server
            // fault until they are mapped here.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}
