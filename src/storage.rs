//! The data folder: one sub-folder per collection, and every file-system step that reads,
//! commits or removes a stored file.
//!
//! Durability rule: a file becomes visible under its final name only after its bytes are
//! fsynced, it never replaces an existing file, and the folder is fsynced before anyone is told
//! it is stored. The folder fsyncs are shared by changes that finish together
//! ([`FolderSync`]).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags, renameat2};

use crate::error::ApiError;
use crate::folder_sync::FolderSync;
use crate::naming;

/// One collection: a name in the URL and a folder on the volume.
#[derive(Debug, Clone)]
pub struct Collection {
    pub name: String,
    pub dir: PathBuf,
}

/// The data folder and its collections.
#[derive(Debug)]
pub struct Storage {
    /// In the configured order; a handful at most, so a scan beats hashing.
    collections: Vec<Collection>,
    /// One per collection, in the same order: every upload and removal in a folder shares its
    /// fsyncs. Built once with the server, so concurrent requests meet here.
    folders: Vec<Arc<FolderSync>>,
}

impl Storage {
    /// Describes the collections under `data_dir`; touches nothing on disk.
    pub fn new(data_dir: &Path, names: &[String]) -> Self {
        let collections: Vec<Collection> = names
            .iter()
            .map(|name| Collection {
                name: name.clone(),
                dir: data_dir.join(name),
            })
            .collect();
        let folders = collections
            .iter()
            .map(|c| Arc::new(FolderSync::new(c.dir.clone())))
            .collect();
        Storage {
            collections,
            folders,
        }
    }

    /// The collection called `name`.
    ///
    /// # Errors
    /// 404 when there is none.
    pub fn collection(&self, name: &str) -> Result<&Collection, ApiError> {
        self.collections
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ApiError::UnknownCollection(name.to_owned()))
    }

    /// Every collection, in the order they were configured.
    pub fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.collections.iter()
    }

    /// The shared fsync of `collection`'s folder.
    ///
    /// # Errors
    /// 404 when `collection` is not one of this storage's.
    pub fn folder_sync(&self, collection: &Collection) -> Result<&Arc<FolderSync>, ApiError> {
        self.collections
            .iter()
            .position(|c| c.name == collection.name)
            .map(|i| &self.folders[i])
            .ok_or_else(|| ApiError::UnknownCollection(collection.name.clone()))
    }

    /// Opens a stored file for reading; the file, its path and its `fstat`.
    ///
    /// SECURITY: the name is one checked component, and a symbolic link is followed only to a
    /// visible file directly inside a collection folder (see `open_link`).
    ///
    /// # Errors
    /// 400/404 for names that cannot be served, 404 for a missing or non-regular file.
    pub fn open_for_read(
        &self,
        collection: &Collection,
        name: &str,
    ) -> Result<(File, PathBuf, Metadata), ApiError> {
        naming::check_requested_name(name)?;
        let path = collection.dir.join(name);

        let file = match open_no_follow(&path) {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => self.open_link(&path)?,
            Err(e) if is_not_found(&e) => return Err(ApiError::FileNotFound),
            Err(e) => return Err(ApiError::internal(format!("opening {path:?}"), e)),
        };

        let metadata = file
            .metadata()
            .map_err(|e| ApiError::internal(format!("reading metadata of {path:?}"), e))?;
        if !metadata.is_file() {
            return Err(ApiError::FileNotFound);
        }
        Ok((file, path, metadata))
    }

    /// Follows a symbolic link only to a file that could be served by its own name: a visible
    /// file directly inside one of the collection folders.
    ///
    /// SECURITY: this keeps links from reaching outside the data folder, and also from exposing
    /// hidden files, temporary uploads or files at the data folder's top.
    fn open_link(&self, link: &Path) -> Result<File, ApiError> {
        let target = fs::canonicalize(link).map_err(|_| ApiError::FileNotFound)?;
        let visible = target
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| naming::check_requested_name(n).is_ok());
        let in_a_collection = target.parent().is_some_and(|parent| {
            self.collections
                .iter()
                .any(|c| fs::canonicalize(&c.dir).is_ok_and(|dir| dir == parent))
        });
        if !(visible && in_a_collection) {
            log::warn!(
                "refused to follow {link:?}: it points to {target:?}, not to a file of a collection"
            );
            return Err(ApiError::FileNotFound);
        }
        open_no_follow(&target).map_err(|_| ApiError::FileNotFound)
    }

    /// Removes a stored file and makes the removal durable. Only regular files are removed:
    /// symbolic links, folders and anything else an operator placed are answered 404.
    ///
    /// # Errors
    /// 404 when there is no such file; storage errors otherwise.
    pub fn delete(&self, collection: &Collection, name: &str) -> Result<(), ApiError> {
        naming::check_requested_name(name)?;
        let path = collection.dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(ApiError::FileNotFound),
            Err(e) if is_not_found(&e) => return Err(ApiError::FileNotFound),
            Err(e) => return Err(ApiError::internal(format!("inspecting {path:?}"), e)),
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Err(ApiError::FileNotFound),
            Err(e) => return Err(ApiError::internal(format!("removing {path:?}"), e)),
        }
        self.folder_sync(collection)?
            .sync()
            .map_err(|e| ApiError::internal(format!("syncing {:?}", collection.dir), e))
    }
}

/// Opens `path` read-only without following a symbolic link in its last component.
fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        // NOTE: O_NONBLOCK keeps a FIFO dropped into a folder from blocking a worker in open();
        // it changes nothing for regular files.
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(Errno::ENAMETOOLONG as i32)
}

/// Makes the entries of a folder (a new, renamed or removed name) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Moves `from` to `to`, failing with `AlreadyExists` instead of replacing a file at `to`.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // NOTE: some file systems lack RENAME_NOREPLACE; a hard link refuses to replace too.
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// Removes temporary uploads that a crash or a kill left behind; returns how many.
///
/// # Errors
/// The folder cannot be listed.
pub fn remove_stale_uploads(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if naming::is_temp_name(name) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_no_replace_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, "new").unwrap();
        fs::write(&b, "old").unwrap();

        let err = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&b).unwrap(), "old");
        assert_eq!(fs::read_to_string(&a).unwrap(), "new");
    }

    #[test]
    fn stale_uploads_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".upload-01abc.part"), "half").unwrap();
        fs::write(dir.path().join("photo.jpg"), "keep").unwrap();
        fs::write(dir.path().join(".upload-notes.txt"), "keep").unwrap();

        assert_eq!(remove_stale_uploads(dir.path()).unwrap(), 1);
        assert!(dir.path().join("photo.jpg").exists());
        assert!(dir.path().join(".upload-notes.txt").exists());
        assert!(!dir.path().join(".upload-01abc.part").exists());
    }
}
