//! A whole stored file as a response body, read in large pieces without blocking a worker.
//!
//! Each piece is first read with `preadv2(RWF_NOWAIT)`, which copies what the page cache holds
//! and refuses rather than wait for the disk. Only a piece the disk must supply is read in the
//! blocking pool. A photo that was viewed recently (the common case) is therefore sent with no
//! hand-off between threads at all, and a cold one costs one hand-off per piece.
//!
//! The body is the file that was opened: a file replaced or renamed meanwhile is still sent
//! whole as it was; a file cut short meanwhile ends the response with an error, so the client
//! sees a short body rather than a wrong one.

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::error::BlockingError;
use actix_web::web::{self, Bytes};
use futures_util::Stream;
use rustix::io::{Errno, ReadWriteFlags, preadv2};

/// Bytes read at a time. NOTE: small enough that the piece is still in the CPU's cache when
/// actix-http copies it on and the kernel copies it again: a 1 MB photo took 0.53–0.69 ms of CPU
/// time in 64 KiB pieces, 0.74–0.86 ms in 32 KiB, 0.86–0.94 ms in 128 KiB and 1.0 ms in 256 KiB.
const PIECE_BYTES: u64 = 64 * 1024;

type BlockingRead = Pin<Box<dyn Future<Output = Result<io::Result<Vec<u8>>, BlockingError>>>>;

/// The bytes of `file` from its start to `len`.
pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    len: u64,
    /// A piece being read in the blocking pool.
    blocking: Option<BlockingRead>,
    /// Set once the page cache could not be asked without waiting (an old kernel or a file
    /// system without `RWF_NOWAIT`): every later piece goes to the pool.
    no_nowait: bool,
}

impl FileBody {
    pub fn new(file: File, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            offset: 0,
            len,
            blocking: None,
            no_nowait: false,
        }
    }

    fn piece_len(&self) -> usize {
        (self.len - self.offset).min(PIECE_BYTES) as usize
    }

    /// Accepts a piece that was read; an empty one means the file is shorter than it was.
    fn advance(&mut self, piece: Vec<u8>) -> io::Result<Bytes> {
        if piece.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was being sent",
            ));
        }
        self.offset += piece.len() as u64;
        Ok(Bytes::from(piece))
    }

    /// Reads the next piece from the page cache; `None` when the disk would have to be read.
    fn read_cached(&mut self) -> Option<io::Result<Vec<u8>>> {
        if self.no_nowait {
            return None;
        }
        let mut piece = vec![0; self.piece_len()];
        let read = preadv2(
            &*self.file,
            &mut [IoSliceMut::new(&mut piece)],
            self.offset,
            ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(n) => {
                piece.truncate(n);
                Some(Ok(piece))
            }
            Err(Errno::AGAIN) => None,
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                self.no_nowait = true;
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    fn read_in_pool(&self) -> BlockingRead {
        let file = Arc::clone(&self.file);
        let offset = self.offset;
        let mut piece = vec![0; self.piece_len()];
        Box::pin(web::block(move || {
            let mut filled = 0;
            while filled < piece.len() {
                match file.read_at(&mut piece[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            piece.truncate(filled);
            Ok(piece)
        }))
    }
}

impl Stream for FileBody {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.blocking.is_none() {
            if this.offset >= this.len {
                return Poll::Ready(None);
            }
            match this.read_cached() {
                Some(read) => return Poll::Ready(Some(read.and_then(|p| this.advance(p)))),
                None => this.blocking = Some(this.read_in_pool()),
            }
        }
        let Some(pending) = this.blocking.as_mut() else {
            return Poll::Ready(None);
        };
        let read = match pending.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(read) => read,
        };
        this.blocking = None;
        let piece = read.map_err(io::Error::other).and_then(|r| r);
        Poll::Ready(Some(piece.and_then(|p| this.advance(p))))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use futures_util::StreamExt;
    use rustix::fs::{Advice, fadvise};

    use super::*;

    /// A file of `len` bytes on disk, synced so the page cache may drop it. NOTE: beside the
    /// build, not in the temporary folder, which may be a tmpfs that never drops a page.
    fn file_on_disk(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let path = dir.path().join("photo.jpg");
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = File::create(&path).unwrap();
        file.write_all(&bytes).unwrap();
        file.sync_all().unwrap();
        (dir, path, bytes)
    }

    fn send_all(file: File, len: u64) -> Vec<u8> {
        actix_web::rt::System::new().block_on(async move {
            let mut body = FileBody::new(file, len);
            let mut sent = Vec::new();
            while let Some(piece) = body.next().await {
                sent.extend_from_slice(&piece.unwrap());
            }
            sent
        })
    }

    #[test]
    fn a_cached_file_is_read_without_the_pool_and_a_dropped_one_through_it() {
        let (_dir, path, bytes) = file_on_disk(600 * 1024);

        let file = File::open(&path).unwrap();
        fadvise(&file, 0, None, Advice::DontNeed).unwrap();
        let mut cold = FileBody::new(file, bytes.len() as u64);
        assert!(
            cold.read_cached().is_none(),
            "a file out of the page cache is left to the pool"
        );
        assert_eq!(
            send_all(File::open(&path).unwrap(), bytes.len() as u64),
            bytes
        );

        // Now in the page cache: every piece comes without waiting.
        let mut warm = FileBody::new(File::open(&path).unwrap(), bytes.len() as u64);
        let piece = warm.read_cached().expect("cached").unwrap();
        assert_eq!(piece.len(), PIECE_BYTES as usize);
        assert_eq!(piece, bytes[..PIECE_BYTES as usize]);
    }

    #[test]
    fn a_file_cut_short_while_it_is_sent_ends_in_an_error() {
        let (_dir, path, bytes) = file_on_disk(300 * 1024);
        let file = File::open(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100 * 1024)
            .unwrap();
        let result = actix_web::rt::System::new().block_on(async move {
            let mut body = FileBody::new(file, bytes.len() as u64);
            let mut sent = 0;
            while let Some(piece) = body.next().await {
                sent += piece?.len();
            }
            Ok::<_, io::Error>(sent)
        });
        let error = result.expect_err("a short file is not a whole answer");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
