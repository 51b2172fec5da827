//! Google's REST error shape (`google.rpc.Status` in JSON), as every API here returns it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error response: HTTP `code`, canonical `status` (`NOT_FOUND`), `message`, and
/// optional `details` (`google.rpc.ErrorInfo` and friends, each with its `@type`).
pub fn google_error(
    code: u16,
    status: &str,
    message: impl Into<String>,
    details: Vec<Value>,
) -> Response {
    let message = message.into();
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "status": status,
            "details": details,
        }
    });
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(body)).into_response()
}

/// 404 `NOT_FOUND`.
pub fn not_found(what: &str) -> Response {
    google_error(
        404,
        "NOT_FOUND",
        format!("The resource '{what}' was not found"),
        vec![],
    )
}

/// 409 `ALREADY_EXISTS`.
pub fn already_exists(what: &str) -> Response {
    google_error(
        409,
        "ALREADY_EXISTS",
        format!("The resource '{what}' already exists"),
        vec![],
    )
}

/// 400 `INVALID_ARGUMENT`.
pub fn invalid(message: impl Into<String>) -> Response {
    google_error(400, "INVALID_ARGUMENT", message, vec![])
}

/// 403 `SERVICE_DISABLED` for `service` (`compute.googleapis.com`) in `project`, with
/// the `google.rpc.ErrorInfo` the real APIs attach.
pub fn service_disabled(service: &str, project: &str) -> Response {
    google_error(
        403,
        "PERMISSION_DENIED",
        format!(
            "{service} API has not been used in project {project} before or it is disabled. \
             Enable it by visiting https://console.developers.google.com/apis/api/{service}/overview?project={project} \
             then retry."
        ),
        vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "SERVICE_DISABLED",
            "domain": "googleapis.com",
            "metadata": {"service": service, "consumer": format!("projects/{project}")},
        })],
    )
}

/// 429 `RESOURCE_EXHAUSTED`.
pub fn throttled() -> Response {
    google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Queries' (simulated by the test double)",
        vec![],
    )
}

/// Compute Engine's error shape: the legacy `errors[{reason, message, domain}]` list
/// beside the canonical `status` (which the gax client turns into the `Code`).
pub fn compute_error(
    code: u16,
    status: &str,
    reason: &str,
    message: impl Into<String>,
) -> Response {
    let message = message.into();
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "status": status,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    });
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(body)).into_response()
}

/// 409 `ABORTED`: the etag in a read-modify-write is stale.
pub fn aborted(message: impl Into<String>) -> Response {
    google_error(409, "ABORTED", message, vec![])
}

/// 400 `FAILED_PRECONDITION`.
pub fn failed_precondition(message: impl Into<String>) -> Response {
    google_error(400, "FAILED_PRECONDITION", message, vec![])
}
