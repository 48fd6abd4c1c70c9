//! The sleep page (`ttl.sleepAfter`): a sleeping preview's ingress sends visitors to
//! `GET /asleep/<preview>?sig=…`, which says so and offers a button; `POST /wake/<preview>?sig=…`
//! records the wake in the spec (`requested.wokenAt`), and the controller scales the services
//! back up. The signature is per preview (HMAC with `PREVIEWD_WAKE_KEY`): the link wakes that
//! preview and nothing else, and no other preview's name can be guessed into one.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use kube::api::{Api, Patch, PatchParams};

use crate::crd::PreviewEnvironment;

#[derive(Clone)]
struct Waker {
    client: kube::Client,
    key: Arc<Vec<u8>>,
}

#[derive(serde::Deserialize)]
struct Signed {
    #[serde(default)]
    sig: String,
}

/// The routes, served beside `/healthz` on Previewd's port.
pub fn router(client: kube::Client, key: Vec<u8>) -> Router {
    Router::new()
        .route("/asleep/{preview}", get(page))
        .route("/wake/{preview}", post(wake))
        .with_state(Waker { client, key: Arc::new(key) })
}

fn refused() -> Response {
    (StatusCode::FORBIDDEN, "This link is not valid for this preview.").into_response()
}

/// Text for HTML: the preview name is a DNS label, but nothing goes into the page unescaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn page(State(w): State<Waker>, Path(preview): Path<String>, Query(q): Query<Signed>) -> Response {
    if !crate::sleep::verify(&w.key, &preview, &q.sig) {
        return refused();
    }
    let Ok(Some(pe)) = Api::<PreviewEnvironment>::all(w.client.clone()).get_opt(&preview).await else {
        return (StatusCode::NOT_FOUND, "This preview is gone.").into_response();
    };
    let since = pe.status.as_ref().and_then(|s| s.asleep_since).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
    let what = format!("{}#{}", pe.spec.repository, pe.spec.pr_number);
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Preview asleep</title></head>\
         <body style=\"font-family: sans-serif; max-width: 40em; margin: 4em auto\">\
         <h1>😴 This preview is asleep</h1>\
         <p>The preview of {} has had no activity{}, so its services were scaled to zero. Its data and \
         URL are kept.</p>\
         <form method=\"post\" action=\"/wake/{}?sig={}\"><button type=\"submit\">Wake it up</button></form>\
         <p>It takes about a minute to start. A push to the pull request, or a <code>/preview wake</code> \
         comment, wakes it too.</p></body></html>",
        escape(&what),
        since.map(|s| format!(" since {}", escape(&s))).unwrap_or_default(),
        escape(&preview),
        escape(&q.sig),
    ))
    .into_response()
}

async fn wake(State(w): State<Waker>, Path(preview): Path<String>, Query(q): Query<Signed>) -> Response {
    if !crate::sleep::verify(&w.key, &preview, &q.sig) {
        return refused();
    }
    let api = Api::<PreviewEnvironment>::all(w.client.clone());
    let now = chrono::Utc::now();
    let patch = serde_json::json!({"spec": {"requested": {"wokenAt": now}}});
    match api.patch(&preview, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(pe) => {
            tracing::info!(preview = %preview, "woken from its sleep page");
            let url = pe.status.and_then(|s| s.url).unwrap_or_default();
            Html(format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"45; url={0}\">\
                 <title>Waking up</title></head><body style=\"font-family: sans-serif; max-width: 40em; margin: 4em auto\">\
                 <h1>Waking up…</h1><p>The services are starting. This page opens <a href=\"{0}\">{0}</a> in a moment.</p>\
                 </body></html>",
                escape(&url)
            ))
            .into_response()
        }
        Err(kube::Error::Api(e)) if e.code == 404 => (StatusCode::NOT_FOUND, "This preview is gone.").into_response(),
        Err(err) => {
            tracing::warn!(preview = %preview, error = %err, "could not wake the preview");
            (StatusCode::SERVICE_UNAVAILABLE, "Could not wake the preview; try again in a moment.").into_response()
        }
    }
}
