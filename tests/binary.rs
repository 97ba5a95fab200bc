//! The real binary as an operator runs it: flags and environment, start-up refusals, crashes
//! (SIGKILL mid-upload), restarts on the same folder, graceful SIGTERM, `check` and
//! `healthcheck`. Each test waits for readiness from the server's own log line, never a sleep.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_botilyx-media");

/// A running `botilyx-media serve`, with its log collected.
struct Running {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(data: &Path, args: &[&str]) -> Running {
        Running::start_with(Command::new(BIN), data, args)
    }

    /// Starts `command` (the binary, perhaps behind `setpriv`) as a server over `data`.
    fn start_with(mut command: Command, data: &Path, args: &[&str]) -> Running {
        let mut child = command
            .args(["--bind", "127.0.0.1:0", "--workers", "2", "--data-dir"])
            .arg(data)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn botilyx-media");

        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", log.lock().unwrap()));
        Running { child, addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit; its exit code (None when killed by a signal).
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("MEDIA_DATA_DIR")
        .env_remove("MEDIA_BIND");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run botilyx-media")
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn upload(running: &Running, name: &str, bytes: Vec<u8>) -> serde_json::Value {
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    let response = client()
        .post(running.url("/medications"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().unwrap()
}

fn visible(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn temporary(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.starts_with(".upload-"))
        .collect()
}

/// Opens an upload of `photo` by hand and sends only the first `sent` bytes of its body.
fn half_upload(addr: SocketAddr, photo: &[u8], sent: usize) -> (TcpStream, Vec<u8>) {
    let body = multipart_body("botilyxboundary", &[("file", Some("phone.jpg"), photo)]);
    let head = raw_upload_head("botilyxboundary", body.len());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..sent]).unwrap();
    stream.flush().unwrap();
    let rest = body[sent..].to_vec();
    (stream, rest)
}

#[test]
fn help_lists_every_flag_with_its_default_and_environment_variable() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let expected = [
        ("--bind", "MEDIA_BIND", Some("0.0.0.0:8080")),
        ("--data-dir", "MEDIA_DATA_DIR", Some("./data")),
        (
            "--collections",
            "MEDIA_COLLECTIONS",
            Some("medications,treatment-images"),
        ),
        (
            "--max-upload-bytes",
            "MEDIA_MAX_UPLOAD_BYTES",
            Some("20971520"),
        ),
        ("--upload-token", "MEDIA_UPLOAD_TOKEN", None),
        ("--upload-token-file", "MEDIA_UPLOAD_TOKEN_FILE", None),
        (
            "--allowed-types",
            "MEDIA_ALLOWED_TYPES",
            Some("jpeg,png,webp,gif,avif,heic"),
        ),
        (
            "--shutdown-grace-secs",
            "MEDIA_SHUTDOWN_GRACE_SECS",
            Some("25"),
        ),
    ];
    for (flag, env, default) in expected {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(
            help.contains(&format!("env: {env}")),
            "{env} missing:\n{help}"
        );
        if let Some(default) = default {
            assert!(
                help.contains(&format!("[default: {default}]")),
                "{flag} default {default} missing:\n{help}"
            );
        }
    }
    for subcommand in ["serve", "check", "healthcheck"] {
        assert!(help.contains(subcommand), "{subcommand} missing:\n{help}");
    }
}

#[test]
fn invalid_values_stop_the_start_with_a_message_naming_the_flag_and_value() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &["--max-upload-bytes", "lots"],
            &[],
            "--max-upload-bytes",
            "lots",
        ),
        (
            &[],
            &[("MEDIA_BIND", "not-an-address")],
            "--bind",
            "not-an-address",
        ),
        (
            &[],
            &[("MEDIA_COLLECTIONS", "medications,Fotos")],
            "--collections",
            "Fotos",
        ),
        (
            &["--allowed-types", "jpeg,svg"],
            &[],
            "--allowed-types",
            "svg",
        ),
        (
            &["--upload-token-file", "/nonexistent/token"],
            &[],
            "--upload-token-file",
            "/nonexistent/token",
        ),
    ];
    for (args, envs, flag, value) in cases {
        let output = run(args, envs);
        assert!(!output.status.success(), "{args:?} {envs:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{args:?} {envs:?}: {stderr}"
        );
    }
}

