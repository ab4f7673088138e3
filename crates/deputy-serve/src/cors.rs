//! `--cors ORIGIN`: browsers on those origins may call the API (a dashboard, a web IDE). The
//! preflight is answered before authentication (browsers send it without credentials); the
//! requests themselves still need a bearer token. Only bearer tokens authenticate, never
//! cookies, so no origin is given credentials.

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// An origin as `--cors` takes it: `*`, or `http[s]://HOST[:PORT]` with no path.
fn origin_ok(o: &str) -> bool {
    if o == "*" {
        return true;
    }
    let Some(rest) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// The layer for `origins` (none: no layer); an origin that is not one is named.
pub(crate) fn layer(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = origins.iter().find(|o| !origin_ok(o)) {
        return Err(format!(
            "--cors {bad}: give an origin as a browser sends it (https://app.example.com, \
             http://localhost:3000: scheme, host and port, no path), or * for any"
        ));
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::LOCATION, header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        for ok in [
            "*",
            "https://app.example.com",
            "http://localhost:3000",
            "http://[::1]:8080",
        ] {
            assert!(layer(&[ok.to_string()]).is_ok(), "{ok}");
        }
        for bad in [
            "example.com",
            "https://x.com/",
            "https://x.com/path",
            "ftp://x",
            "https://",
            "https://a b",
        ] {
            let e = layer(&[bad.to_string()]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
