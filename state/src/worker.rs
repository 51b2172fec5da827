//! The runtime thread of the backends over async clients (S3, GCS, Azure Blob, PostgreSQL, KMS), and what
//! those clients share.
//!
//! [`Backend`](crate::Backend) is synchronous, but its callers are sometimes inside a tokio
//! runtime (the CLI saves state from async code), where blocking on a runtime panics. So
//! each such backend runs its client on its own current-thread runtime in a background
//! thread; a call sends its request there and waits for the answer on a plain channel.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A current-thread tokio runtime on its own thread, running the futures sent to it
/// concurrently. The thread ends when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    /// The service, for messages (`S3`, `PostgreSQL`).
    service: &'static str,
    /// One call's backstop, so that a caller never waits forever on the runtime thread.
    limit: Duration,
}

impl Worker {
    /// Starts the thread `flyteinfra-<thread>-state`; each call's future is cut off after
    /// `limit`.
    pub(crate) fn start(
        thread: &str,
        service: &'static str,
        limit: Duration,
    ) -> io::Result<(Worker, std::thread::JoinHandle<()>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(format!("flyteinfra-{thread}-state"))
            .spawn(move || {
                rt.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })?;
        let worker = Worker {
            jobs: tx,
            service,
            limit,
        };
        Ok((worker, thread))
    }

    /// Runs `fut` on the runtime thread and blocks the calling thread (never a runtime's
    /// worker of ours) until it ends.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let limit = self.limit;
        let job = async move {
            let _ = tx.send(tokio::time::timeout(limit, fut).await);
        };
        let service = self.service;
        self.jobs
            .send(Box::pin(job))
            .map_err(|_| format!("the thread of the {service} client has stopped"))?;
        match rx.recv() {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(format!(
                "{service} did not answer in {} s",
                self.limit.as_secs()
            )),
            Err(_) => Err(format!(
                "the {service} request failed unexpectedly (a panic in the client)"
            )),
        }
    }
}

/// `err` and its sources, `: `-separated.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The settings of the AWS SDK clients here (S3, KMS).
#[cfg(any(feature = "s3", feature = "kms"))]
pub(crate) mod aws {
    use std::time::Duration;

    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;

    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// All attempts of one request, credentials included.
    const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
    /// The SDK retries throttling, 5xx and lost connections. A conditional write retried
    /// after its first answer was lost finds its own write and comes back 412, which is
    /// [`StateError::Moved`](crate::StateError::Moved): the lease and the manager re-read
    /// and see what happened.
    const SDK_ATTEMPTS: u32 = 3;

    pub(crate) fn retry_config() -> RetryConfig {
        RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS)
    }

    pub(crate) fn timeout_config() -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_serves_callers_inside_a_runtime_and_stops_with_its_last_clone() {
        let (worker, thread) = Worker::start("test", "test", Duration::from_secs(5)).unwrap();
        let copy = worker.clone();
        for rt in [
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap(),
        ] {
            let got = rt.block_on(async {
                copy.run(async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    7
                })
            });
            assert_eq!(got, Ok(7));
        }
        drop(worker);
        assert!(!thread.is_finished());
        drop(copy);
        thread.join().unwrap();
    }

    #[test]
    fn a_panicking_request_is_an_error_not_a_hang() {
        let (worker, _) = Worker::start("test", "test", Duration::from_secs(5)).unwrap();
        let got: Result<(), String> = worker.run(async { panic!("boom") });
        assert!(got.unwrap_err().contains("unexpectedly"));
        assert_eq!(worker.run(async { 1 }), Ok(1));
    }

    #[test]
    fn a_call_past_its_limit_is_an_error_naming_the_service() {
        let (worker, _) = Worker::start("test", "PostgreSQL", Duration::from_secs(1)).unwrap();
        let got = worker.run(async { tokio::time::sleep(Duration::from_secs(30)).await });
        assert_eq!(got, Err("PostgreSQL did not answer in 1 s".to_string()));
    }
}
