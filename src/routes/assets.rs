//! The upload page (`/`, `/static/*`) and the API description (`/openapi.yaml`), embedded in
//! the binary so a container serves them with no extra files.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// SECURITY: the page runs only its own script and styles (no inline code), talks only to this
/// server, and cannot be framed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// An embedded file: its path under `/static/`, its content type and its bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/style.css"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../static/index.html");
const OPENAPI: &[u8] = include_bytes!("../../openapi.yaml");

pub async fn index() -> HttpResponse {
    embedded("text/html; charset=utf-8", INDEX)
}

pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|(path, _, _)| *path == name.as_str())
        .map(|(_, content_type, bytes)| embedded(content_type, bytes))
        .ok_or(ApiError::RouteNotFound)
}

pub async fn openapi() -> HttpResponse {
    embedded("application/yaml", OPENAPI)
}

fn embedded(content_type: &'static str, bytes: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .body(bytes)
}
