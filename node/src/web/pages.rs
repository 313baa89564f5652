//! The HTML pages: the list (`/`), its live fragment (`/fragment/list`), one advisory
//! (`/advisory/{digest}`), its print view, and the error pages.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use kairan_protocol::Digest;

use super::App;
use super::detail::{AdvisoryPage, PrintPage};
use super::snapshot::Snapshot;
use super::view::{Row, area};
use crate::inbox::listing::{Item, Refused};
use crate::inbox::state::Standing;

/// `/`: every advisory, newest first.
#[derive(Debug, Template)]
#[template(path = "list.html")]
struct ListPage<'a> {
    clinic: &'a str,
    version: &'a str,
    area: String,
    district: &'a str,
    rows: Vec<Row>,
    current: usize,
    refused: &'a [Refused],
}

/// `/fragment/list`: the part of the list page that changes.
#[derive(Debug, Template)]
#[template(path = "rows.html")]
struct RowsFragment<'a> {
    rows: Vec<Row>,
    current: usize,
    refused: &'a [Refused],
}

/// An error page.
#[derive(Debug, Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    clinic: &'a str,
    version: &'a str,
    heading: &'a str,
    message: String,
}

/// Renders a template as HTML (500 if rendering fails).
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering failed: {e}")).into_response(),
    }
}

fn error(app: &App, status: StatusCode, heading: &str, message: String) -> Response {
    let page = ErrorPage { clinic: &app.config.clinic_id, version: "", heading, message };
    (status, render(&page)).into_response()
}

/// The snapshot, or the error page saying why the inbox cannot be read.
async fn snapshot(app: &Arc<App>) -> Result<Arc<Snapshot>, Response> {
    app.reader.load().await.map_err(|e| {
        error(
            app,
            StatusCode::INTERNAL_SERVER_ERROR,
            "受信箱を読めません / Cannot read the inbox",
            e.to_string(),
        )
    })
}

fn rows(snapshot: &Snapshot) -> (Vec<Row>, usize) {
    let inbox = &snapshot.inbox;
    let rows: Vec<Row> = inbox.items.iter().rev().map(|item| Row::of(inbox, item)).collect();
    let current = inbox.items.iter().filter(|i| i.state.standing == Standing::Current).count();
    (rows, current)
}

/// `GET /`.
pub async fn list(State(app): State<Arc<App>>) -> Response {
    let snapshot = match snapshot(&app).await {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    let (rows, current) = rows(&snapshot);
    render(&ListPage {
        clinic: &app.config.clinic_id,
        version: &snapshot.version,
        area: area(&app.config.scope),
        district: &app.config.district,
        rows,
        current,
        refused: &snapshot.inbox.refused,
    })
}

/// `GET /fragment/list`: the rows, with the version in `X-Inbox-Version`.
pub async fn list_fragment(State(app): State<Arc<App>>) -> Response {
    let snapshot = match snapshot(&app).await {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    let (rows, current) = rows(&snapshot);
    let mut response = render(&RowsFragment { rows, current, refused: &snapshot.inbox.refused });
    if let Ok(version) = HeaderValue::from_str(&snapshot.version) {
        response.headers_mut().insert("x-inbox-version", version);
    }
    response
}

/// The digest of a path segment: 64 hex digits, with or without `sha256:`.
pub fn parse_digest(text: &str) -> Option<Digest> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Renders the page of the verified item with the path's digest, or the 404 page.
async fn with_item(
    app: &Arc<App>,
    digest: &str,
    page: impl FnOnce(&Snapshot, &Item) -> Response,
) -> Response {
    let snapshot = match snapshot(app).await {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    match parse_digest(digest).and_then(|digest| snapshot.inbox.get(&digest)) {
        Some(item) => page(&snapshot, item),
        None => error(
            app,
            StatusCode::NOT_FOUND,
            "見つかりません / Not found",
            "この受信箱に、検証済みのその通知はありません。 / No verified advisory with that digest in this inbox."
                .into(),
        ),
    }
}

/// `GET /advisory/{digest}`.
pub async fn advisory(State(app): State<Arc<App>>, Path(digest): Path<String>) -> Response {
    with_item(&app, &digest, |snapshot, item| {
        render(&AdvisoryPage::of(&app.config, &snapshot.version, &snapshot.inbox, item))
    })
    .await
}

/// `GET /advisory/{digest}/print`.
pub async fn print(State(app): State<Arc<App>>, Path(digest): Path<String>) -> Response {
    with_item(&app, &digest, |snapshot, item| render(&PrintPage::of(&app.config, &snapshot.inbox, item)))
        .await
}

/// Anything else: 404.
pub async fn not_found(State(app): State<Arc<App>>) -> Response {
    error(
        &app,
        StatusCode::NOT_FOUND,
        "見つかりません / Not found",
        "そのページはありません。 / There is no such page.".into(),
    )
}