#[test]
fn flags_win_over_environment_variables() {
    let data = tempfile::tempdir().unwrap();
    let from_flag = data.path().join("from-flag");
    let output = run(
        &["check", "--json", "--data-dir", from_flag.to_str().unwrap()],
        &[
            ("MEDIA_DATA_DIR", "/from/env"),
            ("MEDIA_COLLECTIONS", "recetas"),
        ],
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("check --json prints JSON");
    let collections = report["collections"].as_array().unwrap();
    assert_eq!(collections.len(), 1, "MEDIA_COLLECTIONS applies: {report}");
    assert_eq!(collections[0]["collection"], "recetas");
    assert_eq!(
        collections[0]["path"],
        from_flag.join("recetas").to_str().unwrap(),
        "the flag wins"
    );
}

#[test]
fn sigkill_mid_upload_leaves_no_visible_partial_file_and_the_next_start_removes_it() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("medications");
    let mut server = Running::start(data.path(), &[]);
    let photo = fixture("images/phone-photo-gps.jpg");

    let (_stream, _rest) = half_upload(server.addr, &photo, photo.len() / 2);
    wait_until(
        Duration::from_secs(10),
        "the temporary file to fill",
        || {
            temporary(&dir)
                .first()
                .is_some_and(|t| std::fs::metadata(dir.join(t)).is_ok_and(|m| m.len() > 0))
        },
    );
    server.signal(Signal::SIGKILL);
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        None,
        "killed by the signal"
    );

    assert!(
        visible(&dir).is_empty(),
        "a partial file is visible: {:?}",
        visible(&dir)
    );
    assert_eq!(
        temporary(&dir).len(),
        1,
        "the interrupted upload's temporary file is hidden"
    );

    let restarted = Running::start(data.path(), &[]);
    assert!(
        entries(&dir).is_empty(),
        "start-up left {:?}",
        entries(&dir)
    );
    assert!(
        restarted.log_text().contains("removed 1 temporary file"),
        "{}",
        restarted.log_text()
    );
    assert_eq!(
        client()
            .get(restarted.url("/readyz"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn every_file_is_intact_after_the_server_is_stopped_and_started_again() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Running::start(data.path(), &[]);
    let mut stored = Vec::new();
    for (path, _, _) in IMAGES {
        let bytes = fixture(path);
        let body = upload(&server, path.rsplit('/').next().unwrap(), bytes.clone());
        stored.push((body["files"][0]["url"].as_str().unwrap().to_owned(), bytes));
    }
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));

    let server = Running::start(data.path(), &[]);
    for (url, bytes) in &stored {
        let response = client().get(server.url(url)).send().unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.bytes().unwrap().as_ref(),
            bytes.as_slice(),
            "{url}"
        );
    }
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish_then_exits_0() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("medications");
    let mut server = Running::start(data.path(), &["--shutdown-grace-secs", "20"]);
    let photo = fixture("images/phone-photo-gps.jpg");

    let (mut stream, rest) = half_upload(server.addr, &photo, photo.len() / 2);
    wait_until(Duration::from_secs(10), "the upload to start", || {
        !temporary(&dir).is_empty()
    });
    server.signal(Signal::SIGTERM);
    wait_until(
        Duration::from_secs(10),
        "the server to stop accepting",
        || TcpStream::connect(server.addr).is_err(),
    );

    stream.write_all(&rest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    assert_eq!(server.wait_exit(Duration::from_secs(20)), Some(0));
    let names = visible(&dir);
    assert_eq!(names.len(), 1);
    assert_eq!(std::fs::read(dir.join(&names[0])).unwrap(), photo);
    assert!(temporary(&dir).is_empty());
}

