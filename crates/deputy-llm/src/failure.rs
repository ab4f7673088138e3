//! How a failed attempt is told: the typed [`LlmError`] of an HTTP status (with the wait a
//! server asks for), of a transport error, and of an error said inside a response.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::config::Target;
use crate::error::LlmError;
use crate::protocol::DecodeError;
use crate::retry::{hint_in_text, parse_retry_after};
use crate::wire::{ErrorInfo, parse_error_body};

pub(crate) fn decode_error(e: DecodeError, base_url: &str) -> LlmError {
    match e {
        DecodeError::Malformed(detail) => LlmError::MalformedStream {
            base_url: base_url.to_string(),
            detail,
        },
        DecodeError::Server(info) => in_stream_error(&info, base_url),
    }
}

pub(crate) fn transport_error(e: &reqwest::Error, target: &Target) -> LlmError {
    let base_url = target.provider.base_url.clone();
    if e.is_timeout() {
        return LlmError::Timeout {
            phase: "connect",
            after: target.provider.connect_timeout,
            base_url,
        };
    }
    // The innermost cause says the useful thing ("Connection refused").
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    LlmError::Transport {
        base_url,
        message: msg,
    }
}

pub(crate) fn in_stream_error(info: &ErrorInfo, base_url: &str) -> LlmError {
    if crate::overflow::is_context_overflow(
        info.code.as_deref(),
        info.kind.as_deref(),
        &info.message,
    ) {
        let (limit, requested) = crate::overflow::numbers(&info.message);
        return LlmError::ContextOverflow {
            base_url: base_url.to_string(),
            message: info.message.clone(),
            limit,
            requested,
        };
    }
    let code = info.code.clone();
    let c = code.as_deref().unwrap_or("");
    let retryable = matches!(
        c,
        "429"
            | "500"
            | "502"
            | "503"
            | "504"
            | "rate_limit_exceeded"
            | "server_error"
            | "overloaded"
    ) || info
        .kind
        .as_deref()
        .is_some_and(|k| k.contains("server_error") || k.contains("overloaded"));
    LlmError::InStream {
        message: info.message.clone(),
        code,
        retryable,
    }
}

/// Map a non-2xx response to its typed error.
pub fn status_error(status: u16, headers: &HeaderMap, body: &str, target: &Target) -> LlmError {
    let info = parse_error_body(body);
    let base_url = target.provider.base_url.clone();
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
        .or_else(|| {
            headers
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        })
        .or_else(|| {
            // Anthropic says when each of its limits resets; the latest one counts.
            headers
                .iter()
                .filter(|(k, _)| {
                    let k = k.as_str();
                    k.starts_with("anthropic-ratelimit-") && k.ends_with("-reset")
                })
                .filter_map(|(_, v)| v.to_str().ok())
                .filter_map(|v| crate::retry::until_rfc3339(v, SystemTime::now()))
                .max()
        })
        .or_else(|| hint_in_text(&info.message))
        .or_else(|| hint_in_text(body));
    if matches!(status, 400 | 413 | 422)
        && crate::overflow::is_context_overflow(
            info.code.as_deref(),
            info.kind.as_deref(),
            &info.message,
        )
    {
        let (limit, requested) = crate::overflow::numbers(&info.message);
        let (body_limit, body_requested) = crate::overflow::numbers(body);
        return LlmError::ContextOverflow {
            base_url,
            message: info.message,
            limit: limit.or(body_limit),
            requested: requested.or(body_requested),
        };
    }
    match status {
        401 | 403 => LlmError::Auth {
            status,
            base_url,
            message: info.message,
            key_hint: target.provider.key_hint(),
        },
        404 => LlmError::ModelNotFound {
            model: target.model.clone(),
            base_url,
            message: info.message,
        },
        429 if info.code.as_deref() == Some("insufficient_quota") => LlmError::BadRequest {
            status,
            base_url,
            message: format!(
                "{} (out of quota: add credit or use another key)",
                info.message
            ),
            code: info.code,
            param: info.param,
        },
        429 => LlmError::RateLimited {
            base_url,
            message: info.message,
            retry_after,
        },
        408 | 500..=599 => LlmError::Server {
            status,
            base_url,
            message: info.message,
            retry_after,
        },
        _ => LlmError::BadRequest {
            status,
            base_url,
            message: info.message,
            code: info.code,
            param: info.param,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderSettings;

    #[test]
    fn anthropics_reset_headers_set_the_wait() {
        let target = Target {
            provider: ProviderSettings::new("a", "http://127.0.0.1:1/v1"),
            model: "m".into(),
        };
        let in_secs = |s: u64| {
            let t = SystemTime::now() + Duration::from_secs(s);
            let secs = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            // Back to a civil date (the inverse of until_rfc3339's algorithm).
            let days = secs / 86_400;
            let rem = secs % 86_400;
            let z = days as i64 + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + i64::from(m <= 2);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            )
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "anthropic-ratelimit-requests-reset",
            in_secs(5).parse().unwrap(),
        );
        headers.insert(
            "anthropic-ratelimit-tokens-reset",
            in_secs(20).parse().unwrap(),
        );
        let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        match status_error(429, &headers, body, &target) {
            LlmError::RateLimited {
                retry_after: Some(d),
                ..
            } => assert!((18..=20).contains(&d.as_secs()), "{d:?}"),
            other => panic!("{other:?}"),
        }
        // A 529 is a server error, retried.
        let e = status_error(
            529,
            &HeaderMap::new(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &target,
        );
        assert!(e.is_retryable(), "{e:?}");
    }
}
