//! What is true of each collection folder right now: exists, owner and mode, writable (by a real
//! probe write, not a guess from mode bits), the mount that holds it, free space, and a verdict
//! with a one-line fix. Start-up, `/readyz` and the `check` command all read the same findings.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::Serialize;

use crate::naming;
use crate::storage::Collection;

/// The verdict on one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Ok,
    Missing,
    NotWritable,
    /// Writable, but on the container's own file system: lost when the container is replaced.
    Ephemeral,
}

/// The mount that holds a folder, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Everything known about one collection folder.
#[derive(Debug, Clone, Serialize)]
pub struct FolderReport {
    pub collection: String,
    pub path: PathBuf,
    pub exists: bool,
    /// The folder whose owner and mode are given: the collection folder, or its nearest
    /// existing parent when it is missing.
    pub owner_path: Option<PathBuf>,
    /// `uid:gid` of `owner_path`.
    pub owner: Option<String>,
    /// Permission bits in octal, e.g. `0755`.
    pub mode: Option<String>,
    /// `uid:gid` this process runs as.
    pub process: String,
    pub writable: bool,
    /// Why the probe write failed.
    pub error: Option<String>,
    pub mount: Option<Mount>,
    pub free_bytes: Option<u64>,
    pub verdict: Verdict,
    /// One line saying how to fix a failing verdict.
    pub fix: Option<String>,
}

impl FolderReport {
    /// Inspects `collection`'s folder; `create` makes it (like `mkdir -p`) when it is missing.
    pub fn inspect(collection: &Collection, create: bool) -> Self {
        let path = absolute(&collection.dir);
        let mut created = Ok(());
        if create && !path.is_dir() {
            created = fs::create_dir_all(&path);
        }

        let exists = path.is_dir();
        let owner_path = nearest_existing(&path).map(Path::to_path_buf);
        let owned_by = owner_path.as_ref().and_then(|p| fs::metadata(p).ok());
        let probe = match (&created, exists) {
            (Err(e), _) => Err(clone_error(e)),
            (Ok(()), false) => Err(io::Error::from(io::ErrorKind::NotFound)),
            (Ok(()), true) => probe_write(&path),
        };
        let mount = mount_of(&path);

        let verdict = match &probe {
            Ok(())
                if in_container()
                    && mount
                        .as_ref()
                        .is_some_and(|m| m.mount_point == Path::new("/")) =>
            {
                Verdict::Ephemeral
            }
            Ok(()) => Verdict::Ok,
            Err(_) if !exists => Verdict::Missing,
            Err(_) => Verdict::NotWritable,
        };
        let process = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        let fix = fix_for(verdict, probe.as_ref().err(), &path);

        FolderReport {
            collection: collection.name.clone(),
            exists,
            owner_path,
            owner: owned_by
                .as_ref()
                .map(|m| format!("{}:{}", m.uid(), m.gid())),
            mode: owned_by
                .as_ref()
                .map(|m| format!("{:04o}", m.mode() & 0o7777)),
            process,
            writable: probe.is_ok(),
            error: probe.err().map(|e| e.to_string()),
            free_bytes: free_bytes(&path),
            mount,
            verdict,
            fix,
            path,
        }
    }

    /// One paragraph for a log line or an error exit: the finding, the facts and the fix.
    pub fn explain(&self) -> String {
        let whose = match &self.owner_path {
            Some(p) if *p != self.path => format!("its parent {p:?} has "),
            _ => String::new(),
        };
        let facts = format!(
            "{whose}owner {} mode {}, process {}",
            self.owner.as_deref().unwrap_or("?"),
            self.mode.as_deref().unwrap_or("?"),
            self.process
        );
        match self.verdict {
            Verdict::Ok => format!(
                "collection {:?} at {:?} is writable ({facts})",
                self.collection, self.path
            ),
            _ => format!(
                "collection {:?} at {:?}: {}{} ({facts}). Fix: {}",
                self.collection,
                self.path,
                verdict_text(self.verdict),
                self.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                self.fix.as_deref().unwrap_or("-")
            ),
        }
    }
}

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Ok => "OK",
        Verdict::Missing => "folder missing and cannot be created",
        Verdict::NotWritable => "folder not writable",
        Verdict::Ephemeral => {
            "folder is on the container's own file system; its files are lost when the container is replaced"
        }
    }
}