/// The original failure: the volume's folder belongs to root and the server runs as 1001.
#[test]
fn an_unwritable_folder_stops_the_start_with_owner_mode_process_and_fix() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (mut command, owner, process) = if nix::unistd::geteuid().is_root() {
        // Run as the app's unprivileged user, so the permission check is real even under root.
        let bin = scratch.path().join("botilyx-media");
        std::fs::copy(BIN, &bin).unwrap();
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=1001", "--regid=1001", "--clear-groups"])
            .arg(bin);
        (command, "0:0".to_owned(), "1001:1001".to_owned())
    } else {
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
        let ids = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        (Command::new(BIN), ids.clone(), ids)
    };
    let output = command
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .expect("run botilyx-media");

    assert!(
        !output.status.success(),
        "it started on an unwritable folder"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needed in [
        data.join("medications").to_str().unwrap(),
        &format!("owner {owner}"),
        "mode 0",
        &format!("process {process}"),
        &format!("chown -R {process}"),
        "fsGroup",
    ] {
        assert!(
            stderr.contains(needed),
            "{needed:?} missing from:\n{stderr}"
        );
    }
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn check_passes_on_a_mounted_volume_and_calls_the_container_root_ephemeral() {
    if !require_root("mounting a tmpfs as a volume") {
        return;
    }
    let in_kubernetes = [("KUBERNETES_SERVICE_HOST", "10.152.183.1")];

    // A mounted volume, as a PersistentVolumeClaim gives: OK, exit 0.
    let volume = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(volume.path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    for name in ["medications", "treatment-images"] {
        std::fs::create_dir(volume.path().join(name)).unwrap();
    }
    let output = run(
        &["check", "--data-dir", volume.path().to_str().unwrap()],
        &in_kubernetes,
    );
    let json = run(
        &[
            "check",
            "--json",
            "--data-dir",
            volume.path().to_str().unwrap(),
        ],
        &in_kubernetes,
    );
    let _ = Command::new("umount").arg(volume.path()).status();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.lines().filter(|l| l.starts_with("OK")).count() == 2,
        "{text}"
    );
    assert!(text.contains("tmpfs"), "the mount is named: {text}");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["collections"][0]["mount"]["fs_type"], "tmpfs");
    assert_eq!(report["collections"][0]["writable"], true);

    // A folder on the container's own root file system: EPHEMERAL, exit 1.
    let on_root = tempfile::Builder::new()
        .prefix("botilyx-check-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mount_point = Command::new("stat")
        .args(["-c", "%m"])
        .arg(on_root.path())
        .output()
        .unwrap();
    if String::from_utf8_lossy(&mount_point.stdout).trim() != "/" {
        assert!(
            std::env::var_os("CI").is_none(),
            "NOT RUN under CI: /var/tmp is not on the root file system"
        );
        eprintln!(
            "NOT RUN: /var/tmp is not on the root file system here, so EPHEMERAL cannot be shown"
        );
        return;
    }
    let output = run(
        &["check", "--data-dir", on_root.path().to_str().unwrap()],
        &in_kubernetes,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.lines().filter(|l| l.starts_with("EPHEMERAL")).count() == 0,
        "missing folders are MISSING, not EPHEMERAL: {text}"
    );
    std::fs::create_dir(on_root.path().join("medications")).unwrap();
    std::fs::create_dir(on_root.path().join("treatment-images")).unwrap();
    let output = run(
        &["check", "--data-dir", on_root.path().to_str().unwrap()],
        &in_kubernetes,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("EPHEMERAL")).count(),
        2,
        "{text}"
    );
    assert!(text.contains("fix: mount a persistent volume"), "{text}");
}

#[test]
fn healthcheck_exits_0_only_while_the_server_answers() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(data.path(), &[]);
    let bind = server.addr.to_string();
    assert!(run(&["healthcheck", "--bind", &bind], &[]).status.success());
    drop(server);
    let output = run(&["healthcheck", "--bind", &bind], &[]);
    assert!(!output.status.success());
}

