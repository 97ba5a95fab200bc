//! `POST /<collection>`: store every file part of a multipart/form-data body, all or nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::http::header::{self, CONTENT_LENGTH};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;

use crate::app::AppState;
use crate::auth;
use crate::config::MAX_FILES_PER_REQUEST;
use crate::error::ApiError;
use crate::staging::{self, StagedFile, StoredFile, UploadRules};

/// Bytes a form field that is not a file may carry; such fields are read and ignored.
const MAX_TEXT_FIELD_BYTES: usize = 16 * 1024;
/// How many fields that are not files a request may carry.
const MAX_TEXT_FIELDS: usize = 32;

pub async fn upload(
    req: HttpRequest,
    collection: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let metrics = &state.metrics;
    let _in_progress = metrics.upload_started();
    let result = receive_and_store(&req, &collection, payload, &state).await;

    let label = state
        .storage
        .collection(&collection)
        .map_or("-", |c| c.name.as_str());
    match &result {
        Ok(stored) => stored
            .iter()
            .for_each(|f| metrics.upload_stored(label, f.size)),
        Err(e) => metrics.upload_refused(label, e.code()),
    }
    let stored = result?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, stored[0].url.clone()))
        .json(json!({ "files": stored })))
}

/// Authorises, streams every file part to disk, and commits them all; the stored files.
async fn receive_and_store(
    req: &HttpRequest,
    collection: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<StoredFile>, ApiError> {
    let started = Instant::now();

    // Refuse before reading a byte of the body: who is asking, where to, and how much.
    auth::authorize_write(&state.config.token, req)?;
    let collection = state.storage.collection(collection)?;
    let rules = &state.rules;
    refuse_oversized_body(req, rules)?;

    // Stream every file part to a temporary file, within the whole-upload deadline; a refused
    // part drops (and so deletes) them all.
    let deadline = state.config.upload_timeout;
    let multipart = Multipart::new(req.headers(), payload);
    let staged = tokio::time::timeout(deadline, receive_all(multipart, &collection.dir, state))
        .await
        .map_err(|_| ApiError::UploadTimeout {
            secs: deadline.as_secs(),
        })??;

    // Make them durable under their final names, off the async workers; the folder's fsync is
    // shared with the uploads that commit at the same time.
    let folder = state.storage.folder_sync(collection)?.clone();
    let name = collection.name.clone();
    let originals: Vec<String> = staged.iter().map(|f| f.original().to_owned()).collect();
    let stored = web::block(move || staging::commit_all(staged, &folder, &name))
        .await
        .map_err(|e| ApiError::internal("committing an upload", std::io::Error::other(e)))??;

    let millis = started.elapsed().as_millis();
    for (file, original) in stored.iter().zip(&originals) {
        log::info!(
            "stored collection={} name={} size={} sha256={} ms={millis} original={original:?}",
            collection.name,
            file.name,
            file.size,
            file.sha256
        );
    }
    Ok(stored)
}

/// Receives every part of the body: file parts into staged files, other fields skipped.
async fn receive_all(
    mut multipart: Multipart,
    dir: &Path,
    state: &AppState,
) -> Result<Vec<StagedFile>, ApiError> {
    let idle = state.config.body_idle;
    let mut staged: Vec<StagedFile> = Vec::new();
    let mut file_parts = 0;
    let mut text_fields = 0;
    while let Some(field) = next_within(idle, multipart.next()).await? {
        let field = field.map_err(malformed)?;
        let Some(original) = file_name(&field) else {
            text_fields += 1;
            skip_text_field(field, text_fields, idle).await?;
            continue;
        };

        // Blank file inputs count too, so a request cannot carry parts without bound.
        file_parts += 1;
        if file_parts > MAX_FILES_PER_REQUEST {
            return Err(ApiError::TooManyFiles {
                max: MAX_FILES_PER_REQUEST,
            });
        }
        if let Some(file) = receive_file(field, &original, dir, &state.rules, idle).await? {
            staged.push(file);
        }
    }
    if staged.is_empty() {
        return Err(ApiError::NoFile);
    }
    Ok(staged)
}

/// SECURITY: a declared length beyond what the limits could ever accept is refused before the
/// body is read at all.
fn refuse_oversized_body(req: &HttpRequest, rules: &UploadRules) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let ceiling = rules.max_bytes.saturating_mul(MAX_FILES_PER_REQUEST as u64) + 1024 * 1024;
    match declared {
        Some(len) if len > ceiling => Err(ApiError::TooLarge {
            limit: rules.max_bytes,
        }),
        _ => Ok(()),
    }
}

/// Streams one file part to disk. `None` for the empty, nameless part a browser sends for a
/// file input left blank.
async fn receive_file(
    mut field: Field,
    original: &str,
    dir: &std::path::Path,
    rules: &UploadRules,
    idle: Duration,
) -> Result<Option<StagedFile>, ApiError> {
    let mut file = StagedFile::create(dir, original).await?;
    let mut empty = true;
    while let Some(chunk) = next_within(idle, field.next()).await? {
        let chunk = chunk.map_err(malformed)?;
        empty &= chunk.is_empty();
        file.push(chunk, rules).await?;
    }
    if empty && original.is_empty() {
        return Ok(None);
    }
    file.finish(rules).await.map(Some)
}

/// Reads and discards a form field that carries no file, within its limits.
async fn skip_text_field(mut field: Field, count: usize, idle: Duration) -> Result<(), ApiError> {
    if count > MAX_TEXT_FIELDS {
        return Err(ApiError::MalformedMultipart(format!(
            "more than {MAX_TEXT_FIELDS} form fields that are not files"
        )));
    }
    let mut size = 0;
    while let Some(chunk) = next_within(idle, field.next()).await? {
        size += chunk.map_err(malformed)?.len();
        if size > MAX_TEXT_FIELD_BYTES {
            return Err(ApiError::MalformedMultipart(format!(
                "a form field that is not a file is over {MAX_TEXT_FIELD_BYTES} bytes"
            )));
        }
    }
    Ok(())
}

/// The client's file name, when the part carries a file (`filename` or RFC 5987 `filename*`).
fn file_name(field: &Field) -> Option<String> {
    let disposition = field.content_disposition()?;
    disposition.get_filename().map(str::to_owned).or_else(|| {
        disposition
            .get_filename_ext()
            .map(|ext| String::from_utf8_lossy(&ext.value).into_owned())
    })
}

/// Waits for the next item of the body, cutting off a client that stays silent for `idle`.
async fn next_within<F: Future>(idle: Duration, next: F) -> Result<F::Output, ApiError> {
    tokio::time::timeout(idle, next)
        .await
        .map_err(|_| ApiError::BodyTimeout {
            secs: idle.as_secs(),
        })
}

fn malformed(e: MultipartError) -> ApiError {
    let message = match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible => {
            "the request's Content-Type must be multipart/form-data with a boundary".to_owned()
        }
        other => other.to_string(),
    };
    ApiError::MalformedMultipart(message)
}
