//! A folder's fsync, group-committed.
//!
//! Uploads and removals in the same folder that finish together share one fsync of it. Each
//! change takes a ticket from a counter *after* its rename or removal has returned; fsyncs of the folder run one at a time under a lock, and
//! each records the highest ticket issued before it started. A caller whose ticket is at most
//! the one recorded by a successful fsync returns without syncing: that fsync started after its
//! change was made, so it made the change durable. Any other caller runs an fsync of its own. A
//! failed fsync records nothing and its error goes to the caller that ran it; the callers queued
//! behind it find their tickets still uncovered and try again themselves.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::storage::sync_dir;

/// One folder's fsync, shared by every change made in it at about the same time (the module
/// documentation gives the rule). Blocking: call it off the async workers.
#[derive(Debug)]
pub struct FolderSync {
    dir: PathBuf,
    /// Tickets issued so far: the n-th change announced holds ticket n.
    issued: AtomicU64,
    /// Every change whose ticket is at most this is durable. Held for the whole fsync, so the
    /// callers that arrive meanwhile queue behind it and are then served by one fsync.
    durable: Mutex<u64>,
}

impl FolderSync {
    /// A coordinator for `dir`; one per folder, shared by everything that changes it.
    pub fn new(dir: PathBuf) -> Self {
        FolderSync {
            dir,
            issued: AtomicU64::new(0),
            durable: Mutex::new(0),
        }
    }

    /// The folder whose entries this makes durable.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the caller's changes in the folder (renames, removals) durable. Call it only once
    /// they have returned: it returns at once when an fsync that started after that has
    /// succeeded, and otherwise fsyncs the folder itself.
    ///
    /// # Errors
    /// The folder cannot be opened or fsynced (by this caller's own fsync).
    pub fn sync(&self) -> io::Result<()> {
        self.sync_with(|| sync_dir(&self.dir))
    }

    fn sync_with(&self, fsync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        // NOTE: the ticket is taken after the caller's change has returned, so every fsync that
        // reads the counter after this point started after the change too.
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;

        // A panic cannot leave the count wrong (it is written only after a successful fsync),
        // so a poisoned lock is still safe to use.
        let mut durable = self.durable.lock().unwrap_or_else(PoisonError::into_inner);
        if *durable >= ticket {
            return Ok(());
        }
        // Every ticket issued so far belongs to a change made before the fsync below starts.
        let covers = self.issued.load(Ordering::SeqCst);
        fsync()?;
        *durable = covers.max(*durable);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;

    fn folder_sync() -> FolderSync {
        FolderSync::new(PathBuf::from("/nonexistent"))
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn changes_made_while_an_fsync_runs_share_the_next_one() {
        let folder = folder_sync();
        let fsyncs = AtomicUsize::new(0);
        let release = Barrier::new(2);

        thread::scope(|scope| {
            // The first caller's fsync is held open while two more changes arrive.
            scope.spawn(|| {
                folder
                    .sync_with(|| {
                        fsyncs.fetch_add(1, Ordering::SeqCst);
                        release.wait();
                        Ok(())
                    })
                    .unwrap();
            });
            wait_for("the first fsync", || fsyncs.load(Ordering::SeqCst) == 1);
            let late: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        folder.sync_with(|| {
                            fsyncs.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                    })
                })
                .collect();
            wait_for("both tickets", || folder.issued.load(Ordering::SeqCst) == 3);
            release.wait();
            for caller in late {
                caller.join().unwrap().unwrap();
            }
        });

        // Not 1: the first fsync started before the later changes. Not 3: they share one.
        assert_eq!(fsyncs.load(Ordering::SeqCst), 2);
        assert_eq!(*folder.durable.lock().unwrap(), 3);
    }

    #[test]
    fn one_change_at_a_time_gets_one_fsync_each() {
        let folder = folder_sync();
        let fsyncs = AtomicUsize::new(0);
        for _ in 0..3 {
            folder
                .sync_with(|| {
                    fsyncs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(fsyncs.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_failed_fsync_reaches_its_caller_and_the_caller_behind_it_syncs_again() {
        let folder = folder_sync();
        let fsyncs = AtomicUsize::new(0);
        let release = Barrier::new(2);

        let (first, second) = thread::scope(|scope| {
            let first = scope.spawn(|| {
                folder.sync_with(|| {
                    fsyncs.fetch_add(1, Ordering::SeqCst);
                    release.wait();
                    Err(io::Error::other("disk gone"))
                })
            });
            wait_for("the first fsync", || fsyncs.load(Ordering::SeqCst) == 1);
            let second = scope.spawn(|| {
                folder.sync_with(|| {
                    fsyncs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            });
            wait_for("the second ticket", || {
                folder.issued.load(Ordering::SeqCst) == 2
            });
            release.wait();
            (first.join().unwrap(), second.join().unwrap())
        });

        assert_eq!(first.unwrap_err().to_string(), "disk gone");
        second.unwrap();
        assert_eq!(
            fsyncs.load(Ordering::SeqCst),
            2,
            "the second caller synced itself"
        );
        assert_eq!(*folder.durable.lock().unwrap(), 2);
    }

    #[test]
    fn sync_fsyncs_the_real_folder_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        FolderSync::new(dir.path().to_owned()).sync().unwrap();
        let gone = FolderSync::new(dir.path().join("missing"));
        assert_eq!(gone.sync().unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