/// Permissions changed under a running server (the server runs as 1001, so they bind it).
#[test]
fn a_folder_made_read_only_under_a_running_server_refuses_writes_clearly_and_recovers() {
    if !require_root("running the server as UID 1001 with setpriv") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = scratch.path().join("data");
    let owner = Some(nix::unistd::Uid::from_raw(1001));
    let group = Some(nix::unistd::Gid::from_raw(1001));
    for dir in [
        data.clone(),
        data.join("medications"),
        data.join("treatment-images"),
    ] {
        std::fs::create_dir(&dir).unwrap();
        nix::unistd::chown(&dir, owner, group).unwrap();
    }
    let bin = scratch.path().join("botilyx-media");
    std::fs::copy(BIN, &bin).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=1001", "--regid=1001", "--clear-groups"])
        .arg(&bin);
    let server = Running::start_with(command, &data, &[]);
    let photo = fixture("images/rocket.jpg");

    let body = upload(&server, "before.jpg", photo.clone());
    let before = server.url(body["files"][0]["url"].as_str().unwrap());

    let medications = data.join("medications");
    std::fs::set_permissions(&medications, std::fs::Permissions::from_mode(0o555)).unwrap();
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(photo.clone()).file_name("during.jpg"),
    );
    let refused = client()
        .post(server.url("/medications"))
        .multipart(form)
        .send()
        .unwrap();
    let ready = client().get(server.url("/readyz")).send().unwrap();
    let read = client().get(&before).send().unwrap();
    std::fs::set_permissions(&medications, std::fs::Permissions::from_mode(0o755)).unwrap();

    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert_eq!(ready.status(), 503);
    assert!(ready.text().unwrap().contains("Permission denied"));
    assert_eq!(read.status(), 200, "reads keep working");
    assert!(
        server.log_text().contains("Permission denied"),
        "the cause is logged: {}",
        server.log_text()
    );

    upload(&server, "after.jpg", photo);
    assert_eq!(
        client().get(server.url("/readyz")).send().unwrap().status(),
        200
    );
    assert_eq!(visible(&medications).len(), 2);
}

/// The access lines of `log`, each split into its fields after the `[time LEVEL target]` part.
fn access_lines(log: &str) -> Vec<Vec<String>> {
    log.lines()
        .filter_map(|line| line.split_once(" botilyx_media::access] "))
        .map(|(_, rest)| rest.split(' ').map(str::to_owned).collect())
        .collect()
}

#[test]
fn the_access_log_has_one_line_per_request_within_a_second_and_all_at_stop() {
    let data = tempfile::tempdir().unwrap();
    let token = "s3cret-token-value";
    let mut server = Running::start(data.path(), &["--upload-token", token]);
    let client = client();

    // A path that tries to forge a second line, a health probe (debug only), and a read.
    let forged = "/medications/x%0A%5B2026-01-01T00:00:00Z%20INFO%20forged%5D.jpg";
    let refused = client.get(server.url(forged)).send().unwrap();
    assert_eq!(refused.status(), 400);
    let refused_len = refused.bytes().unwrap().len().to_string();
    assert_eq!(
        client.get(server.url("/healthz")).send().unwrap().status(),
        200
    );
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(fixture("images/rocket.jpg"))
            .file_name("rocket.jpg"),
    );
    let stored: serde_json::Value = client
        .post(server.url("/medications"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let url = stored["files"][0]["url"].as_str().unwrap().to_owned();
    let read = client.get(server.url(&url)).send().unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().unwrap().len(), 112_525);

    // Lines wait at most a second; allow for a loaded machine.
    wait_until(Duration::from_secs(10), "three access lines", || {
        access_lines(&server.log_text()).len() >= 3
    });
    let log = server.log_text();
    let lines = access_lines(&log);
    assert_eq!(
        lines.len(),
        3,
        "no line for the health probe at info:\n{log}"
    );
    assert_eq!(lines[0][..2], ["127.0.0.1", "GET"], "{log}");
    assert_eq!(
        lines[0][2],
        format!("{forged:?}"),
        "the path as sent, still encoded: {log}"
    );
    assert_eq!(lines[0][3..5], ["400", &refused_len], "{log}");
    assert_eq!(lines[1][1..2], ["POST"], "{log}");
    assert_eq!(lines[1][3], "201", "{log}");
    assert_eq!(
        lines[2][1..5],
        ["GET", &format!("{url:?}"), "200", "112525"],
        "{log}"
    );
    for line in &lines {
        let duration = line[5].strip_suffix("ms").expect("a duration in ms");
        assert!(duration.parse::<f64>().is_ok(), "{line:?}");
    }
    assert!(
        !log.contains("forged]") && !log.contains(token),
        "no decoded path, no token: {log}"
    );

    // Every line still waiting is written when the server stops.
    for _ in 0..200 {
        assert_eq!(client.get(server.url(&url)).send().unwrap().status(), 200);
    }
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    wait_until(Duration::from_secs(5), "the log to be read", || {
        server.log_text().contains("stopped")
    });
    assert_eq!(access_lines(&server.log_text()).len(), 203);
}
