//! The local HTTP endpoint of a node (axum on the node's tokio runtime):
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | the Prometheus text exposition (format 0.0.4) |
//! | `GET /healthz` | 200 `ok` while the process answers |
//! | `GET /readyz` | 200 `ready`, or 503 with one line saying what is not up |
//!
//! Anything else is 404. The server stops with the node (its shutdown token). [`get`] is a
//! minimal HTTP/1.0 client for the same endpoint: tests and the harness scrape and ask
//! `/readyz` with it (no HTTP client dependency for that).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::registry::NodeMetrics;
use crate::clock;
use crate::error::NodeError;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are drained into buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Binds `listen` and serves `metrics` until `stop`; returns the bound address (port 0 picks
/// a free one). A bind failure is a configuration error naming `metrics.listen`.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<NodeMetrics>,
    stop: CancellationToken,
) -> Result<SocketAddr, NodeError> {
    let bind_error = |e: std::io::Error| NodeError::Config(format!("metrics.listen: {listen}: {e}"));
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let app = Router::new()
        .route("/metrics", routing::get(scrape))
        .route("/healthz", routing::get(healthz))
        .route("/readyz", routing::get(readyz))
        .with_state(metrics.clone());
    let upkeep_stop = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                () = upkeep_stop.cancelled() => break,
                _ = every.tick() => metrics.upkeep(),
            }
        }
    });
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(error) = served {
            warn!(%error, "metrics endpoint stopped");
        }
    });
    info!(%addr, "metrics and health endpoint listening");
    Ok(addr)
}

async fn scrape(State(metrics): State<Arc<NodeMetrics>>) -> Response {
    // Rendering walks the data directory: keep it off the runtime's workers.
    match tokio::task::spawn_blocking(move || metrics.render(clock::now())).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering failed: {error}\n")).into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(metrics): State<Arc<NodeMetrics>>) -> Response {
    match metrics.health().readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}

// ----- client ----------------------------------------------------------------------------

/// Largest answer [`get`] reads.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// How long one [`get`] may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` on `addr`: the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    tokio::time::timeout(TIMEOUT, request(addr, path))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("GET {path} on {addr} timed out")))?
}

async fn request(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    // HTTP/1.0: the server closes the connection after the body and never chunks it.
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE_BYTES).read_to_end(&mut raw).await?;
    parse(&raw)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Splits a raw HTTP response into status and body.
fn parse(raw: &[u8]) -> io::Result<(u16, String)> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid("response is not UTF-8"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| invalid("response has no header end"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("response has no status code"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::registry::NodeKind;

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let metrics = Arc::new(NodeMetrics::new(
            NodeKind::Clinic,
            "c1",
            dir.path().to_owned(),
            Duration::from_secs(60),
        ));
        let stop = CancellationToken::new();
        let addr = serve(SocketAddr::from(([127, 0, 0, 1], 0)), metrics.clone(), stop.clone()).await?;
        assert_eq!(get(addr, "/healthz").await?, (200, "ok\n".to_owned()));
        assert_eq!(get(addr, "/readyz").await?, (503, "not ready: store not opened yet\n".to_owned()));
        metrics.store_opened(0);
        metrics.health().attach_upstream(Arc::new(std::sync::atomic::AtomicBool::new(true)));
        assert_eq!(get(addr, "/readyz").await?, (200, "ready\n".to_owned()));
        let (status, body) = get(addr, "/metrics").await?;
        assert_eq!(status, 200);
        assert!(body.contains("kairan_node_info{id=\"c1\",kind=\"clinic\"} 1"), "{body}");
        assert!(body.contains("kairan_ready 1"), "{body}");
        assert_eq!(get(addr, "/nothing").await?.0, 404);
        stop.cancel();
        Ok(())
    }

    #[tokio::test]
    async fn an_address_in_use_names_the_field() -> Result<(), Box<dyn std::error::Error>> {
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let dir = tempfile::tempdir()?;
        let metrics =
            Arc::new(NodeMetrics::new(NodeKind::Relay, "r", dir.path().to_owned(), Duration::from_secs(1)));
        let error = serve(taken.local_addr()?, metrics, CancellationToken::new()).await.err();
        assert!(
            matches!(&error, Some(NodeError::Config(m)) if m.starts_with("metrics.listen: ")),
            "{error:?}"
        );
        Ok(())
    }

    #[test]
    fn parses_status_and_body() -> io::Result<()> {
        let raw = b"HTTP/1.0 503 Service Unavailable\r\ncontent-length: 5\r\n\r\nno\r\n\r\n";
        assert_eq!(parse(raw)?, (503, "no\r\n\r\n".to_owned()));
        assert!(parse(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(parse(b"garbage\r\n\r\n").is_err());
        Ok(())
    }
}
