//! An upload on its way to disk: streamed into a hidden temporary file in the collection's own
//! folder, checked as it arrives (size, type), then committed all together or not at all.
//!
//! A [`StagedFile`] that is dropped before it is committed (a refused part, a later part of the
//! same request refused, a client that went away) removes its temporary file.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::error::ApiError;
use crate::image_type::{ImageType, SNIFF_LEN, Sniffed};
use crate::naming;
use crate::storage::{rename_no_replace, sync_dir};

/// Bytes gathered before a write is handed to the blocking pool: a few hand-offs per photo
/// instead of one per network chunk, while 64 uploads at once still hold only a few MiB.
const WRITE_BUFFER: usize = 128 * 1024;

/// Stored files are readable by the owner and the group (the pod's fsGroup), nobody else.
const STORED_MODE: u32 = 0o640;

/// What an upload must satisfy.
#[derive(Debug, Clone)]
pub struct UploadRules {
    pub max_bytes: u64,
    pub allowed: Vec<ImageType>,
}

/// A stored file, as reported to the client.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFile {
    pub name: String,
    pub url: String,
    pub size: u64,
    pub content_type: &'static str,
    pub sha256: String,
}

/// One file part being received.
pub struct StagedFile {
    temp_path: PathBuf,
    file: Option<BufWriter<tokio::fs::File>>,
    original: String,
    head: Vec<u8>,
    image_type: Option<ImageType>,
    size: u64,
    hasher: Sha256,
    committed: bool,
}

impl StagedFile {
    /// Opens a new temporary file in `dir` for a part the client named `original`.
    ///
    /// # Errors
    /// The temporary file cannot be created (full disk, read-only or unwritable volume).
    pub async fn create(dir: &Path, original: &str) -> Result<Self, ApiError> {
        let temp_path = dir.join(naming::temp_name());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(STORED_MODE)
            .open(&temp_path)
            .await
            .map_err(|e| ApiError::internal(format!("creating {temp_path:?}"), e))?;
        Ok(StagedFile {
            temp_path,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            original: original.to_owned(),
            head: Vec::with_capacity(SNIFF_LEN),
            image_type: None,
            size: 0,
            hasher: Sha256::new(),
            committed: false,
        })
    }

    /// Appends a chunk: enforces the size limit, checks the type once enough bytes are in, hashes
    /// and writes.
    ///
    /// # Errors
    /// 413 past the limit, 415 for a type that is not allowed, storage errors.
    pub async fn push(&mut self, chunk: &[u8], rules: &UploadRules) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        if self.size > rules.max_bytes {
            return Err(ApiError::TooLarge {
                limit: rules.max_bytes,
            });
        }

