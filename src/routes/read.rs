//! `GET` and `HEAD /<collection>/<file>`: send a stored file with validators and ranges.
//!
//! Whole-file requests for small images are answered from the [`FileCache`], checked against
//! the disk first; everything else (ranges, `If-Match`, large files, non-images) goes through
//! `NamedFile`. Both give the same ETag, so validators work across the two.
//!
//! [`FileCache`]: crate::file_cache::FileCache

use std::io;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use actix_files::NamedFile;
use actix_web::http::StatusCode;
use actix_web::http::header::{
    self, ContentDisposition, DispositionParam, DispositionType, HeaderMap, HeaderValue,
    IfModifiedSince, IfNoneMatch,
};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::error::ApiError;
use crate::file_cache::{self, Entry, Stamp};
use crate::image_type::{ImageType, served_content_type};
use crate::naming;
use crate::storage::Collection;

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
    let image_type = served_content_type(&name);

    // The common case: a whole small image, perhaps revalidated.
    if let Some(image_type) = image_type
        && whole_file_request(req.headers())
        && let Some(entry) = cached(&state, collection, &name)?
    {
        return Ok(from_cache(&req, &entry, image_type));
    }

    let (file, path) = state.storage.open_for_read(collection, &name)?;
    let named = NamedFile::from_file(file, &path)
        .map_err(|e| ApiError::internal(format!("reading {path:?}"), e))?
        .read_mode_threshold(INLINE_READ_BYTES);

    // SECURITY: only image extensions are served as images; anything else the old app may have
    // left is an opaque download, never HTML or SVG that a browser would run.
    let named = match image_type {
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
    add_headers(&mut response);
    Ok(response)
}

/// Whether the request wants the whole file, with no condition but `If-None-Match` or
/// `If-Modified-Since` (which the cache answers itself).
fn whole_file_request(headers: &HeaderMap) -> bool {
    ![
        header::RANGE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ]
    .iter()
    .any(|h| headers.contains_key(h))
}

/// The cache entry of a small regular file, loading it on a miss; `None` sends the request
/// down the ordinary path (links, large files, anything unusual).
fn cached(
    state: &AppState,
    collection: &Collection,
    name: &str,
) -> Result<Option<Arc<Entry>>, ApiError> {
    naming::check_requested_name(name)?;
    let path = collection.dir.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ApiError::FileNotFound),
        Err(_) => return Ok(None),
    };
    if !meta.is_file() || meta.len() > file_cache::MAX_FILE_BYTES {
        return Ok(None);
    }

    let stamp = Stamp::of(&meta);
    if let Some(entry) = state.cache.get(&path, &stamp) {
        return Ok(Some(entry));
    }
    let (file, _) = state.storage.open_for_read(collection, name)?;
    Ok(state.cache.load(&path, &stamp, file))
}

/// 200 with the cached body, or 304 when the client's validator still matches.
fn from_cache(req: &HttpRequest, entry: &Entry, image_type: ImageType) -> HttpResponse {
    let not_modified = match req.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(items)) => items.iter().any(|tag| tag.weak_eq(&entry.etag)),
        None => req
            .get_header::<IfModifiedSince>()
            .is_some_and(|IfModifiedSince(since)| {
                let seconds = |t: std::time::SystemTime| {
                    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
                };
                seconds(entry.modified) <= seconds(since.into())
            }),
    };

    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_TYPE, image_type.mime()))
        .insert_header((header::ETAG, entry.etag_header.clone()))
        .insert_header((header::LAST_MODIFIED, entry.last_modified_header.clone()))
        .insert_header((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
    let mut response = if not_modified {
        response.finish()
    } else {
        response.body(entry.body.clone())
    };
    add_headers(&mut response);
    response
}

/// Caching for successful answers; `nosniff` and the sandboxing policy on every answer.
fn add_headers(response: &mut HttpResponse) {
    let status = response.status();
    let headers = response.headers_mut();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
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
}
