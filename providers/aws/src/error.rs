//! Turning SDK errors into provider errors the engine can act on.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::result::DispatchFailure;
use aws_smithy_runtime_api::client::retries::ErrorKind as RetryErrorKind;
use flyteinfra_core::{ErrorKind, ProviderError};

/// The longest SDK-supplied text an error message carries: enough for AWS's messages,
/// never a whole HTTP exchange.
const MAX_TEXT: usize = 400;

/// Classifies an SDK error by its AWS error code (or the HTTP/transport failure). The
/// message names the operation and the service, then the error code, AWS's message and
/// the request id, or the transport failure's causes: bounded text, never the `Debug` of a
/// request or response.
pub fn aws_err<E, R>(what: &str, e: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (kind, message) = match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("Unknown");
            let msg = bounded(err.message().unwrap_or(""));
            let id = err
                .meta()
                .extra("aws_request_id")
                .map(|id| format!(" (request id {id})"))
                .unwrap_or_default();
            (kind_for_code(code), format!("{code}: {msg}{id}"))
        }
        // A connection closed before the answer (hyper's `IncompleteMessage`) is "other" with
        // a transient hint, not I/O: the call may have taken effect, and is worth a retry.
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() || transient_other(d) => (
            ErrorKind::Transient,
            format!("cannot reach AWS: {}", causes(&e)),
        ),
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "request timed out".to_string()),
        SdkError::ResponseError(_) => (
            ErrorKind::Transient,
            format!("bad response: {}", causes(&e)),
        ),
        SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_) => {
            (ErrorKind::Auth, credentials_hint(&e))
        }
        _ => (ErrorKind::Permanent, causes(&e)),
    };
    ProviderError::new(kind, format!("{what} ({}): {message}", service::<E>()))
}

/// The AWS service of an operation error type (`aws_sdk_ec2::…::CreateVpcError` → `ec2`).
fn service<E>() -> &'static str {
    let name = std::any::type_name::<E>();
    name.strip_prefix("aws_sdk_")
        .and_then(|rest| rest.split("::").next())
        .unwrap_or("aws")
}

/// The error and its sources, each one's `Display`, bounded.
fn causes<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    bounded(&DisplayErrorContext(e).to_string())
}

/// `text` cut to [`MAX_TEXT`] characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A connector error the HTTP client marked as transient, throttling or server-side.
fn transient_other(d: &DispatchFailure) -> bool {
    d.as_other()
        .is_some_and(|k| k != RetryErrorKind::ClientError)
}

fn credentials_hint<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = causes(e);
    if text.contains("credentials") || text.contains("Credentials") {
        "no AWS credentials: set `AWS_PROFILE`, run `aws sso login`, or set \
         `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`"
            .to_string()
    } else {
        text
    }
}

/// The engine's view of an AWS error code.
pub fn kind_for_code(code: &str) -> ErrorKind {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "SlowDown"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "PriorRequestNotComplete" => ErrorKind::Throttled,
        "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServerException"
        | "ServiceUnavailableException"
        | "InternalServerError" => ErrorKind::Transient,
        "EntityAlreadyExists"
        | "BucketAlreadyOwnedByYou"
        | "DBInstanceAlreadyExists"
        | "DBSubnetGroupAlreadyExists"
        | "ResourceInUseException"
        | "InvalidGroup.Duplicate" => ErrorKind::AlreadyExists,
        "DependencyViolation"
        | "DeleteConflict"
        | "InvalidDBInstanceState"
        | "BucketNotEmpty"
        | "InvalidDBSubnetGroupStateFault"
        | "IncorrectState" => ErrorKind::Conflict,
        "AuthFailure"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "ExpiredToken" => ErrorKind::Auth,
        c if c.ends_with("NotFound")
            || c.ends_with("NotFoundFault")
            || c.contains("NoSuch")
            || c == "ResourceNotFoundException" =>
        {
            ErrorKind::NotFound
        }
        _ => ErrorKind::InvalidInput,
    }
}

/// `Ok(None)` for a not-found error, the error otherwise.
pub fn not_found_is_none<T>(r: Result<T, ProviderError>) -> Result<Option<T>, ProviderError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_closed_before_the_answer_is_transient() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let closed = |kind| {
            SdkError::<aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError, ()>::dispatch_failure(
                ConnectorError::other("IncompleteMessage".into(), kind),
            )
        };
        let e = aws_err(
            "GetCallerIdentity",
            closed(Some(RetryErrorKind::TransientError)),
        );
        assert_eq!(e.kind, ErrorKind::Transient, "{}", e.message);
        let e = aws_err("GetCallerIdentity", closed(None));
        assert_ne!(e.kind, ErrorKind::Transient, "{}", e.message);
    }

    #[test]
    fn messages_name_service_code_and_request_id_and_stay_bounded() {
        use aws_sdk_ec2::error::ErrorMetadata;
        use aws_sdk_ec2::operation::create_vpc::CreateVpcError;

        let meta = ErrorMetadata::builder()
            .code("VpcLimitExceeded")
            .message("The maximum number of VPCs has been reached.")
            .custom("aws_request_id", "req-123")
            .build();
        // The raw response (here a huge body) is never rendered.
        let raw = "x".repeat(100_000);
        let e = SdkError::service_error(CreateVpcError::generic(meta), raw.clone());
        let got = aws_err("CreateVpc", e);
        assert_eq!(
            got.message,
            "CreateVpc (ec2): VpcLimitExceeded: The maximum number of VPCs has been reached. \
             (request id req-123)"
        );

        // A long message is cut; the response body is never in it.
        let meta = ErrorMetadata::builder()
            .code("InvalidParameterValue")
            .message("y".repeat(5_000))
            .build();
        // The raw response (here a huge body) is never rendered.
        let raw = "x".repeat(100_000);
        let got = aws_err(
            "CreateVpc",
            SdkError::service_error(CreateVpcError::generic(meta), raw.clone()),
        );
        assert!(got.message.len() < 600, "{}", got.message.len());
        assert!(!got.message.contains("xxxx"));
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(kind_for_code("Throttling"), ErrorKind::Throttled);
        assert_eq!(kind_for_code("InvalidVpcID.NotFound"), ErrorKind::NotFound);
        assert_eq!(kind_for_code("DBInstanceNotFound"), ErrorKind::NotFound);
        assert_eq!(kind_for_code("NoSuchEntity"), ErrorKind::NotFound);
        assert_eq!(kind_for_code("DependencyViolation"), ErrorKind::Conflict);
        assert_eq!(kind_for_code("InvalidClientTokenId"), ErrorKind::Auth);
        assert_eq!(
            kind_for_code("InvalidParameterValue"),
            ErrorKind::InvalidInput
        );
    }
}
