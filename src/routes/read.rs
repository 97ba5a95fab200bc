//! `GET` and `HEAD /<collection>/<file>`: send a stored file with validators and ranges.
//!
//! A whole-file request for an image (no `Range`, no `If-Match`), the browser's usual request,
//! takes the short path: a small file is answered from the [`FileCache`], checked against the
//! disk first, and a larger one is streamed by [`FileBody`]. Everything else (ranges,
//! `If-Match`, links, files that are not images) goes through `NamedFile`. Both paths give the
//! same validators, so a client may mix them.
//!
//! [`FileCache`]: crate::file_cache::FileCache
//! [`FileBody`]: crate::file_body::FileBody

use std::fs::{File, Metadata};
use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_files::NamedFile;
use actix_web::body::{BoxBody, SizedStream};
use actix_web::http::StatusCode;
use actix_web::http::header::{
    self, ContentDisposition, DispositionParam, DispositionType, HeaderMap, HeaderValue,
    IfModifiedSince,
};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::error::ApiError;
use crate::file_body::FileBody;
use crate::file_cache::{self, Entry, Stamp, Validators};
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

    // The common case: a whole image, perhaps revalidated.
    if let Some(image_type) = image_type
        && whole_file_request(req.headers())
    {
        match open_whole(&state, collection, &name)? {
            Whole::Cached(entry) => return Ok(from_cache(&req, &entry, image_type)),
            Whole::Large(file, meta) => return whole_file(&req, file, &meta, image_type),
            Whole::Other => {}
        }
    }

    let (file, path, _) = state.storage.open_for_read(collection, &name)?;
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

/// How a whole-file request for an image is answered.
enum Whole {
    /// A small file, from the cache.
    Cached(Arc<Entry>),
    /// A larger regular file, opened, with its `fstat`.
    Large(File, Metadata),
    /// Anything unusual (a link, a file changing under us): the ordinary path.
    Other,
}

/// Looks the file up with one `lstat`: a small file comes from the cache (loaded on a miss), a
/// larger one is opened.
fn open_whole(state: &AppState, collection: &Collection, name: &str) -> Result<Whole, ApiError> {
    naming::check_requested_name(name)?;
    let path = collection.dir.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ApiError::FileNotFound),
        Err(_) => return Ok(Whole::Other),
    };
    if !meta.is_file() {
        return Ok(Whole::Other);
    }
    if meta.len() > file_cache::MAX_FILE_BYTES {
        let (file, _, meta) = state.storage.open_for_read(collection, name)?;
        return Ok(Whole::Large(file, meta));
    }

    let stamp = Stamp::of(&meta);
    if let Some(entry) = state.cache.get(&collection.name, name, &stamp) {
        return Ok(Whole::Cached(entry));
    }
    let (file, _, _) = state.storage.open_for_read(collection, name)?;
    Ok(state
        .cache
        .load(&collection.name, name, &stamp, file)
        .map_or(Whole::Other, Whole::Cached))
}

/// 200 with the cached body, or 304 when the client's validator still matches.
fn from_cache(req: &HttpRequest, entry: &Entry, image_type: ImageType) -> HttpResponse {
    image_response(req, &entry.validators, image_type, || {
        BoxBody::new(entry.body.clone())
    })
}

/// 200 streaming a larger file, or 304 when the client's validator still matches.
fn whole_file(
    req: &HttpRequest,
    file: File,
    meta: &Metadata,
    image_type: ImageType,
) -> Result<HttpResponse, ApiError> {
    let validators = Validators::of(meta)
        .map_err(|e| ApiError::internal("reading a file's modification time", e))?;
    Ok(image_response(req, &validators, image_type, || {
        BoxBody::new(SizedStream::new(
            meta.len(),
            FileBody::new(file, meta.len()),
        ))
    }))
}

/// Whether the client's copy is current: `If-None-Match` is `*` or lists this version (weak
/// comparison, as RFC 9110 asks for this header), or, without it, `If-Modified-Since` is not
/// older than a known modification time. A `*` inside a list is invalid and matches nothing, as
/// on the `NamedFile` path.
fn not_modified(req: &HttpRequest, etag: &HeaderValue, modified: Option<SystemTime>) -> bool {
    let mut listed = req.headers().get_all(header::IF_NONE_MATCH).peekable();
    if listed.peek().is_some() {
        // NOTE: compared as bytes: a typed parse of the list costs more than the rest of a 304.
        return listed.any(|value| {
            let value = value.as_bytes().trim_ascii();
            value == b"*"
                || value.split(|&b| b == b',').any(|tag| {
                    let tag = tag.trim_ascii();
                    tag.strip_prefix(b"W/").unwrap_or(tag) == etag.as_bytes()
                })
        });
    }
    let Some(modified) = modified else {
        return false;
    };
    req.get_header::<IfModifiedSince>()
        .is_some_and(|IfModifiedSince(since)| {
            let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            seconds(modified) <= seconds(since.into())
        })
}

/// An image answer with its validators and the safety headers: 304 when the client's copy is
/// current, otherwise 200 with `body()`.
fn image_response(
    req: &HttpRequest,
    validators: &Validators,
    image_type: ImageType,
    body: impl FnOnce() -> BoxBody,
) -> HttpResponse {
    let (status, body) = if not_modified(req, &validators.etag_header, validators.modified) {
        (StatusCode::NOT_MODIFIED, BoxBody::new(()))
    } else {
        (StatusCode::OK, body())
    };
    let mut response = HttpResponse::with_body(status, body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(image_type.mime()),
    );
    headers.insert(header::ETAG, validators.etag_header.clone());
    if let Some(last_modified) = &validators.last_modified_header {
        headers.insert(header::LAST_MODIFIED, last_modified.clone());
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
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
