//! The clinic's local web inbox: `kairan clinic` serves the inbox as a web page on a loopback
//! address (`[web]` in clinic.toml, default `127.0.0.1:8765`).
//!
//! It reads the same verified copies as `kairan inbox` ([`crate::inbox::listing::Inbox`]):
//! every copy is verified again before it is shown, a copy that fails is listed as refused with
//! its reason. Pages are askama templates (HTML-escaped by default: advisory text is
//! attacker-influenced even when signed); styles and the one script are served from the
//! binary, nothing from the internet; every response carries a strict Content-Security-Policy;
//! requests whose `Host` is not this server's own address are refused (DNS rebinding).
//! New advisories appear without reload through server-sent events (`/events`).
//!
//! - [`settings`]: `[web]` of clinic.toml.
//! - [`snapshot`]: the verified inbox, re-read when the copies change.
//! - [`guard`]: Host check and security headers.
//! - [`view`]: advisories as the templates show them (JST dates, TLP classes, labels).
//! - [`pages`]: the list and error pages; [`detail`]: one advisory and its print view;
//!   [`api`]: JSON, events and static files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use kairan_protocol::{Scope, TrustAnchors};

use crate::error::NodeError;

mod api;
mod detail;
mod guard;
mod pages;
pub mod settings;
mod snapshot;
mod view;

pub use settings::WebSection;
use snapshot::Reader;

/// What the web inbox needs to know.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Listen address (loopback).
    pub listen: SocketAddr,
    /// The clinic's data directory (its `advisories/` copies are read).
    pub data_dir: PathBuf,
    /// Trust anchors every copy is verified against.
    pub anchors: TrustAnchors,
    /// Clinic id, shown in the header and the provenance path.
    pub clinic_id: String,
    /// Clinic scope.
    pub scope: Scope,
    /// District node id.
    pub district: String,
    /// The clinic's recipient key (`[clinic] recipient_key`): the sealed advisories sealed to
    /// `clinic_id` are shown opened (decrypted in memory, for display only).
    pub recipient_key: Option<Arc<kairan_protocol::sealed::RecipientSecret>>,
}

/// State shared by the handlers.
#[derive(Debug)]
struct App {
    config: WebConfig,
    reader: Arc<Reader>,
    changed: watch::Receiver<u64>,
    shutdown: CancellationToken,
}

/// A running web inbox.
#[derive(Debug, Clone)]
pub struct WebServer {
    /// The address it listens on (the configured one, with the port the OS gave for port 0).
    pub addr: SocketAddr,
    changed: Arc<watch::Sender<u64>>,
}

impl WebServer {
    /// Tells open pages that the inbox changed (the clinic calls it after writing a copy).
    pub fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Binds the configured address and serves until `shutdown`. A bind failure is a
/// configuration error naming `web.listen`.
pub async fn start(config: WebConfig, shutdown: CancellationToken) -> Result<WebServer, NodeError> {
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        NodeError::Config(format!(
            "web.listen: cannot listen on {}: {e} (choose another port, or set [web] enabled = false)",
            config.listen
        ))
    })?;
    let addr = listener.local_addr().map_err(|e| NodeError::Task(format!("web inbox address: {e}")))?;
    let (sender, receiver) = watch::channel(0u64);
    let recipient =
        crate::inbox::Recipient { clinic: config.clinic_id.clone(), key: config.recipient_key.clone() };
    let reader =
        Arc::new(Reader::new(config.data_dir.clone(), config.anchors.clone()).for_recipient(recipient));
    let app = Arc::new(App { config, reader, changed: receiver, shutdown: shutdown.clone() });
    let router = router(app, addr);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(error) = served {
            warn!(%error, "web inbox stopped");
        }
    });
    info!(url = %format!("http://{addr}/"), "web inbox serving");
    Ok(WebServer { addr, changed: Arc::new(sender) })
}

