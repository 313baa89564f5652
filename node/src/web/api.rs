//! JSON (`/api/inbox`, `/api/advisory/{digest}`: the same documents as
//! `kairan inbox list --json` and `kairan inbox show --json`), the server-sent event stream
//! that tells open pages the inbox changed (`/events`), and the static files.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::json;

use super::App;
use super::pages::parse_digest;
use crate::inbox::listing::ShowJson;

/// How often an event stream looks at the copies directory even without a notification
/// (copies written by another process, or removed by hand).
const RECHECK: Duration = Duration::from_secs(2);

fn failed(message: String) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": message }))).into_response()
}

/// `GET /api/inbox`.
pub async fn inbox(State(app): State<Arc<App>>) -> Response {
    match app.reader.load().await {
        Ok(snapshot) => Json(snapshot.inbox.list_json()).into_response(),
        Err(e) => failed(e.to_string()),
    }
}

/// `GET /api/advisory/{digest}`.
pub async fn advisory(State(app): State<Arc<App>>, Path(digest): Path<String>) -> Response {
    let snapshot = match app.reader.load().await {
        Ok(snapshot) => snapshot,
        Err(e) => return failed(e.to_string()),
    };
    match parse_digest(&digest).and_then(|d| snapshot.inbox.get(&d)) {
        Some(item) => Json(ShowJson::of(item)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no verified advisory with that digest" })))
            .into_response(),
    }
}

struct Watch {
    app: Arc<App>,
    changed: tokio::sync::watch::Receiver<u64>,
    last: Option<String>,
    notifications: bool,
}

/// `GET /events`: an `inbox` event with `{"version", "count"}` at once and whenever the
/// inbox changes; ends when the clinic stops.
pub async fn events(State(app): State<Arc<App>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changed = app.changed.clone();
    let watch = Watch { app, changed, last: None, notifications: true };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        loop {
            if watch.last.is_some() {
                let shutdown = watch.app.shutdown.clone();
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    notified = watch.changed.changed(), if watch.notifications => {
                        // The sender is gone (the clinic stopped): keep only the periodic check.
                        watch.notifications = notified.is_ok();
                    }
                    () = tokio::time::sleep(RECHECK) => {}
                }
            }
            let Ok(snapshot) = watch.app.reader.load().await else {
                // Unreadable for now: wait for the next change or check, never spin.
                watch.last.get_or_insert_with(String::new);
                continue;
            };
            if watch.last.as_deref() == Some(snapshot.version.as_str()) {
                continue;
            }
            watch.last = Some(snapshot.version.clone());
            let data = json!({ "version": snapshot.version, "count": snapshot.inbox.items.len() });
            let event = Event::default().event("inbox").data(data.to_string());
            return Some((Ok(event), watch));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The static files, compiled into the binary.
const ASSETS: [(&str, &str, &str); 3] = [
    ("inbox.css", "text/css; charset=utf-8", include_str!("assets/inbox.css")),
    ("print.css", "text/css; charset=utf-8", include_str!("assets/print.css")),
    ("inbox.js", "text/javascript; charset=utf-8", include_str!("assets/inbox.js")),
];

/// `GET /static/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => ([(header::CONTENT_TYPE, *content_type)], *body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
