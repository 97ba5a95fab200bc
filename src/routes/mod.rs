//! The routes, one file per endpoint, and the JSON answers for unknown routes and methods.
//!
//! A read: `read::read` → a whole image comes from `file_cache::FileCache` (small, checked
//! with one `lstat`) or `file_body::FileBody` (larger); anything else (ranges, links, other
//! files) → `Storage::open_for_read` (checked name, no escaping symlink) → `NamedFile`
//! (validators, ranges). Both add the safety headers.
//! An upload: `upload::upload` → `auth::authorize_write` → each file part streamed into a
//! `staging::StagedFile` (size, type, hash) → `staging::commit_all` (fsync, no-replace rename,
//! folder fsync) → 201 with the stored names.
//!
//! Every fixed path is its own resource answering GET and HEAD, so another method gets 405 with
//! `Allow` instead of falling through to the collection routes.

pub mod assets;
pub mod delete;
pub mod health;
pub mod read;
pub mod upload;

use actix_web::{HttpResponse, Responder, web};

use crate::error::ApiError;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // NOTE: the router tries services in order. The page's assets sit under a literal prefix,
    // which costs a string comparison; the busiest route comes next.
    cfg.service(web::scope("/static").service(read_only("/{name}", assets::asset)))
        .service(
            web::resource("/{collection}/{file}")
                .route(web::get().to(read::read))
                .route(web::head().to(read::read))
                .route(web::delete().to(delete::delete))
                .default_service(web::to(|| not_allowed("GET, HEAD, DELETE"))),
        )
        .service(read_only("/healthz", health::healthz))
        .service(read_only("/readyz", health::readyz))
        .service(read_only("/metrics", health::metrics))
        .service(read_only("/openapi.yaml", assets::openapi))
        .service(read_only("/", assets::index))
        .service(
            web::resource(["/{collection}", "/{collection}/"])
                .route(web::post().to(upload::upload))
                .default_service(web::to(no_listing)),
        )
        .default_service(web::to(not_found));
}

/// A fixed path answering GET and HEAD with `handler`, and 405 to anything else.
fn read_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| not_allowed("GET, HEAD")))
}

async fn not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}

/// SECURITY: health photos are private; a collection is never listed.
async fn no_listing() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
