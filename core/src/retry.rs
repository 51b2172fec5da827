//! The one shared retry layer: throttling and 5xx are retried here with exponential
//! backoff and full jitter, and nowhere else.
//!
//! SDKs that retry on their own are configured to make a single attempt (see
//! ARCHITECTURE.md), so attempts never multiply.

use std::future::Future;
use std::time::Duration;

use crate::provider::{ErrorKind, ProviderError};

/// How often and how long to retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// The first backoff ceiling; doubles each attempt.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling before attempt `attempt` (1-based, after the first failure).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max_delay)
    }
}

/// The delay before attempt `attempt + 1`: full jitter under the policy's ceiling.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    policy.ceiling(attempt).mul_f64(jitter())
}

/// A random fraction in `[0, 1)` from the OS generator.
pub(crate) fn jitter() -> f64 {
    let mut b = [0u8; 8];
    // The OS generator does not fail on supported platforms; no jitter is a safe fallback.
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or runs out of
/// attempts. `on_retry` hears about each retry (for progress events).
pub async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    mut on_retry: impl FnMut(&ProviderError, u32),
    mut op: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind.is_retryable() && attempt < policy.max_attempts => {
                on_retry(&e, attempt);
                let delay = backoff(&policy, attempt);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) if e.kind.is_retryable() => {
                return Err(ProviderError::new(
                    e.kind,
                    format!("{} (gave up after {attempt} attempts)", e.message),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Classifies an HTTP status the way every provider should.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Transient,
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        401 | 403 => ErrorKind::Auth,
        400 | 422 => ErrorKind::InvalidInput,
        _ => ErrorKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_throttling_then_succeeds() {
        let calls = AtomicU32::new(0);
        let mut retries = 0;
        let out = retry(
            RetryPolicy::default(),
            |_, _| retries += 1,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(ProviderError::new(ErrorKind::Throttled, "slow down"))
                } else {
                    Ok(n)
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(out, 3);
        assert_eq!(retries, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_permanent_errors() {
        let calls = AtomicU32::new(0);
        let err = retry(
            RetryPolicy::default(),
            |_, _| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ProviderError::new(ErrorKind::InvalidInput, "bad"))
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        };
        let err = retry(
            policy,
            |_, _| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ProviderError::new(ErrorKind::Transient, "503"))
            },
        )
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(err.message.contains("gave up after 4 attempts"));
    }

    #[test]
    fn ceiling_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(2), Duration::from_millis(400));
        assert_eq!(p.ceiling(40), Duration::from_secs(20));
    }
}
