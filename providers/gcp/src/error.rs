//! Google errors → [`ProviderError`], keeping Google's message and the reason codes
//! (`SERVICE_DISABLED`) callers act on.

use flyteinfra_core::{ErrorKind, ProviderError};
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;

/// The kind of an HTTP status from any Google API.
pub fn kind_for_http(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        409 => ErrorKind::AlreadyExists,
        412 => ErrorKind::Conflict,
        429 => ErrorKind::Throttled,
        400 | 422 => ErrorKind::InvalidInput,
        401 | 403 => ErrorKind::Auth,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

pub(crate) fn kind_for_code(code: Code) -> ErrorKind {
    match code {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        // ABORTED is what an IAM etag race returns; FAILED_PRECONDITION an object in use.
        Code::Aborted | Code::FailedPrecondition => ErrorKind::Conflict,
        Code::ResourceExhausted => ErrorKind::Throttled,
        Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Unknown => {
            ErrorKind::Transient
        }
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidInput,
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::Auth,
        _ => ErrorKind::Permanent,
    }
}

/// Maps an error from an official client call named `op` (`networks.insert`).
pub fn gax_err(op: &str, e: GaxError) -> ProviderError {
    if let Some(status) = e.status() {
        // ABORTED from setIamPolicy is an etag race; 409 is also "already exists" elsewhere.
        let kind = match (status.code, e.http_status_code()) {
            (Code::Aborted, _) => ErrorKind::Conflict,
            (Code::Unknown, Some(http)) => kind_for_http(http),
            (code, _) => kind_for_code(code),
        };
        let reason = disabled_service(&format!("{:?}", status.details))
            .map(|s| format!(" [SERVICE_DISABLED: {s}]"))
            .unwrap_or_default();
        return ProviderError::new(
            kind,
            format!(
                "{op}: {}: {}{reason}",
                status.code.name(),
                bounded(&status.message)
            ),
        );
    }
    if let Some(http) = e.http_status_code() {
        return ProviderError::new(
            kind_for_http(http),
            format!("{op}: HTTP {http}: {}", bounded(&e.to_string())),
        );
    }
    let kind = if e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport() {
        ErrorKind::Transient
    } else if e.is_authentication() {
        ErrorKind::Auth
    } else {
        ErrorKind::Permanent
    };
    ProviderError::new(kind, format!("{op}: {}", bounded(&e.to_string())))
}

/// The longest Google-supplied text an error message carries: enough for Google's
/// messages, never a whole response.
const MAX_TEXT: usize = 400;

/// `text` cut to [`MAX_TEXT`] characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Maps a non-2xx answer of a JSON API call named `op`.
pub fn http_err(op: &str, status: u16, body: &str) -> ProviderError {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str())
        .map_or_else(|| bounded(body), bounded);
    let reason = disabled_service(body)
        .map(|s| format!(" [SERVICE_DISABLED: {s}]"))
        .unwrap_or_default();
    let code = parsed
        .as_ref()
        .and_then(|v| v["error"]["status"].as_str())
        .map_or_else(|| format!("HTTP {status}"), str::to_string);
    let kind = match code.as_str() {
        "ABORTED" => ErrorKind::Conflict,
        _ => kind_for_http(status),
    };
    ProviderError::new(kind, format!("{op}: {code}: {message}{reason}"))
}

/// The service named by a `SERVICE_DISABLED` error's `ErrorInfo` (searched in its text,
/// as the details come typed from one client and raw from another).
pub fn disabled_service(text: &str) -> Option<String> {
    if !text.contains("SERVICE_DISABLED") {
        return None;
    }
    // The metadata carries `"service": "compute.googleapis.com"`; find the first
    // `*.googleapis.com` word in the text that is not the details' `@type` prefix
    // (`type.googleapis.com/google.rpc.ErrorInfo`).
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .find(|w| {
            w.ends_with(".googleapis.com")
                && w.len() > ".googleapis.com".len()
                && *w != "type.googleapis.com"
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_code_and_stay_bounded() {
        let body = r#"{"error":{"code":409,"message":"The bucket you tried to create already exists.","status":"ALREADY_EXISTS"}}"#;
        assert_eq!(
            http_err("storage.buckets.insert", 409, body).message,
            "storage.buckets.insert: ALREADY_EXISTS: The bucket you tried to create already exists."
        );
        // Cloud Storage's shape has no status: the HTTP code stands in.
        let body = r#"{"error":{"code":409,"message":"not empty","errors":[]}}"#;
        assert_eq!(
            http_err("storage.buckets.delete", 409, body).message,
            "storage.buckets.delete: HTTP 409: not empty"
        );
        // A proxy's HTML page is cut, not carried whole.
        let page = format!("<html>{}</html>", "x".repeat(100_000));
        let e = http_err("compute.networks.get", 502, &page);
        assert!(e.message.len() < 600, "{}", e.message.len());
    }

    #[test]
    fn disabled_service_is_found_in_error_info() {
        let body = r#"{"error":{"code":403,"message":"x","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","metadata":{"service":"sqladmin.googleapis.com"}}]}}"#;
        assert_eq!(
            disabled_service(body).as_deref(),
            Some("sqladmin.googleapis.com")
        );
        assert_eq!(disabled_service("{}"), None);
        let e = http_err("sql.instances.get", 403, body);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(
            e.message
                .contains("SERVICE_DISABLED: sqladmin.googleapis.com"),
            "{e}"
        );
    }

    #[test]
    fn aborted_is_a_conflict() {
        let body = r#"{"error":{"code":409,"message":"etag","status":"ABORTED"}}"#;
        assert_eq!(http_err("x", 409, body).kind, ErrorKind::Conflict);
        assert_eq!(http_err("x", 409, "{}").kind, ErrorKind::AlreadyExists);
        assert_eq!(http_err("x", 429, "").kind, ErrorKind::Throttled);
    }
}
