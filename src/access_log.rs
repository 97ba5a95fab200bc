//! One access-log line per request: client, method, path, status, bytes and duration.
//!
//! SECURITY: the path is printed escaped (`{:?}`), so a hostile name cannot forge log lines, and
//! no header is logged, so a bearer token never reaches the log. Health probes log at `debug`.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

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

    let response = next.call(req).await?;

    let bytes = match response.response().body().size() {
        BodySize::Sized(n) => n.to_string(),
        _ => "-".to_owned(),
    };
    let level = if path == "/healthz" || path == "/readyz" {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log!(
        target: "botilyx_media::access",
        level,
        "{peer} {method} {path:?} {} {bytes} {:.1}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(response)
}
