//! Request parsing that never answers with axum's plain-text rejections: query parameters,
//! the model id in the path and JSON object bodies, each failing with an [`ApiError`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::error::ApiError;

/// The query string as decoded `(name, value)` pairs, in order.
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

impl Params {
    /// The values of the `known` parameters, in the order asked. An unknown or repeated
    /// parameter is a 400 naming it.
    pub(crate) fn known<const N: usize>(
        self,
        known: [&'static str; N],
    ) -> Result<[Option<String>; N], ApiError> {
        let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
        for (name, value) in self.0 {
            let Some(i) = known.iter().position(|k| *k == name) else {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {name:?}; expected {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if values[i].replace(value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name:?} is given more than once"
                )));
            }
        }
        Ok(values)
    }
}

/// A boolean query parameter: `true`/`false`/`1`/`0` (any case); absent is `false`.
pub(crate) fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "query parameter {name:?} must be true, false, 1 or 0, not {v:?}"
        ))),
    }
}

/// The `{id}` path segment, percent-decoded (not yet validated as a model id).
pub(crate) struct PathId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| PathId(id))
            .map_err(|e| ApiError::bad_request(format!("invalid model id: {}", e.body_text())))
    }
}

/// A request body that is one JSON object, sent with `Content-Type: application/json`
/// (or `application/*+json`). A missing or other content type is 415; an empty body,
/// malformed JSON or another JSON value is 400; a body over the size limit is 413.
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "the request body is empty; expected a JSON object",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(other) => Err(ApiError::bad_request(format!(
                "the request body must be a JSON object, not {}",
                json_kind(&other)
            ))),
            Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
        }
    }
}

impl JsonObject {
    /// Refuses fields other than `allowed`.
    pub(crate) fn only(self, allowed: &[&str]) -> Result<Self, ApiError> {
        if let Some(name) = self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "unknown field {name:?}; expected only {}",
                allowed.join(", ")
            )));
        }
        Ok(self)
    }

    /// The field `name`; missing is a 400 that shows `example`.
    pub(crate) fn field(&self, name: &str, example: &str) -> Result<&Value, ApiError> {
        self.0.get(name).ok_or_else(|| {
            ApiError::bad_request(format!("missing field {name:?}; expected {example}"))
        })
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?"));
    let is_json = given.is_some_and(|ct| {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    });
    if is_json {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        match given {
            None => "missing Content-Type; expected application/json".to_string(),
            Some(ct) => format!("Content-Type {ct:?} is not supported; expected application/json"),
        },
    ))
}

/// A JSON value's kind, for messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
