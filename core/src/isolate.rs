//! Panic isolation for provider calls: a bug in one provider call fails that resource,
//! reported as an internal error naming it, instead of unwinding through the walker and
//! ending the whole apply (with every other resource's progress unrecorded).
//!
//! The engine's own panics are not caught here: the walker re-raises them, since after
//! a bug in the engine nothing it would go on to do can be trusted.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

use crate::address::Address;
use crate::provider::{ErrorKind, ProviderError};

/// Runs `f` to completion; a panic while it is polled ends it, as `Err` with the panic's
/// message. The future is dropped after a panic, never polled again.
///
/// Unwind safety is asserted: a provider keeps nothing the engine reads afterwards but
/// its answer, and the one shared thing a panicking call may leave behind (a poisoned
/// lock of its own) can only fail that provider's later calls, which report as errors.
pub async fn catch_panic<F: Future>(f: F) -> Result<F::Output, String> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(
        move |cx| match catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        },
    )
    .await
}

/// Runs one provider call for `address`; a panic inside it becomes that call's error
/// ([`panic_error`]), never retried.
///
/// # Errors
/// The call's own error, or the panic as a [`ProviderError`] of kind
/// [`ErrorKind::Internal`].
pub async fn isolate<T>(
    address: &Address,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    catch_panic(call)
        .await
        .unwrap_or_else(|msg| Err(panic_error(address, &msg)))
}

/// The error a provider call for `address` that panicked with `message` ends with:
/// [`ErrorKind::Internal`], not retried (the same call would most likely panic again).
pub fn panic_error(address: &Address, message: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Internal,
        format!("internal error in provider for `{address}`: {message}; please report it"),
    )
}

/// The text a panic was raised with (`panic!("...")` carries a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Address {
        Address::new("aws_vpc", "main")
    }

    #[tokio::test]
    async fn a_panic_becomes_the_calls_error() {
        let r: Result<(), _> = isolate(&addr(), async {
            tokio::task::yield_now().await;
            panic!("index out of bounds: the len is 0 but the index is 3")
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(
            e.message,
            "internal error in provider for `aws_vpc.main`: index out of bounds: the len is 0 \
             but the index is 3; please report it"
        );
        let n = 7;
        let r: Result<(), _> = isolate(&addr(), async move { panic!("formatted {n}") }).await;
        assert!(r.unwrap_err().message.contains(": formatted 7;"));
        let r: Result<(), _> = isolate(&addr(), async { std::panic::panic_any(42u8) }).await;
        assert!(r.unwrap_err().message.contains("a panic without a message"));
    }

    #[tokio::test]
    async fn answers_pass_through() {
        let ok = isolate(&addr(), async { Ok::<_, ProviderError>(5) }).await;
        assert_eq!(ok.unwrap(), 5);
        let err = isolate(&addr(), async {
            Err::<(), _>(ProviderError::new(ErrorKind::NotFound, "gone"))
        })
        .await
        .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::NotFound, "gone")
        );
        assert_eq!(catch_panic(async { 1 }).await, Ok(1));
    }
}
