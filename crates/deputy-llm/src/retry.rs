//! When and how long to wait before trying a model request again.
//!
//! Delays grow exponentially (backon) with full jitter (a uniform pick between zero and the
//! exponential delay), capped. A server's own hint wins: the `Retry-After` header in seconds or
//! as an HTTP date, or a phrase in the error body such as "Please try again in 1.9s".

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Deserialize;

/// Retry settings (`[retry]` in config).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay, in milliseconds.
    pub initial_delay_ms: u64,
    /// Cap on one backoff delay, in milliseconds.
    pub max_delay_ms: u64,
    /// Cap on a server-requested wait (Retry-After), in milliseconds; a longer request fails
    /// instead of hanging a CI job.
    pub max_retry_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_delay_ms: 500,
            max_delay_ms: 20_000,
            max_retry_after_ms: 120_000,
        }
    }
}

impl RetryPolicy {
    /// The sequence of backoff delays, already jittered. Its length is the retry budget.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        let max = Duration::from_millis(self.max_delay_ms.max(1));
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.initial_delay_ms).min(max))
            .with_max_delay(max)
            .with_factor(2.0)
            .with_max_times(self.max_retries as usize)
            .build()
            // Full jitter: spreads retries of many clients evenly instead of in waves.
            .map(|d| d.mul_f64(fastrand::f64()))
    }

    /// The wait for a server-requested delay, or `None` when it is longer than we accept.
    pub fn accept_retry_after(&self, d: Duration) -> Option<Duration> {
        (d <= Duration::from_millis(self.max_retry_after_ms)).then_some(d)
    }
}

/// Parse a `Retry-After` header: delta-seconds (`"1"`, `"1.5"`) or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait until an RFC 3339 instant (`2026-12-06T22:30:00Z`, as Anthropic's
/// `anthropic-ratelimit-*-reset` headers say when a limit resets).
pub fn until_rfc3339(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let num = |r: std::ops::Range<usize>| v.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if v.get(4..5)? != "-" || !matches!(v.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let mut rest = v.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let oh = rest.get(1..3)?.parse::<i64>().ok()?;
            let om = rest.get(4..6)?.parse::<i64>().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Find a wait hint in an error message: "try again in 1.9s", "Please retry in 20ms",
/// "retry after 5 seconds", `"retryDelay": "30s"`.
pub fn hint_in_text(text: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    for marker in [
        "try again in ",
        "retry in ",
        "retry after ",
        "retrydelay\": \"",
        "retrydelay\":\"",
    ] {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(marker) {
            let start = from + pos + marker.len();
            if let Some(d) = parse_amount(&lower[start..]) {
                return Some(d);
            }
            from = start;
        }
    }
    None
}

/// `1.9s`, `20ms`, `5 seconds`, `2 minutes`, `1m30s` (first unit only is enough in practice).
fn parse_amount(s: &str) -> Option<Duration> {
    let num_len = s
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
        .map(|(i, c)| i + c.len_utf8())
        .last()?;
    let n: f64 = s[..num_len].parse().ok()?;
    let unit = s[num_len..].trim_start();
    let secs = if unit.starts_with("ms") || unit.starts_with("millisecond") {
        n / 1000.0
    } else if unit.starts_with('s') {
        n
    } else if unit.starts_with("m") {
        n * 60.0
    } else if unit.starts_with('h') {
        n * 3600.0
    } else {
        return None;
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_header() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 2.5 ", now),
            Some(Duration::from_millis(2500))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn rfc3339_resets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_597_400);
        // 1_796_597_400 is 2026-12-06T22:50:00Z.
        assert_eq!(
            until_rfc3339("2026-12-06T22:50:30Z", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            until_rfc3339("2026-12-06T23:51:00.5+01:00", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            until_rfc3339("2026-12-06T22:00:00Z", now),
            Some(Duration::ZERO)
        );
        assert_eq!(until_rfc3339("soon", now), None);
    }

    #[test]
    fn hints_in_bodies() {
        assert_eq!(
            hint_in_text("Rate limit reached for gpt-4o. Please try again in 1.9s. Visit ..."),
            Some(Duration::from_millis(1900))
        );
        assert_eq!(
            hint_in_text("please try again in 20ms"),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            hint_in_text("Retry after 5 seconds"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            hint_in_text(r#""retryDelay": "30s""#),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            hint_in_text("try again in 2 minutes"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(hint_in_text("Please retry shortly"), None);
    }

    #[test]
    fn delays_are_bounded_and_counted() {
        let p = RetryPolicy {
            max_retries: 6,
            initial_delay_ms: 100,
            max_delay_ms: 1000,
            max_retry_after_ms: 5000,
        };
        let d: Vec<Duration> = p.delays().collect();
        assert_eq!(d.len(), 6);
        assert!(d.iter().all(|d| *d <= Duration::from_millis(1000)));
        assert_eq!(p.accept_retry_after(Duration::from_secs(6)), None);
    }
}
