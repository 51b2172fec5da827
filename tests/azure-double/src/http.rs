//! ARM's answers: its error shape, JSON and empty bodies, async headers; and the
//! canonical casing of the path segments the double knows.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// `{"error":{"code","message"}}` with HTTP `status`: ARM's error shape.
pub(crate) fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    json_status(status, body)
}

/// `v` as JSON with HTTP `status`.
pub(crate) fn json_status(status: u16, v: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(v)).into_response()
}

/// No body (204, and the 202/200 answers ARM sends without one).
pub(crate) fn empty(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Body::empty()).into_response()
}

/// Adds headers (`Location`, `Azure-AsyncOperation`, `Retry-After`) to `r`.
pub(crate) fn with_headers(mut r: Response, headers: &[(&'static str, String)]) -> Response {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut().insert(*name, v);
        }
    }
    r
}

/// 404 for a path the double does not serve, naming it so a missing route is easy to spot.
pub(crate) fn unrouted(method: &str, uri: &str) -> Response {
    error(
        404,
        "NotFound",
        format!("The Azure test double serves no route {method} {uri}"),
    )
}

/// 405 for a method a served path does not take.
pub(crate) fn method_not_allowed(method: &str) -> Response {
    error(
        405,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

/// 429 `TooManyRequests` with `Retry-After`.
pub(crate) fn throttled(retry_after: u32) -> Response {
    with_headers(
        error(
            429,
            "TooManyRequests",
            "The request is being throttled (simulated by the Azure test double).",
        ),
        &[("retry-after", retry_after.to_string())],
    )
}

/// 500 `InternalServerError`.
pub(crate) fn internal(message: impl Into<String>) -> Response {
    error(500, "InternalServerError", message)
}

/// The JSON body of a request; an empty body is `{}`. ARM refuses anything but an object.
pub(crate) fn body(bytes: &Bytes) -> Result<Value, Response> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(error(
            400,
            "InvalidRequestContent",
            "The request content was invalid: expected a JSON object.",
        )),
        Err(e) => Err(error(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )),
    }
}

/// The canonical casing ARM writes for a path segment it knows (namespaces, type
/// segments); other segments (names) are kept as given.
pub(crate) fn canon(seg: &str) -> String {
    const KNOWN: &[&str] = &[
        "subscriptions",
        "resourceGroups",
        "providers",
        "locations",
        "resources",
        "register",
        "operationResults",
        "operationStatuses",
        "privateDnsOperationResults",
        "privateDnsOperationStatuses",
        "operations",
        "Microsoft.Network",
        "Microsoft.DBforPostgreSQL",
        "Microsoft.Authorization",
        "Microsoft.Resources",
        "Microsoft.Storage",
        "Microsoft.ContainerService",
        "Microsoft.ManagedIdentity",
        "virtualNetworks",
        "subnets",
        "networkSecurityGroups",
        "privateDnsZones",
        "virtualNetworkLinks",
        "flexibleServers",
        "databases",
        "configurations",
        "storageAccounts",
        "blobServices",
        "containers",
        "managementPolicies",
        "managedClusters",
        "agentPools",
        "userAssignedIdentities",
        "federatedIdentityCredentials",
        "locks",
        "roleAssignments",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(seg))
        .map_or_else(|| seg.to_string(), |k| (*k).to_string())
}

/// The label a call is counted under: its method and the last type segment of its path
/// (`PUT virtualNetworks`, `GET operationStatuses`, `POST register`).
pub(crate) fn op_label(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // ARM paths are `type/name` pairs (`providers/{namespace}` is one too), so the
    // type segments are the even ones.
    let last = segs.iter().step_by(2).next_back().copied().unwrap_or("");
    format!("{method} {}", canon(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_labels_name_the_last_type_segment() {
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v";
        assert_eq!(op_label("PUT", p), "PUT virtualNetworks");
        assert_eq!(op_label("PUT", &format!("{p}/subnets/a")), "PUT subnets");
        assert_eq!(
            op_label(
                "POST",
                "/subscriptions/s/providers/microsoft.network/register"
            ),
            "POST register"
        );
        assert_eq!(
            op_label("GET", "/subscriptions/s/providers/Microsoft.Network"),
            "GET providers"
        );
        assert_eq!(op_label("GET", "/subscriptions/s"), "GET subscriptions");
        assert_eq!(
            op_label("DELETE", "/subscriptions/s/resourcegroups/rg"),
            "DELETE resourceGroups"
        );
    }
}
