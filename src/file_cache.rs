//! Small stored files kept in memory, checked against the disk on every request.
//!
//! A browser opening a medication list asks for dozens of small images, mostly ones it has seen
//! (304s). Opening, reading and formatting each file every time costs several system calls and
//! most of a request's CPU; this cache answers those with one `lstat`, prebuilt headers and a
//! shared body.
//!
//! Never stale: every request compares device, inode, size, modification and change time with
//! the cached entry, so a file replaced, rewritten or deleted by anyone is seen at once. An entry
//! is only made for a file whose times are over two seconds old, so even on a file system with
//! coarse timestamps a later change always shows as a new time.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{EntityTag, HeaderValue, HttpDate};
use actix_web::web::Bytes;

/// Files up to this size are cached.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// The most the cache holds; past it, it starts over.
const MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// How old a file's times must be before it is cached (see the module doc).
const SETTLE_TIME: Duration = Duration::from_secs(2);

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn settled(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let limit = now.saturating_sub(SETTLE_TIME).as_secs() as i64;
        self.mtime.0 < limit && self.ctime.0 < limit
    }
}

/// One cached file: where it is, its stamp, its validators as sent, and its bytes.
#[derive(Debug)]
pub struct Entry {
    collection: String,
    pub stamp: Stamp,
    pub validators: Validators,
    pub body: Bytes,
}

impl Entry {
    /// Reads `file` whole; `meta` is its `fstat`, taken before the read.
    fn load(collection: &str, mut file: File, meta: &Metadata) -> std::io::Result<Entry> {
        let mut body = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut body)?;
        Ok(Entry {
            collection: collection.to_owned(),
            stamp: Stamp::of(meta),
            validators: Validators::of(meta)?,
            body: Bytes::from(body),
        })
    }
}

/// A file version's `ETag` and `Last-Modified`, parsed and as sent.
#[derive(Debug)]
pub struct Validators {
    pub etag_header: HeaderValue,
    pub modified: Option<SystemTime>,
    pub last_modified_header: Option<HeaderValue>,
}

impl Validators {
    pub fn of(meta: &Metadata) -> std::io::Result<Validators> {
        // NOTE: `HttpDate::from` panics on a time before 1970.
        let modified = Some(meta.modified()?).filter(|t| *t >= UNIX_EPOCH);
        let last_modified_header = match modified {
            Some(t) => Some(
                HeaderValue::from_str(&HttpDate::from(t).to_string())
                    .map_err(std::io::Error::other)?,
            ),
            None => None,
        };
        Ok(Validators {
            etag_header: HeaderValue::from_str(&etag_for(meta).to_string())
                .map_err(std::io::Error::other)?,
            modified,
            last_modified_header,
        })
    }
}

/// The strong ETag of a file version. NOTE: the same form actix-files uses, so a validator
/// from either path matches on the other.
fn etag_for(meta: &Metadata) -> EntityTag {
    EntityTag::new_strong(format!(
        "{:x}:{:x}:{:x}:{:x}",
        meta.ino(),
        meta.len(),
        meta.mtime() as u64,
        meta.mtime_nsec()
    ))
}

/// The cache, shared by the workers.
#[derive(Debug, Default)]
pub struct FileCache {
    inner: RwLock<Entries>,
}

/// Keyed by file name alone: stored names are unique, and an entry whose collection differs
/// (an operator's copy of a file under the same name) is a miss that the next load replaces.
#[derive(Debug, Default)]
struct Entries {
    by_name: HashMap<String, Arc<Entry>>,
    bytes: usize,
}

impl FileCache {
    /// The cached entry for `name` in `collection` if it is still the file on disk (`stamp`,
    /// from `lstat`).
    pub fn get(&self, collection: &str, name: &str, stamp: &Stamp) -> Option<Arc<Entry>> {
        let entries = self.inner.read().ok()?;
        entries
            .by_name
            .get(name)
            .filter(|e| e.stamp == *stamp && e.collection == collection)
            .cloned()
    }

    /// Loads an opened small file and caches it when it is settled and still the file that
    /// `lstat` saw; returns the entry either way, or `None` when the file changed meanwhile.
    pub fn load(
        &self,
        collection: &str,
        name: &str,
        stamp: &Stamp,
        file: File,
    ) -> Option<Arc<Entry>> {
        let meta = file.metadata().ok()?;
        if Stamp::of(&meta) != *stamp {
            return None;
        }
        let entry = Arc::new(Entry::load(collection, file, &meta).ok()?);
        if stamp.settled()
            && let Ok(mut entries) = self.inner.write()
        {
            if entries.bytes + entry.body.len() > MAX_TOTAL_BYTES {
                *entries = Entries::default();
            }
            entries.bytes += entry.body.len();
            if let Some(old) = entries.by_name.insert(name.to_owned(), Arc::clone(&entry)) {
                entries.bytes -= old.body.len();
            }
        }
        Some(entry)
    }
}
