//! What every request and response of the web inbox goes through.
//!
//! - **Host check.** A page on any web site could point its own name at 127.0.0.1 (DNS
//!   rebinding) and read the inbox through the clinic's browser; so a request is served only
//!   when its `Host` header names this server itself (`127.0.0.1:PORT`, `localhost:PORT`,
//!   `[::1]:PORT`, the bound address). Others get 421.
//! - **Security headers.** A Content-Security-Policy that allows only this server's own
//!   styles, script and connections (no inline script or style, nothing from elsewhere, no
//!   framing, no forms), `nosniff`, no referrer (advisory links must not tell the linked site
//!   where the clinic read them), and `no-store` (TLP:RED pages are not kept in the cache).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The `Host` values that name this server.
pub fn allowed_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string(), format!("localhost:{port}")];
    if addr.is_ipv4() {
        hosts.push(format!("127.0.0.1:{port}"));
    } else {
        hosts.push(format!("[::1]:{port}"));
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Refuses requests whose `Host` is not this server (421 Misdirected Request).
pub async fn host(State(allowed): State<Arc<Vec<String>>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    match host {
        Some(host) if allowed.contains(&host) => next.run(request).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "kairan web inbox: this server answers only requests addressed to itself\n",
        )
            .into_response(),
    }
}

/// Adds the security headers to every response.
pub async fn headers(request: Request<Body>, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_a_loopback_address() {
        let v4 = allowed_hosts(SocketAddr::from(([127, 0, 0, 1], 8765)));
        assert_eq!(v4, vec!["127.0.0.1:8765", "localhost:8765"]);
        let v6: SocketAddr = "[::1]:9000".parse().expect("addr");
        assert_eq!(allowed_hosts(v6), vec!["[::1]:9000", "localhost:9000"]);
        let other: SocketAddr = "127.0.0.2:80".parse().expect("addr");
        assert_eq!(allowed_hosts(other), vec!["127.0.0.1:80", "127.0.0.2:80", "localhost:80"]);
    }

    #[test]
    fn the_policy_allows_nothing_from_elsewhere() {
        assert!(CSP.starts_with("default-src 'none'"));
        assert!(!CSP.contains("unsafe") && !CSP.contains("http") && !CSP.contains('*'));
        assert!(CSP.contains("frame-ancestors 'none'"));
    }
}
