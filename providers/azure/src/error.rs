//! ARM errors → [`ProviderError`], keeping Azure's error code (`ScopeLocked`,
//! `MissingSubscriptionRegistration`) in the message, where callers and users act on it.

use flyteinfra_core::{ErrorKind, ProviderError};

/// The longest Azure-supplied text an error message carries.
const MAX_TEXT: usize = 400;

fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// ARM error codes that mean "try again later" whatever their HTTP status.
const RETRYABLE_CODES: [&str; 5] = [
    "AnotherOperationInProgress",
    "RetryableError",
    "OperationPreempted",
    "ServiceBusy",
    // Another write to the same managed identity's federated credentials is in flight.
    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
];

/// The kind of an ARM answer with HTTP `status` and error `code`.
pub fn kind_for(status: u16, code: &str) -> ErrorKind {
    if RETRYABLE_CODES.contains(&code) {
        return ErrorKind::Transient;
    }
    match (status, code) {
        (409, "ScopeLocked") => ErrorKind::Conflict,
        (409, "MissingSubscriptionRegistration") => ErrorKind::Permanent,
        (409, "ServerNameAlreadyExists") => ErrorKind::AlreadyExists,
        (409, "StorageAccountAlreadyTaken") => ErrorKind::AlreadyExists,
        // The same grant under another role assignment name.
        (409, "RoleAssignmentExists") => ErrorKind::AlreadyExists,
        (404, _) => ErrorKind::NotFound,
        (409, _) => ErrorKind::Conflict,
        (412, _) => ErrorKind::Conflict,
        (429, _) => ErrorKind::Throttled,
        (400 | 422, _) => ErrorKind::InvalidInput,
        (401 | 403, _) => ErrorKind::Auth,
        (500..=599, _) => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// The `error.code` of an ARM error body (`""` when the body has none).
pub fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Maps a non-2xx answer of the call named `op` (`PUT flexibleServers`).
pub fn arm_err(op: &str, status: u16, body: &str) -> ProviderError {
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let code = error_code(&parsed).to_string();
    let message = parsed["error"]["message"]
        .as_str()
        .map_or_else(|| bounded(body), bounded);
    let shown = if code.is_empty() {
        format!("HTTP {status}")
    } else {
        code.clone()
    };
    let mut text = format!("{op}: {shown}: {message}");
    if code == "MissingSubscriptionRegistration" {
        text.push_str(
            " (register it with `az provider register --namespace <namespace>`, or let \
             flyteinfra do it with `azure.register_providers: true`)",
        );
    }
    ProviderError::new(kind_for(status, &code), text)
}

/// The error of an operation that ended `Failed` or `Canceled`, from its status body.
pub fn operation_failed(op: &str, status: &str, body: &serde_json::Value) -> ProviderError {
    let code = error_code(body);
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    ProviderError::new(
        if RETRYABLE_CODES.contains(&code) {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        },
        format!(
            "{op}: the operation ended {status}: {code}: {}",
            bounded(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_code_and_stay_bounded() {
        let body = r#"{"error":{"code":"ScopeLocked","message":"The scope is locked."}}"#;
        let e = arm_err("DELETE flexibleServers", 409, body);
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(
            e.message,
            "DELETE flexibleServers: ScopeLocked: The scope is locked."
        );
        let page = format!("<html>{}</html>", "x".repeat(100_000));
        let e = arm_err("GET virtualNetworks", 502, &page);
        assert_eq!(e.kind, ErrorKind::Transient);
        assert!(e.message.len() < 600, "{}", e.message.len());
    }

    #[test]
    fn kinds_follow_codes_before_statuses() {
        assert_eq!(
            kind_for(409, "AnotherOperationInProgress"),
            ErrorKind::Transient
        );
        assert_eq!(
            kind_for(409, "ServerNameAlreadyExists"),
            ErrorKind::AlreadyExists
        );
        assert_eq!(kind_for(429, "TooManyRequests"), ErrorKind::Throttled);
        assert_eq!(kind_for(404, "ResourceGroupNotFound"), ErrorKind::NotFound);
        assert_eq!(
            kind_for(400, "InvalidParameterValue"),
            ErrorKind::InvalidInput
        );
        let e = arm_err(
            "PUT flexibleServers",
            409,
            r#"{"error":{"code":"MissingSubscriptionRegistration","message":"not registered"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(e.message.contains("az provider register"), "{e}");
    }
}
