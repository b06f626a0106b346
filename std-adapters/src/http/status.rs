//! How a response counts, by its status.

use std::{fmt, time::Duration};

use ::http::{Response, StatusCode};

use super::retry_after;
use crate::classify::{ClassifyValue, Verdict};

/// One bit per status code 0–1023 (`http` allows 100–999).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct StatusSet([u64; 16]);

impl StatusSet {
    const EMPTY: StatusSet = StatusSet([0; 16]);

    const fn with(mut self, status: u16, present: bool) -> Self {
        let (word, bit) = ((status / 64) as usize % 16, status % 64);
        if present {
            self.0[word] |= 1 << bit;
        } else {
            self.0[word] &= !(1 << bit);
        }
        self
    }

    const fn contains(&self, status: u16) -> bool {
        let (word, bit) = ((status / 64) as usize % 16, status % 64);
        self.0[word] & (1 << bit) != 0
    }
}

/// How an HTTP response counts, by its status: a value classifier for a breaker's or a retry's
/// `classify_values`.
///
/// By default a 5xx, 408 Request Timeout and 429 Too Many Requests are failures and every
/// other status is a success (a 4xx is the caller's mistake, not the upstream's trouble).
/// [`failure`](Self::failure), [`success`](Self::success) and [`ignore`](Self::ignore) change
/// one status; they are `const`. A failed response's `Retry-After` header is read as the wait
/// it asks for (see [`retry_after`](super::retry_after())), which a retry honours.
///
/// ```
/// use http::StatusCode;
/// use resilient_circuit_std::{classify::Verdict, http::HttpStatus};
///
/// const STATUS: HttpStatus = HttpStatus::new()
///     .success(StatusCode::NOT_IMPLEMENTED) // a missing feature, not an outage
///     .ignore(StatusCode::CONFLICT); // says nothing about the upstream's health
/// assert_eq!(STATUS.verdict(StatusCode::SERVICE_UNAVAILABLE), Verdict::Failure);
/// assert_eq!(STATUS.verdict(StatusCode::TOO_MANY_REQUESTS), Verdict::Failure);
/// assert_eq!(STATUS.verdict(StatusCode::NOT_FOUND), Verdict::Success);
/// assert_eq!(STATUS.verdict(StatusCode::NOT_IMPLEMENTED), Verdict::Success);
/// assert_eq!(STATUS.verdict(StatusCode::CONFLICT), Verdict::Ignore);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpStatus {
    failures: StatusSet,
    ignored: StatusSet,
}

impl HttpStatus {
    /// Failures: every 5xx, 408 and 429; every other status a success.
    pub const fn new() -> Self {
        let mut failures = StatusSet::EMPTY;
        let mut status = 500;
        while status < 600 {
            failures = failures.with(status, true);
            status += 1;
        }
        let failures = failures
            .with(StatusCode::REQUEST_TIMEOUT.as_u16(), true)
            .with(StatusCode::TOO_MANY_REQUESTS.as_u16(), true);
        HttpStatus {
            failures,
            ignored: StatusSet::EMPTY,
        }
    }

    /// `status` counts as a failure.
    pub const fn failure(self, status: StatusCode) -> Self {
        self.set(status, true, false)
    }

    /// `status` counts as a success.
    pub const fn success(self, status: StatusCode) -> Self {
        self.set(status, false, false)
    }

    /// `status` is not recorded at all (and not retried).
    pub const fn ignore(self, status: StatusCode) -> Self {
        self.set(status, false, true)
    }

    const fn set(self, status: StatusCode, failure: bool, ignored: bool) -> Self {
        let code = status.as_u16();
        HttpStatus {
            failures: self.failures.with(code, failure),
            ignored: self.ignored.with(code, ignored),
        }
    }

    /// How a response with `status` counts.
    #[inline]
    pub const fn verdict(&self, status: StatusCode) -> Verdict {
        let code = status.as_u16();
        if self.failures.contains(code) {
            Verdict::Failure
        } else if self.ignored.contains(code) {
            Verdict::Ignore
        } else {
            Verdict::Success
        }
    }
}

impl Default for HttpStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed = |set: &StatusSet| -> Vec<u16> {
            (100..1000).filter(|&code| set.contains(code)).collect()
        };
        f.debug_struct("HttpStatus")
            .field("failures", &listed(&self.failures))
            .field("ignored", &listed(&self.ignored))
            .finish()
    }
}

impl<B> ClassifyValue<Response<B>> for HttpStatus {
    #[inline]
    fn classify_value(&self, response: &Response<B>) -> Verdict {
        self.verdict(response.status())
    }

    fn retry_after(&self, response: &Response<B>) -> Option<Duration> {
        retry_after(response.headers(), std::time::SystemTime::now())
    }
}

/// A `reqwest` response, judged as it is (feature `reqwest`): by its status, with its
/// `Retry-After`.
#[cfg(feature = "reqwest")]
impl ClassifyValue<reqwest::Response> for HttpStatus {
    #[inline]
    fn classify_value(&self, response: &reqwest::Response) -> Verdict {
        self.verdict(response.status())
    }

    fn retry_after(&self, response: &reqwest::Response) -> Option<Duration> {
        retry_after(response.headers(), std::time::SystemTime::now())
    }
}

impl ClassifyValue<StatusCode> for HttpStatus {
    #[inline]
    fn classify_value(&self, status: &StatusCode) -> Verdict {
        self.verdict(*status)
    }
}
