//! One retry helper for the whole code base.
//!
//! Exponential backoff with full jitter (backon), bounded by `max_delay` and `max_attempts`.
//! Only errors that say they are transient ([`Retryable::is_transient`]) are retried; a
//! permanent error returns at once. Sleeping goes through tokio's clock, so tests run on
//! paused time.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use serde::{Deserialize, Serialize};

/// Errors that know whether retrying can help.
pub trait Retryable {
    fn is_transient(&self) -> bool;
}

/// How often and how patiently to retry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubles each time.
    pub base_delay_ms: u64,
    /// Upper bound on one delay, in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// Tiny delays for tests.
    pub fn for_test() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 1,
            max_delay_ms: 5,
        }
    }

    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.base_delay_ms))
            .with_max_delay(Duration::from_millis(
                self.max_delay_ms.max(self.base_delay_ms),
            ))
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }

    /// Run `op` until it succeeds, fails permanently, or runs out of attempts.
    /// `on_retry(error, delay)` is called before each sleep (for logs and attempt records).
    /// Returns the result and the number of retries used.
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut op: F,
        mut on_retry: impl FnMut(&E, Duration),
    ) -> (Result<T, E>, u32)
    where
        E: Retryable,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retries = 0u32;
        let result = (|| op())
            .retry(self.builder())
            .when(|e: &E| e.is_transient())
            .notify(|e: &E, d: Duration| {
                retries += 1;
                on_retry(e, d);
            })
            .await;
        (result, retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(bool);
    impl Retryable for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay_ms: 100,
            max_delay_ms: 1000,
        };
        let (res, retries) = policy
            .retry(
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(E(true))
                    } else {
                        Ok(7)
                    }
                },
                |_, _| {},
            )
            .await;
        assert_eq!(res.unwrap(), 7);
        assert_eq!(retries, 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let (res, retries) = RetryPolicy::default()
            .retry(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(E(false))
                },
                |_, _| {},
            )
            .await;
        assert!(res.is_err());
        assert_eq!((retries, calls.load(Ordering::SeqCst)), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_with_bounded_delays() {
        let calls = AtomicU32::new(0);
        let mut delays = Vec::new();
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay_ms: 100,
            max_delay_ms: 250,
        };
        let (res, retries) = policy
            .retry(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(E(true))
                },
                |_, d| delays.push(d),
            )
            .await;
        assert!(res.is_err());
        assert_eq!((retries, calls.load(Ordering::SeqCst)), (3, 4));
        // Jitter adds up to one more base delay on top of the capped exponential delay.
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(500)),
            "{delays:?}"
        );
    }
}
