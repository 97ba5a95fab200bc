//! Shared test support: a real server on a loopback port over a fresh data folder, the shared
//! fixture images, raw HTTP for paths a client library would normalise, and multipart helpers.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use botilyx_media::{Cli, Config};
use clap::Parser;
use reqwest::blocking::{Client, multipart};
use sha2::{Digest, Sha256};

/// The fixture folder shared by every project of the workplace.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixtures().join(relative);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("fixture {path:?}: {e} (see ../shared/fixtures/README.md)"))
}

/// Every real image of `fixtures/images`, with the type it must be stored as.
pub const IMAGES: &[(&str, &str, &str)] = &[
    ("images/phone-photo-gps.jpg", "image/jpeg", "jpg"),
    ("images/coffee.heic", "image/heic", "heic"),
    ("images/coffee.avif", "image/avif", "avif"),
    ("images/rocket.jpg", "image/jpeg", "jpg"),
    ("images/retina.jpg", "image/jpeg", "jpg"),
    ("images/astronaut-small.jpg", "image/jpeg", "jpg"),
    ("images/chelsea.png", "image/png", "png"),
    ("images/astronaut.webp", "image/webp", "webp"),
    ("images/animated.gif", "image/gif", "gif"),
];

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A server of this crate, in this process, on a loopback port, over its own data folder.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub client: Client,
    handle: actix_web::dev::ServerHandle,
}

impl TestServer {
    /// Starts with the default collections plus `args` (command-line flags).
    pub fn start(args: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_in(data, args)
    }

    pub fn start_in(data: tempfile::TempDir, args: &[&str]) -> Self {
        let mut argv = vec![
            "botilyx-media".to_owned(),
            "--bind".into(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            "2".into(),
            "--data-dir".into(),
            data.path().display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let cli = Cli::try_parse_from(argv).expect("test arguments parse");
        let config = Config::from_options(cli.options).expect("test configuration is valid");

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let (server, addr) = botilyx_media::start(config).expect("server starts");
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            });
        });
        let (addr, handle) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server started");
        let client = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        TestServer {
            addr,
            data,
            client,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn dir(&self, collection: &str) -> PathBuf {
        self.data.path().join(collection)
    }

    /// Every entry of a collection folder, hidden ones included, sorted.
    pub fn entries(&self, collection: &str) -> Vec<String> {
        entries(&self.dir(collection))
    }

    /// Uploads one file part; returns the status and the JSON body.
    pub fn upload(
        &self,
        collection: &str,
        name: &str,
        bytes: Vec<u8>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let form = multipart::Form::new().part(
            "file",
            multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        self.post_form(collection, form, token)
    }

    pub fn post_form(
        &self,
        collection: &str,
        form: multipart::Form,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .post(self.url(&format!("/{collection}")))
            .multipart(form);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().expect("upload request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(serde_json::Value::Null))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        })
        .join();
    }
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Sends `request` as raw bytes and returns the status code and the whole response text.
/// For paths that a client library would normalise or refuse.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).expect("send");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

pub fn raw_get(addr: SocketAddr, path: &str) -> (u16, String) {
    raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The head of a hand-made `POST /medications` carrying a multipart body of `length` bytes.
pub fn raw_upload_head(boundary: &str, length: usize) -> String {
    format!(
        "POST /medications HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// A multipart body by hand, for cases a client library will not produce.
pub fn multipart_body(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{field}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// Polls `done` until it holds; fails naming `what` after `limit`. Waits on a condition, never
/// a fixed sleep.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether this test may do what needs root. Without root it says so loudly; under CI (the `CI`
/// variable set) a missing prerequisite is a failure, never a silent skip.
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("NOT RUN under CI: {what} needs root");
    }
    eprintln!("NOT RUN: {what} needs root; run the tests as root (CI does) to cover it");
    false
}