fn fix_for(verdict: Verdict, error: Option<&io::Error>, path: &Path) -> Option<String> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let errno = error.and_then(io::Error::raw_os_error).map(Errno::from_raw);
    let fix = match (verdict, errno) {
        (Verdict::Ok, _) => return None,
        (Verdict::Ephemeral, _) => format!(
            "mount a persistent volume at {:?} (a PersistentVolumeClaim in Kubernetes, a named volume with Docker)",
            path.parent().unwrap_or(path)
        ),
        (_, Some(Errno::EROFS)) => {
            "the volume is mounted read-only; mount it read-write".to_owned()
        }
        (_, Some(Errno::ENOSPC | Errno::EDQUOT)) => {
            "the volume is full; free space or grow the volume".to_owned()
        }
        _ => format!(
            "make the folder writable by {uid}:{gid}: on the host run `chown -R {uid}:{gid} <host folder behind {}>`, \
             or set `fsGroup: {gid}` in the pod's securityContext (Kubernetes does not apply fsGroup to hostPath volumes)",
            path.parent().unwrap_or(path).display()
        ),
    };
    Some(fix)
}

/// Creates, fsyncs and removes a probe file in `dir`: the only honest test of "writable now".
pub fn probe_write(dir: &Path) -> io::Result<()> {
    // The probe is named like a temporary upload, so a crash here is cleaned up at next start.
    let path = dir.join(naming::temp_name());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let written = file.write_all(b"probe").and_then(|()| file.sync_all());
    let removed = fs::remove_file(&path);
    written.and(removed)
}

/// Whether this process runs in a container (Kubernetes, Docker or Podman).
pub fn in_container() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
}

/// Bytes available to this process on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(nearest_existing(path)?).ok()?;
    Some(stat.blocks_available() * stat.fragment_size())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn nearest_existing(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

fn clone_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The mount holding `path`: the last-mounted entry whose mount point is its longest prefix.
fn mount_of(path: &Path) -> Option<Mount> {
    let resolved = fs::canonicalize(nearest_existing(path)?).ok()?;
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&table)
        .into_iter()
        .filter(|m| resolved.starts_with(&m.mount_point))
        .fold(None, |best: Option<Mount>, m| match best {
            Some(b) if b.mount_point.as_os_str().len() > m.mount_point.as_os_str().len() => Some(b),
            _ => Some(m),
        })
}

/// Parses `/proc/self/mountinfo` (see proc(5)); lines it cannot read are skipped.
fn parse_mountinfo(table: &str) -> Vec<Mount> {
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            let source = right.next()?;
            Some(Mount {
                mount_point: PathBuf::from(unescape_octal(mount_point)),
                fs_type: fs_type.to_owned(),
                source: unescape_octal(source),
            })
        })
        .collect()
}

/// Mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escaped.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/l
35 22 8:2 / /data rw,relatime - ext4 /dev/sdb1 rw
36 22 8:2 /x /my\\040data rw - ext4 /dev/sdb1 rw";

    #[test]
    fn mountinfo_lines_give_point_type_and_source() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].fs_type, "overlay");
        assert_eq!(mounts[1].mount_point, PathBuf::from("/data"));
        assert_eq!(mounts[1].source, "/dev/sdb1");
        assert_eq!(mounts[2].mount_point, PathBuf::from("/my data"));
    }

    #[test]
    fn a_writable_folder_is_ok_and_a_missing_one_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let collection = Collection {
            name: "medications".into(),
            dir: dir.path().join("medications"),
        };

        let report = FolderReport::inspect(&collection, false);
        assert_eq!(report.verdict, Verdict::Missing);
        assert!(report.fix.is_some());

        let report = FolderReport::inspect(&collection, true);
        assert!(report.exists && report.writable);
        assert!(report.free_bytes.unwrap() > 0);
        assert!(report.mount.is_some());
        assert_eq!(
            fs::read_dir(&collection.dir).unwrap().count(),
            0,
            "probe file left behind"
        );
    }
}
