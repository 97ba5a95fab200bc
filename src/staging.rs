//! An upload on its way to disk: streamed into a hidden temporary file in the collection's own
//! folder, checked as it arrives (size, type), then committed all together or not at all.
//!
//! The chunks are kept as the multipart parser hands them over, without copying, until about
//! [`WRITE_BATCH`] bytes are pending; then one hand-off to the blocking pool writes them all with
//! vectored writes into a plain `std::fs::File` and gives the file back. A photo thus costs a few
//! hand-offs instead of one per buffer, and its bytes are not copied again on the way to the
//! kernel. Nothing is written before the file's first bytes have been recognised as an allowed
//! type, and nothing past the size limit is ever accepted.
//!
//! A [`StagedFile`] that is dropped before it is committed (a refused part, a later part of the
//! same request refused, a client that went away) removes its temporary file.

use std::fs;
use std::io::{self, IoSlice, Write};
use std::mem;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use actix_web::web::{self, Bytes};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::folder_sync::FolderSync;
use crate::image_type::{ImageType, SNIFF_LEN, Sniffed};
use crate::naming;
use crate::storage::rename_no_replace;

/// Bytes gathered before they are handed to the blocking pool in one write. The pending chunks
/// are the memory an upload holds, so 64 uploads at once hold at most 64 times this (plus one
/// network chunk each).
///
/// NOTE: larger batches would save a hand-off or two per photo, but the memory bound above
/// grows with them, and a client that stalls keeps its pending bytes off the disk until it
/// sends more (or finishes).
pub const WRITE_BATCH: usize = 512 * 1024;

/// Chunks gathered before a write even when they are tiny: one vectored write takes at most
/// this many (Linux's `IOV_MAX`), and the list itself stays small.
const MAX_PENDING_CHUNKS: usize = 1024;

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
    /// `None` only while a write has it in the blocking pool, or when the pool failed to give
    /// it back.
    file: Option<fs::File>,
    /// Received, hashed and checked, not yet written; in order.
    pending: Vec<Bytes>,
    pending_bytes: usize,
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
        let original = original.to_owned();
        // NOTE: the staged file is made in the pool, so when the client has gone by the time the
        // file exists, dropping the unclaimed result removes the file again.
        in_pool(move || {
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(STORED_MODE)
                .open(&temp_path)
                .map_err(|e| ApiError::internal(format!("creating {temp_path:?}"), e))?;
            Ok(StagedFile {
                temp_path,
                file: Some(file),
                pending: Vec::new(),
                pending_bytes: 0,
                original,
                head: Vec::with_capacity(SNIFF_LEN),
                image_type: None,
                size: 0,
                hasher: Sha256::new(),
                committed: false,
            })
        })
        .await?
    }

    /// Appends a chunk: enforces the size limit, checks the type once enough bytes are in, hashes,
    /// and writes once a batch is pending.
    ///
    /// # Errors
    /// 413 past the limit, 415 for a type that is not allowed, storage errors.
    pub async fn push(&mut self, chunk: Bytes, rules: &UploadRules) -> Result<(), ApiError> {
        if chunk.is_empty() {
            return Ok(());
        }
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

        self.hasher.update(&chunk);
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);

        // Nothing is written before the type is known; a short file's is checked in finish().
        let batch_full =
            self.pending_bytes >= WRITE_BATCH || self.pending.len() >= MAX_PENDING_CHUNKS;
        if batch_full && self.image_type.is_some() {
            self.write_pending().await?;
        }
        Ok(())
    }

    /// Ends the part: a short file gets its type checked now; an empty one is refused. What is
    /// still pending is written.
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
        if !self.pending.is_empty() {
            self.write_pending().await?;
        }
        self.pending = Vec::new();
        Ok(self)
    }

    /// Writes every pending chunk in one hand-off to the blocking pool, which gives the file (and
    /// the emptied list, to reuse) back.
    async fn write_pending(&mut self) -> Result<(), ApiError> {
        let mut file = self.file.take().ok_or_else(closed)?;
        let mut chunks = mem::take(&mut self.pending);
        self.pending_bytes = 0;

        let (file, chunks, written) = in_pool(move || {
            let written = write_chunks(&mut file, &chunks);
            // Frees the buffers as soon as their bytes are in the page cache.
            chunks.clear();
            (file, chunks, written)
        })
        .await?;

        self.file = Some(file);
        self.pending = chunks;
        written.map_err(|e| ApiError::internal(format!("writing {:?}", self.temp_path), e))
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

/// Runs blocking file-system work on actix's blocking pool.
async fn in_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    web::block(work).await.map_err(|e| {
        ApiError::internal(
            "handing file work to the blocking pool",
            io::Error::other(e),
        )
    })
}

/// Writes `chunks` in order, with as few system calls as the kernel allows.
fn write_chunks(file: &mut fs::File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes every staged file durable under its final name, or none of them.
///
/// Blocking: run it off the async workers. Each file is fsynced, moved to a fresh name without
/// ever replacing an existing file, and then the folder is fsynced, shared with the uploads that
/// finish at the same time (see [`FolderSync`]). If any step fails, the files already moved are
/// removed again and every temporary file is deleted.
///
/// # Errors
/// Storage errors (507 for a full disk, 503 for a read-only or unwritable volume).
pub fn commit_all(
    staged: Vec<StagedFile>,
    folder: &FolderSync,
    collection: &str,
) -> Result<Vec<StoredFile>, ApiError> {
    let dir = folder.dir();
    let mut moved: Vec<PathBuf> = Vec::with_capacity(staged.len());
    let result = commit_each(staged, dir, collection, &mut moved).and_then(|stored| {
        folder
            .sync()
            .map_err(|e| ApiError::internal(format!("syncing {dir:?}"), e))?;
        Ok(stored)
    });

    if result.is_err() {
        for path in &moved {
            if let Err(e) = fs::remove_file(path) {
                log::error!("could not undo partial upload {path:?}: {e}");
            }
        }
        if !moved.is_empty() {
            let _ = folder.sync();
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
        let mut handle = file.file.take().ok_or_else(closed)?;

        // NOTE: finish() has written everything already. Should a caller ever skip it, what is
        // left pending still lands before the fsync, so no file is published short.
        write_chunks(&mut handle, &mem::take(&mut file.pending))
            .map_err(|e| ApiError::internal(format!("writing {:?}", file.temp_path), e))?;
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