        if self.image_type.is_none() {
            let wanted = (SNIFF_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..wanted]);
            if self.head.len() == SNIFF_LEN {
                self.image_type = Some(self.check_type(rules)?);
            }
        }

        self.hasher.update(chunk);
        let file = self.file.as_mut().ok_or_else(closed)?;
        file.write_all(chunk)
            .await
            .map_err(|e| ApiError::internal(format!("writing {:?}", self.temp_path), e))
    }

    /// Ends the part: a short file gets its type checked now; an empty one is refused.
    ///
    /// # Errors
    /// 400 for an empty file, 415 for a type that is not allowed, storage errors.
    pub async fn finish(mut self, rules: &UploadRules) -> Result<Self, ApiError> {
        if self.size == 0 {
            return Err(ApiError::EmptyFile {
                name: self.original.clone(),
            });
        }
        if self.image_type.is_none() {
            self.image_type = Some(self.check_type(rules)?);
        }
        let file = self.file.as_mut().ok_or_else(closed)?;
        file.flush()
            .await
            .map_err(|e| ApiError::internal(format!("writing {:?}", self.temp_path), e))?;
        Ok(self)
    }

    fn check_type(&self, rules: &UploadRules) -> Result<ImageType, ApiError> {
        match Sniffed::from_head(&self.head) {
            Sniffed::Image(t) if rules.allowed.contains(&t) => Ok(t),
            other => Err(ApiError::UnsupportedType {
                detected: other.describe(),
                allowed: rules
                    .allowed
                    .iter()
                    .map(|t| t.config_name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The client's name for this file, for logs.
    pub fn original(&self) -> &str {
        &self.original
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = fs::remove_file(&self.temp_path)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::error!(
                "could not remove temporary upload {:?}: {e}",
                self.temp_path
            );
        }
    }
}

fn closed() -> ApiError {
    ApiError::internal(
        "writing an upload",
        io::Error::other("temporary file already closed"),
    )
}

/// Makes every staged file durable under its final name, or none of them.
///
/// Blocking: run it off the async workers. Each file is fsynced, moved to a fresh name without
/// ever replacing an existing file, and the folder is fsynced once at the end. If any step fails,
/// the files already moved are removed again and every temporary file is deleted.
///
/// # Errors
/// Storage errors (507 for a full disk, 503 for a read-only or unwritable volume).
pub fn commit_all(
    staged: Vec<StagedFile>,
    dir: &Path,
    collection: &str,
) -> Result<Vec<StoredFile>, ApiError> {
    let mut moved: Vec<PathBuf> = Vec::with_capacity(staged.len());
    let result = commit_each(staged, dir, collection, &mut moved).and_then(|stored| {
        sync_dir(dir).map_err(|e| ApiError::internal(format!("syncing {dir:?}"), e))?;
        Ok(stored)
    });

    if result.is_err() {
        for path in &moved {
            if let Err(e) = fs::remove_file(path) {
                log::error!("could not undo partial upload {path:?}: {e}");
            }
        }
        if !moved.is_empty() {
            let _ = sync_dir(dir);
        }
    }
    result
}

fn commit_each(
    staged: Vec<StagedFile>,
    dir: &Path,
    collection: &str,
    moved: &mut Vec<PathBuf>,
) -> Result<Vec<StoredFile>, ApiError> {
    let mut stored = Vec::with_capacity(staged.len());
    for mut file in staged {
        let image_type = file.image_type.ok_or_else(closed)?;
        let handle = file.file.take().ok_or_else(closed)?;

        // NOTE: tokio's File has flushed already (finish); the blocking handle makes fsync direct.
        let handle = handle.into_inner().try_into_std().map_err(|_| closed())?;
        handle
            .sync_all()
            .map_err(|e| ApiError::internal(format!("syncing {:?}", file.temp_path), e))?;
        still_ours(&handle, &file.temp_path)?;

        let name = move_to_fresh_name(&file, dir, collection, image_type)?;
        file.committed = true;
        moved.push(dir.join(&name));

        stored.push(StoredFile {
            url: format!("/{collection}/{name}"),
            name,
            size: file.size,
            content_type: image_type.mime(),
            sha256: format!("{:x}", file.hasher.clone().finalize()),
        });
    }
    Ok(stored)
}

/// SECURITY: the name about to be renamed must still be the file this upload wrote. Someone who
/// can write in the folder could swap it for a link or another file meanwhile; that is refused
/// rather than published under a stored name.
fn still_ours(handle: &fs::File, temp_path: &Path) -> Result<(), ApiError> {
    let written = handle
        .metadata()
        .map_err(|e| ApiError::internal(format!("inspecting {temp_path:?}"), e))?;
    let named = fs::symlink_metadata(temp_path)
        .map_err(|e| ApiError::internal(format!("inspecting {temp_path:?}"), e))?;
    if (written.dev(), written.ino()) == (named.dev(), named.ino()) {
        return Ok(());
    }
    Err(ApiError::internal(
        format!("checking {temp_path:?}"),
        io::Error::other("the temporary file was replaced during the upload"),
    ))
}

/// Renames the temporary file to a new stored name; a taken name (vanishingly rare with ULIDs)
/// gets another.
fn move_to_fresh_name(
    file: &StagedFile,
    dir: &Path,
    collection: &str,
    image_type: ImageType,
) -> Result<String, ApiError> {
    let mut attempts = 0;
    loop {
        let name = naming::stored_name(Some(&file.original), collection, image_type);
        match rename_no_replace(&file.temp_path, &dir.join(&name)) {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
            Err(e) => return Err(ApiError::internal(format!("storing {name:?}"), e)),
        }
    }
}
