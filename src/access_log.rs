//! One access-log line and the request metrics per request: client, method, path, status,
//! bytes and duration.
//!
//! SECURITY: the path is printed escaped (`{:?}`), so a hostile name cannot forge log lines, and
//! no header is logged, so a bearer token never reaches the log. Health probes log at `debug`.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::app::AppState;

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let state = req.app_data::<web::Data<AppState>>().cloned();

    let response = next.call(req).await?;

    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let body_size = match response.response().body().size() {
        BodySize::Sized(n) => Some(n),
        _ => None,
    };
    if let Some(state) = state {
        let collection = collection_label(&state, &path);
        state
            .metrics
            .observe_request(collection, &method, status, body_size.unwrap_or(0), seconds);
    }

    let bytes = body_size.map_or("-".to_owned(), |n| n.to_string());
    let level = if path == "/healthz" || path == "/readyz" {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log!(
        target: "botilyx_media::access",
        level,
        "{peer} {method} {path:?} {status} {bytes} {:.1}ms",
        seconds * 1000.0
    );
    Ok(response)
}

/// The configured collection a path is in, or `-`: metric labels stay a bounded set.
fn collection_label<'a>(state: &'a AppState, path: &str) -> &'a str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    state
        .storage
        .collection(first)
        .map_or("-", |c| c.name.as_str())
}
