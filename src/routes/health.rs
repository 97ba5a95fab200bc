//! `/healthz` (the process serves), `/readyz` (every collection folder is writable now) and
//! `/metrics` (Prometheus).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::app::AppState;
use crate::folder_check::probe_write;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready only when a probe file can be written, synced and removed in every collection folder.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    let failures = web::block(move || {
        state
            .storage
            .collections()
            .filter_map(|c| {
                probe_write(&c.dir).err().map(
                    |e| json!({ "collection": c.name, "path": c.dir, "reason": e.to_string() }),
                )
            })
            .collect::<Vec<_>>()
    })
    .await;

    match failures {
        Ok(failures) if failures.is_empty() => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Ok(failures) => {
            log::warn!("not ready: {}", serde_json::Value::from(failures.clone()));
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "not_ready",
                "error": { "code": "not_ready", "message": "a collection folder is not writable" },
                "collections": failures,
            }))
        }
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "error": { "code": "not_ready", "message": e.to_string() } })),
    }
}

/// The metrics, in the OpenMetrics text format that Prometheus scrapes.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = state.metrics.render(state.storage.collections());
    HttpResponse::Ok()
        // NOTE: prometheus-client writes the OpenMetrics text format (`# EOF`, `_total`).
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body)
}
