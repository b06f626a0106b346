//! The `Retry-After` header as a wait.

use std::time::{Duration, SystemTime};

use ::http::{HeaderMap, header::RETRY_AFTER};

/// The wait a response's `Retry-After` header asks for, measured from `now`: delta-seconds
/// (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, or the two obsolete date forms).
///
/// `None` when the header is missing, not one of those forms, or repeated: then the caller's own
/// backoff decides. A date already past asks for no wait; more seconds than a `u64` holds ask
/// for [`Duration::MAX`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
/// use resilient_circuit_std::http::retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
/// assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_secs(120)));
///
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
/// let a_minute_before = httpdate::parse_http_date("Wed, 21 Oct 2015 07:27:00 GMT").unwrap();
/// assert_eq!(retry_after(&headers, a_minute_before), Some(Duration::from_secs(60)));
///
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
/// assert_eq!(retry_after(&headers, SystemTime::now()), None);
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(text.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}
