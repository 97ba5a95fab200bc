//! `GET` and `HEAD /<collection>/<file>`: stream a stored file with validators and ranges.

use actix_files::NamedFile;
use actix_web::http::StatusCode;
use actix_web::http::header::{
    self, ContentDisposition, DispositionParam, DispositionType, HeaderValue,
};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::error::ApiError;
use crate::image_type::served_content_type;

/// Files at or below this size are read on the worker thread: a page-cache hit costs less than
/// handing the read to the blocking pool.
const INLINE_READ_BYTES: u64 = 64 * 1024;

/// Stored names are never reused, so a stored file may be cached for good.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// SECURITY: a photo opened directly in the browser can run nothing and load nothing.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox";

pub async fn read(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (collection, name) = path.into_inner();
    let collection = state.storage.collection(&collection)?;
    let (file, path) = state.storage.open_for_read(collection, &name)?;

    let named = NamedFile::from_file(file, &path)
        .map_err(|e| ApiError::internal(format!("reading {path:?}"), e))?
        .read_mode_threshold(INLINE_READ_BYTES);

    // SECURITY: only image extensions are served as images; anything else the old app may have
    // left is an opaque download, never HTML or SVG that a browser would run.
    let named = match served_content_type(&name) {
        Some(image_type) => named
            .set_content_type(
                image_type
                    .mime()
                    .parse()
                    .unwrap_or(mime::APPLICATION_OCTET_STREAM),
            )
            .disable_content_disposition(),
        None => named
            .set_content_type(mime::APPLICATION_OCTET_STREAM)
            .set_content_disposition(ContentDisposition {
                disposition: DispositionType::Attachment,
                parameters: vec![DispositionParam::Filename(name.clone())],
            }),
    };

    let size = named.metadata().len();
    let mut response = named.into_response(&req);
    match response.status() {
        StatusCode::RANGE_NOT_SATISFIABLE => return Err(ApiError::RangeNotSatisfiable { size }),
        StatusCode::PRECONDITION_FAILED => return Err(ApiError::PreconditionFailed),
        StatusCode::BAD_REQUEST => return Err(ApiError::InvalidRange),
        _ => {}
    }
    let cacheable = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
    let headers = response.headers_mut();
    if cacheable {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    Ok(response)
}