fn router(app: Arc<App>, addr: SocketAddr) -> Router {
    let hosts = Arc::new(guard::allowed_hosts(addr));
    Router::new()
        .route("/", get(pages::list))
        .route("/fragment/list", get(pages::list_fragment))
        .route("/advisory/{digest}", get(pages::advisory))
        .route("/advisory/{digest}/print", get(pages::print))
        .route("/api/inbox", get(api::inbox))
        .route("/api/advisory/{digest}", get(api::advisory))
        .route("/events", get(api::events))
        .route("/static/{file}", get(api::asset))
        .fallback(pages::not_found)
        .with_state(app)
        // Outermost last: every response, refusals included, gets the security headers.
        .layer(axum::middleware::from_fn_with_state(hosts, guard::host))
        .layer(axum::middleware::from_fn(guard::headers))
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures::Hierarchy;
    use kairan_protocol::{Kind, Localized};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::inbox::testing;

    struct Reply {
        status: u16,
        head: String,
        body: String,
    }

    async fn request(addr: SocketAddr, method: &str, path: &str, host: &str) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(text.as_bytes()).await.expect("send");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        Reply { status, head: head.to_ascii_lowercase(), body: body.to_owned() }
    }

    async fn get(server: &WebServer, path: &str) -> Reply {
        request(server.addr, "GET", path, &server.addr.to_string()).await
    }

    async fn serve(dir: &std::path::Path, hierarchy: &Hierarchy) -> (WebServer, CancellationToken) {
        serve_as(dir, hierarchy, "jp-13-chuo-c1", None).await
    }

    async fn serve_as(
        dir: &std::path::Path,
        hierarchy: &Hierarchy,
        clinic_id: &str,
        recipient_key: Option<Arc<kairan_protocol::sealed::RecipientSecret>>,
    ) -> (WebServer, CancellationToken) {
        let config = WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.to_owned(),
            anchors: hierarchy.anchors.clone(),
            clinic_id: clinic_id.into(),
            scope: kairan_protocol::Scope::parse("jp/13/chuo").expect("scope"),
            district: "jp-13-chuo".into(),
            recipient_key,
        };
        let shutdown = CancellationToken::new();
        (start(config, shutdown.clone()).await.expect("start"), shutdown)
    }

    #[tokio::test]
    async fn pages_are_escaped_and_carry_the_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let mut hostile = testing::advisory(1, None, Kind::Alert, &[]);
        hostile.title = Localized::new("ja", "<script>alert('x')</script>注意").with("en", "<b>bold</b>");
        hostile.links[0].url = "http://example.invalid/\"><script>".into();
        let digest = testing::store(&hierarchy, dir.path(), 1, &hostile);
        let (server, shutdown) = serve(dir.path(), &hierarchy).await;
        let list = get(&server, "/").await;
        assert_eq!(list.status, 200, "{}", list.body);
        assert!(list.head.contains(&format!("content-security-policy: {}", guard::CSP)), "{}", list.head);
        assert!(
            list.head.contains("cache-control: no-store")
                && list.head.contains("referrer-policy: no-referrer")
        );
        assert!(
            list.body.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;注意"),
            "{}",
            list.body
        );
        assert!(!list.body.contains("<script>alert") && !list.body.contains("<b>bold"));
        let page = get(&server, &view::href(&digest)).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("\"><script>") && page.body.contains("&#34;&#62;&#60;script&#62;"));
        assert_eq!(page.body.matches("class=\"banner").count(), 2, "TLP banner at the top and bottom");
        let print = get(&server, &format!("{}/print", view::href(&digest))).await;
        assert_eq!(print.body.matches("<strong>TLP:AMBER</strong> 取扱:").count(), 2, "{}", print.body);
        for path in ["/", "/static/inbox.css", "/static/inbox.js"] {
            assert!(
                !get(&server, path).await.body.contains("https://"),
                "{path} loads nothing from elsewhere"
            );
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_sealed_advisory_is_shown_as_encrypted_with_its_banner() {
        use crate::inbox::{SEALED_NOTICE_EN, SEALED_NOTICE_JA};
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let sealed = testing::advisory(2, Some(kairan_protocol::Digest::of(b"first")), Kind::Alert, &[]);
        assert!(sealed.sealed.is_some());
        let digest = testing::store(&hierarchy, dir.path(), 1, &sealed);
        let (server, shutdown) = serve(dir.path(), &hierarchy).await;
        let list = get(&server, "/").await;
        assert_eq!(list.status, 200, "{}", list.body);
        assert!(
            list.body.contains(&format!("{}\">{SEALED_NOTICE_JA}</a>", view::href(&digest))),
            "{}",
            list.body
        );
        assert!(list.body.contains("tlp-red\">TLP:RED</span>") && list.body.contains("MHLW-TEST-002 · mhlw"));
        let page = get(&server, &view::href(&digest)).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body.matches("class=\"banner").count(), 2, "TLP banner at the top and bottom");
        assert!(page.body.contains("<span class=\"tlp-label\">TLP:RED</span>"), "{}", page.body);
        assert!(page.body.contains("<section class=\"sealed\">"), "{}", page.body);
        assert!(
            page.body.contains(SEALED_NOTICE_JA) && page.body.contains(SEALED_NOTICE_EN),
            "{}",
            page.body
        );
        assert!(!page.body.contains("<article class=\"column\""), "no empty columns: {}", page.body);
        assert!(page.body.contains("no recipient key is configured on this node"), "{}", page.body);
        let print = get(&server, &format!("{}/print", view::href(&digest))).await;
        assert_eq!(print.body.matches("<strong>TLP:RED</strong> 取扱:").count(), 2, "{}", print.body);
        assert!(
            print.body.contains(&format!("<p class=\"sealed\">{SEALED_NOTICE_JA}</p>")),
            "{}",
            print.body
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_sealed_advisory_is_shown_opened_to_a_recipient_with_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let sealed = testing::advisory(2, Some(kairan_protocol::Digest::of(b"first")), Kind::Alert, &[]);
        let digest = testing::store(&hierarchy, dir.path(), 1, &sealed);
        let key = Arc::new(kairan_protocol::fixtures::sealed::recipient("chuo-clinic-1"));
        let (server, shutdown) = serve_as(dir.path(), &hierarchy, "chuo-clinic-1", Some(key)).await;
        let list = get(&server, "/").await;
        assert!(
            list.body.contains("テスト注意喚起 第2報") && !list.body.contains(crate::inbox::SEALED_NOTICE_JA)
        );
        let page = get(&server, &view::href(&digest)).await;
        assert_eq!(page.body.matches("class=\"banner").count(), 2, "TLP banner at the top and bottom");
        assert!(page.body.contains("<span class=\"tlp-label\">TLP:RED</span>"), "{}", page.body);
        assert!(page.body.contains("<article class=\"column\""), "{}", page.body);
        assert!(
            page.body.contains("テスト注意喚起 第2報") && !page.body.contains("<section class=\"sealed\">")
        );
        shutdown.cancel();
        let key = Arc::new(kairan_protocol::fixtures::sealed::recipient("chuo-clinic-3"));
        let (server, shutdown) = serve_as(dir.path(), &hierarchy, "chuo-clinic-3", Some(key)).await;
        let page = get(&server, &view::href(&digest)).await;
        assert!(page.body.contains("<section class=\"sealed\">") && page.body.contains("not_a_recipient"));
        assert!(!page.body.contains("テスト注意喚起 第2報"), "{}", page.body);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn only_its_own_host_and_only_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let (server, shutdown) = serve(dir.path(), &hierarchy).await;
        let rebound = request(server.addr, "GET", "/api/inbox", "attacker.example:8765").await;
        assert_eq!(rebound.status, 421);
        assert!(rebound.head.contains("content-security-policy"));
        let port = server.addr.port();
        assert_eq!(request(server.addr, "GET", "/", &format!("localhost:{port}")).await.status, 200);
        assert_eq!(request(server.addr, "POST", "/", &server.addr.to_string()).await.status, 405);
        assert_eq!(get(&server, "/advisory/nothex").await.status, 404);
        assert_eq!(get(&server, &format!("/advisory/{}", "0".repeat(64))).await.status, 404);
        assert_eq!(get(&server, "/static/../Cargo.toml").await.status, 404);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn json_is_the_cli_json_and_refused_copies_are_listed_not_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let digests = testing::alert_update_cancel(&hierarchy, dir.path());
        testing::tamper(dir.path(), &digests[1], |a| a.title = Localized::new("ja", "改ざんされた題名"));
        let (server, shutdown) = serve(dir.path(), &hierarchy).await;
        let inbox = crate::inbox::listing::Inbox::read(dir.path(), &hierarchy.anchors).expect("read");
        let expected = serde_json::to_value(inbox.list_json()).expect("json");
        let served: serde_json::Value =
            serde_json::from_str(&get(&server, "/api/inbox").await.body).expect("api json");
        assert_eq!(served, expected);
        let one: serde_json::Value =
            serde_json::from_str(&get(&server, &format!("/api{}", view::href(&digests[0]))).await.body)
                .expect("json");
        assert_eq!(one["state"]["standing"], "cancelled");
        let list = get(&server, "/").await.body;
        assert!(!list.contains("改ざんされた題名"));
        assert!(list.contains("検証に失敗したため表示しません"), "{list}");
        assert!(list.contains("取消済み / cancelled"));
        assert_eq!(get(&server, &view::href(&digests[1])).await.status, 404);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn the_event_stream_announces_the_inbox_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let (server, shutdown) = serve(dir.path(), &hierarchy).await;
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
        let text = format!("GET /events HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
        stream.write_all(text.as_bytes()).await.expect("send");
        let mut seen = String::new();
        let mut buffer = [0u8; 4096];
        let read_until = |needle: &'static str| needle;
        for needle in [read_until("\"count\":0"), read_until("\"count\":1")] {
            if needle.ends_with('1') {
                testing::store(&hierarchy, dir.path(), 1, &testing::advisory(1, None, Kind::Alert, &[]));
                server.notify();
            }
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while !seen.contains(needle) {
                let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await;
                let count = read.expect("event in time").expect("read");
                assert!(count > 0, "stream ended: {seen}");
                seen.push_str(&String::from_utf8_lossy(&buffer[..count]));
            }
        }
        assert!(seen.contains("event: inbox"), "{seen}");
        shutdown.cancel();
    }
}
