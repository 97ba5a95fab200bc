//! The routes, one file per endpoint, and the JSON answers for unknown routes and methods.
//!
//! A read: `read::read` → `Storage::open_for_read` (checked name, no escaping symlink) →
//! `NamedFile` (validators, ranges) → safety headers.
//! An upload: `upload::upload` → `auth::authorize_write` → each file part streamed into a
//! `staging::StagedFile` (size, type, hash) → `staging::commit_all` (fsync, no-replace rename,
//! folder fsync) → 201 with the stored names.

pub mod assets;
pub mod delete;
pub mod health;
pub mod read;
pub mod upload;

use actix_web::web;

use crate::error::ApiError;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/healthz", web::head().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/readyz", web::head().to(health::readyz))
        .route("/", web::get().to(assets::index))
        .route("/static/{name}", web::get().to(assets::asset))
        .route("/openapi.yaml", web::get().to(assets::openapi))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::resource("/{collection}")
                .route(web::post().to(upload::upload))
                .default_service(web::to(no_listing)),
        )
        .service(
            web::resource("/{collection}/")
                .route(web::post().to(upload::upload))
                .default_service(web::to(no_listing)),
        )
        .service(
            web::resource("/{collection}/{file}")
                .route(web::get().to(read::read))
                .route(web::head().to(read::read))
                .route(web::delete().to(delete::delete))
                .default_service(web::to(file_method_not_allowed)),
        )
        .default_service(web::to(not_found));
}

/// SECURITY: health photos are private; a collection is never listed.
async fn no_listing() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

async fn file_method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        allow: "GET, HEAD, DELETE",
    })
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
