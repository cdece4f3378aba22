//! When and how long to retry a request: the backoff policy, the server's `Retry-After`,
//! and [`Attempts`], the one place where a request waits before its next attempt or gives
//! up.

use std::time::{Duration, SystemTime};

use kube::core::Status;
use rand::Rng as _;

/// Backoff for retried requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubles per attempt.
    pub base: Duration,
    /// Ceiling of the exponential delay.
    pub cap: Duration,
    /// Ceiling for a server's `Retry-After`, so a broken server cannot park us for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Delay before the next attempt after `attempt` (1-based) failed retryably, or `None`
    /// when attempts are used up. A server's `Retry-After` is honoured as given (capped);
    /// otherwise exponential backoff with `jitter` in `[0, 1)` spreading the delay over
    /// its upper half so that throttled workers do not retry in lockstep.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if let Some(after) = retry_after {
            return Some(after.min(self.max_retry_after));
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let jitter = jitter.clamp(0.0, 1.0);
        Some(exp.mul_f64(0.5 + 0.5 * jitter))
    }
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delta-seconds, the form kube-apiserver sends,
/// or an HTTP-date, which proxies and load balancers in front of it may send. Anything
/// else is `None` (backoff then applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

/// [`parse_retry_after`] with the current time given: an HTTP-date is the wait until then
/// (zero when it has passed). HTTP-dates are IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`); as RFC 9110 asks of recipients, the obsolete RFC 850
/// and asctime forms are accepted too.
pub fn parse_retry_after_at(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds: a huge value saturates (the policy caps it anyway).
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The server's hint from the header, else from the `Status` body.
pub fn retry_after(header: Option<&str>, status: Option<&Status>) -> Option<Duration> {
    header.and_then(parse_retry_after).or_else(|| {
        status
            .and_then(|s| s.details.as_ref())
            .map(|d| d.retry_after_seconds)
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(u64::from(s)))
    })
}

/// The attempts of one request under a [`RetryPolicy`].
pub(crate) struct Attempts<'p> {
    policy: &'p RetryPolicy,
    made: u32,
}

impl<'p> Attempts<'p> {
    pub(crate) fn new(policy: &'p RetryPolicy) -> Self {
        Attempts { policy, made: 0 }
    }

    /// Counts the attempt about to be made.
    pub(crate) fn start(&mut self) {
        self.made += 1;
    }

    /// Forgets earlier failures (a request that succeeded, a list that starts over).
    pub(crate) fn reset(&mut self) {
        self.made = 0;
    }

    /// After a failure worth retrying: waits as the policy says (the server's
    /// `retry_after` if given, else jittered backoff) and returns `Ok` to try again, or
    /// `Err("gave up after N attempts: <reason>")` when the attempts are used up.
    pub(crate) async fn wait_or_give_up(
        &self,
        retry_after: Option<Duration>,
        reason: impl FnOnce() -> String,
    ) -> Result<(), String> {
        match self.policy.delay(self.made, retry_after, jitter()) {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            None => Err(format!(
                "gave up after {} attempts: {}",
                self.made,
                reason()
            )),
        }
    }
}

/// Spreads the retries of concurrent workers over the upper half of the backoff.
fn jitter() -> f64 {
    rand::rng().random::<f64>()
}

#[cfg(test)]
mod tests {
    use kube::core::response::StatusDetails;

    use super::*;

    fn details(v: serde_json::Value) -> StatusDetails {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn backoff_grows_caps_and_ends() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(10),
        };
        assert_eq!(p.delay(1, None, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, None, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.delay(3, None, 1.0), Some(Duration::from_millis(350)));
        assert_eq!(p.delay(2, None, 0.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(5, None, 1.0), None);
        // Retry-After wins over backoff, within its ceiling.
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), 0.3),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600)), 0.3),
            Some(Duration::from_secs(10))
        );
        assert_eq!(p.delay(5, Some(Duration::from_secs(1)), 0.3), None);
        // Huge attempt numbers do not overflow.
        let long = RetryPolicy {
            max_attempts: u32::MAX,
            ..p
        };
        assert_eq!(
            long.delay(1000, None, 1.0),
            Some(Duration::from_millis(350))
        );
    }

    #[test]
    fn retry_after_from_header_or_status() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "+3", "soon", "Wed, 21 Oct 2015 07:28:00"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
        let status = Status {
            details: Some(details(serde_json::json!({"retryAfterSeconds": 4}))),
            ..Default::default()
        };
        assert_eq!(
            retry_after(Some("1"), Some(&status)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_after(None, Some(&status)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(retry_after(Some("soon"), None), None);
        assert_eq!(retry_after(None, Some(&Status::default())), None);
    }

    #[test]
    fn retry_after_as_an_http_date() {
        // 1994-11-06T08:49:37Z, RFC 9110's example date.
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let before = |secs| date - Duration::from_secs(secs);
        // IMF-fixdate, and the two obsolete forms recipients must accept.
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after_at(form, before(7)),
                Some(Duration::from_secs(7)),
                "{form}"
            );
        }
        assert_eq!(
            parse_retry_after_at(" Sun, 06 Nov 1994 08:49:37 GMT ", before(90)),
            Some(Duration::from_secs(90))
        );
        // A date already passed: retry now, not never.
        assert_eq!(
            parse_retry_after_at(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date + Duration::from_secs(5)
            ),
            Some(Duration::ZERO)
        );
        // Sub-second "now": the wait is what is left until the date.
        assert_eq!(
            parse_retry_after_at(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date - Duration::from_millis(1500)
            ),
            Some(Duration::from_millis(1500))
        );
        // Not a date.
        assert_eq!(
            parse_retry_after_at("Sun, 32 Nov 1994 08:49:37 GMT", date),
            None
        );
        // Through the header path, and the policy's ceiling still applies.
        let now = SystemTime::now();
        let in_a_minute = httpdate::fmt_http_date(now + Duration::from_secs(61));
        let got = retry_after(Some(&in_a_minute), None).expect("a date is a hint");
        assert!(
            got > Duration::from_secs(55) && got <= Duration::from_secs(61),
            "{got:?}"
        );
        let p = RetryPolicy {
            max_retry_after: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1, Some(got), 0.5), Some(Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_wait_then_give_up_with_the_count_and_reason() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut attempts = Attempts::new(&policy);
        let started = tokio::time::Instant::now();
        attempts.start();
        assert_eq!(attempts.wait_or_give_up(None, || "x".into()).await, Ok(()));
        attempts.start();
        let after = Some(Duration::from_secs(7));
        assert_eq!(attempts.wait_or_give_up(after, || "x".into()).await, Ok(()));
        // 100..200 ms of jittered backoff, then the server's 7 s. Tokio's timer rounds a
        // deadline up to the next millisecond, so a draw near 200 ms waits exactly 200 ms.
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(7100)..=Duration::from_millis(7200)).contains(&waited),
            "{waited:?}"
        );
        attempts.start();
        assert_eq!(
            attempts.wait_or_give_up(None, || "HTTP 503".into()).await,
            Err("gave up after 3 attempts: HTTP 503".into())
        );
        attempts.reset();
        attempts.start();
        assert_eq!(attempts.wait_or_give_up(None, || "x".into()).await, Ok(()));
    }

    #[test]
    fn jitter_is_in_the_unit_interval_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }
}
