//! `DELETE /<collection>/<file>`: remove a stored file.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::auth;
use crate::error::ApiError;

pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorize_write(&state.config.token, &req)?;
    let (collection, name) = path.into_inner();

    let state = state.into_inner();
    let collection_name = collection.clone();
    let removed_name = name.clone();
    web::block(move || {
        let collection = state.storage.collection(&collection)?;
        state.storage.delete(collection, &name)
    })
    .await
    .map_err(|e| ApiError::internal("deleting a file", std::io::Error::other(e)))??;

    log::info!("deleted collection={collection_name} name={removed_name:?}");
    Ok(HttpResponse::NoContent().finish())
}
