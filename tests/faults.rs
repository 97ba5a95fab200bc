//! Faults the volume and the process throw at the server: a full disk, a volume remounted
//! read-only, and a crash loop of SIGKILLs at random points of uploads. Each scenario prints its
//! figures. Mounting needs root: without it these say NOT RUN (and fail under CI).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A small tmpfs mounted on a fresh folder; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {:?}", dir.path());
        Tmpfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A data folder on a tmpfs that outlives the server using it.
fn server_on(volume: &Tmpfs) -> TestServer {
    // The server's own TempDir points into the mount; removing it is harmless.
    let data = tempfile::tempdir_in(volume.path()).unwrap();
    TestServer::start_in(data, &[])
}

#[test]
fn a_full_disk_answers_507_loses_nothing_and_recovers_without_a_restart() {
    if !require_root("mounting a small tmpfs as a full disk") {
        return;
    }
    let volume = Tmpfs::mount("2m");
    let server = server_on(&volume);
    let photo = fixture("images/rocket.jpg");

    let mut stored = Vec::new();
    let (status, body) = loop {
        let (status, body) = server.upload("medications", "rocket.jpg", photo.clone(), None);
        if status != 201 {
            break (status, body);
        }
        stored.push(body["files"][0]["name"].as_str().unwrap().to_owned());
        assert!(stored.len() < 100, "the 2 MiB volume never filled");
    };
    println!(
        "full disk: {} uploads of {} bytes stored before the volume filled",
        stored.len(),
        photo.len()
    );
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("full"),
        "{body}"
    );

    // No partial or temporary file; every earlier file intact and readable.
    let mut names = stored.clone();
    names.sort();
    assert_eq!(server.entries("medications"), names);
    for name in &stored {
        let response = server
            .client
            .get(server.url(&format!("/medications/{name}")))
            .send()
            .unwrap();
        assert_eq!(
            response.bytes().unwrap().as_ref(),
            photo.as_slice(),
            "{name}"
        );
    }

    // Fill the last bytes: readiness says why it is not ready.
    let filler = server.dir("treatment-images").join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while file.write_all(&[0u8; 4096]).is_ok() {}
    drop(file);
    let response = server.client.get(server.url("/readyz")).send().unwrap();
    assert_eq!(response.status(), 503);
    let text = response.text().unwrap();
    assert!(text.contains("No space left"), "{text}");

    // Free space: uploads work again, no restart.
    std::fs::remove_file(&filler).unwrap();
    for name in &stored[..2] {
        let response = server
            .client
            .delete(server.url(&format!("/medications/{name}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    assert_eq!(
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let (status, _) = server.upload("medications", "rocket.jpg", photo, None);
    assert_eq!(status, 201);
}

#[test]
fn a_volume_remounted_read_only_refuses_uploads_clearly_keeps_reads_and_recovers() {
    if !require_root("remounting a tmpfs read-only") {
        return;
    }
    let volume = Tmpfs::mount("8m");
    let server = server_on(&volume);
    let photo = fixture("images/chelsea.png");
    let (status, body) = server.upload("medications", "before.png", photo.clone(), None);
    assert_eq!(status, 201);
    let url = server.url(body["files"][0]["url"].as_str().unwrap());

    volume.remount("ro");
    let (status, body) = server.upload("medications", "during.png", photo.clone(), None);
    let response = server.client.get(&url).send().unwrap();
    let ready = server.client.get(server.url("/readyz")).send().unwrap();
    let ready_status = ready.status();
    let ready_text = ready.text().unwrap();
    volume.remount("rw");

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not writable"),
        "{body}"
    );
    assert_eq!(response.status(), 200, "reads keep working");
    assert_eq!(response.bytes().unwrap().as_ref(), photo.as_slice());
    assert_eq!(ready_status, 503);
    assert!(ready_text.contains("Read-only file system"), "{ready_text}");

    assert_eq!(
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let (status, _) = server.upload("medications", "after.png", photo, None);
    assert_eq!(status, 201);
    assert_eq!(server.entries("medications").len(), 2);
}

/// A deterministic pseudo-random sequence (xorshift); the seed is printed to replay a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn start_binary(data: &Path) -> (Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_botilyx-media"))
        .args(["--bind", "127.0.0.1:0", "--workers", "1", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn,botilyx_media::app=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(addr) = line.split("listening on http://").nth(1) {
            break addr.trim().parse().unwrap();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[test]
fn a_crash_loop_of_200_sigkills_loses_no_acknowledged_upload_and_shows_no_partial_file() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = Rng(seed);
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("medications");
    let base = fixture("images/phone-photo-gps.jpg");

    // Name → (size, sha256) of uploads answered 201, and of complete files seen on disk. A file
    // is hashed once, the first time it is seen; after that its size is checked every round
    // (the server never reopens a stored file for writing) and its hash again at the end.
    let mut acknowledged: HashMap<String, (u64, String)> = HashMap::new();
    let mut verified: HashMap<String, (u64, String)> = HashMap::new();
    let mut sent_payloads: HashSet<String> = HashSet::new();
    let mut kill_points = [0usize; 3];
    let started = Instant::now();

    for round in 0..rounds {
        let (mut child, addr) = start_binary(data.path());

        // After every start: temporary files gone, acknowledged uploads intact, nothing partial.
        let names = entries(&dir);
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "round {round}: start-up left {names:?}"
        );
        for name in &names {
            let size = std::fs::metadata(dir.join(name)).unwrap().len();
            match verified.get(name) {
                Some((known, _)) => {
                    assert_eq!(*known, size, "round {round}: {name} changed (seed {seed})")
                }
                None => {
                    let hash = sha256_hex(&std::fs::read(dir.join(name)).unwrap());
                    assert!(
                        sent_payloads.contains(&hash),
                        "round {round}: {name} is not a whole upload (seed {seed})"
                    );
                    verified.insert(name.clone(), (size, hash));
                }
            }
        }
        for (name, (size, hash)) in &acknowledged {
            let seen = verified
                .get(name)
                .unwrap_or_else(|| panic!("round {round}: acknowledged {name} lost (seed {seed})"));
            assert_eq!(
                seen,
                &(*size, hash.clone()),
                "round {round}: {name} differs (seed {seed})"
            );
        }

        // A photo of 1 to 5 MB: the real JPEG padded with zeros.
        let size = 1_000_000 + rng.below(4_000_000) as usize;
        let mut photo = base.clone();
        photo.resize(size, 0);
        let photo_hash = sha256_hex(&photo);
        sent_payloads.insert(photo_hash.clone());
        let body = multipart_body("crashloop", &[("file", Some("photo.jpg"), &photo)]);
        let head = raw_upload_head("crashloop", body.len());
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();

        let point = rng.below(3) as usize;
        kill_points[point] += 1;
        match point {
            // Mid-body.
            0 => {
                let cut = 1 + rng.below(body.len() as u64 - 1) as usize;
                stream.write_all(&body[..cut]).unwrap();
                std::thread::sleep(Duration::from_micros(rng.below(3000)));
            }
            // Whole body sent, killed while it is synced and renamed.
            1 => {
                stream.write_all(&body).unwrap();
                std::thread::sleep(Duration::from_micros(rng.below(20_000)));
            }
            // After the answer: it must be on disk.
            _ => {
                stream.write_all(&body).unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                assert!(
                    response.starts_with("HTTP/1.1 201"),
                    "round {round}: {response}"
                );
                let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
                let value: serde_json::Value = serde_json::from_str(json).unwrap();
                let name = value["files"][0]["name"].as_str().unwrap().to_owned();
                acknowledged.insert(name, (photo.len() as u64, photo_hash));
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    let (mut child, _) = start_binary(data.path());
    let names = entries(&dir);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "final start-up left {names:?}"
    );
    for (name, (size, hash)) in &acknowledged {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(
            (bytes.len() as u64, &sha256_hex(&bytes)),
            (*size, hash),
            "{name} differs at the end"
        );
    }
    println!(
        "crash loop: {rounds} SIGKILLs (seed {seed}) in {:.1} s: {} mid-body, {} during sync/rename, {} after the answer; \
         {} acknowledged uploads all intact, {} complete files visible in all, no partial or temporary file",
        started.elapsed().as_secs_f64(),
        kill_points[0],
        kill_points[1],
        kill_points[2],
        acknowledged.len(),
        names.len()
    );
}
