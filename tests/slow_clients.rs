//! Slow clients: 500 connections trickling headers or bodies a byte at a time must not slow
//! ordinary reads, and each is cut off by its timeout (head: 5 s from connect; body: silent for
//! `--body-idle-secs`; whole upload: `--upload-timeout-secs`), leaving no temporary file.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// p50 and p99 of `n` sequential GETs of a small stored image, in milliseconds.
fn get_latencies(server: &TestServer, url: &str, n: usize) -> (f64, f64) {
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            let started = Instant::now();
            let response = server.client.get(url).send().unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().unwrap();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[n / 2], samples[n * 99 / 100])
}

#[test]
fn five_hundred_slow_clients_do_not_slow_reads_and_are_all_cut_off() {
    let server = TestServer::start(&["--body-idle-secs", "2"]);
    let (_, body) = server.upload(
        "medications",
        "small.jpg",
        fixture("images/astronaut-small.jpg"),
        None,
    );
    let url = server.url(body["files"][0]["url"].as_str().unwrap());
    let (p50_idle, p99_idle) = get_latencies(&server, &url, 300);

    // 250 clients send their request head a byte at a time; 250 send a real upload's body so.
    let photo = fixture("images/rocket.jpg");
    let upload = multipart_body("slow", &[("file", Some("slow.jpg"), &photo)]);
    let upload_head = format!(
        "POST /medications HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=slow\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    );
    let mut heads = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..250 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        heads.push(s);
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(upload_head.as_bytes()).unwrap();
        s.write_all(&upload[..1200]).unwrap();
        bodies.push(s);
    }
    let dir = server.dir("medications");
    // NOTE: generous, for a loaded CI machine running a debug build; it bounds a wait, not speed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = || {
        entries(&dir)
            .iter()
            .filter(|n| n.starts_with(".upload-"))
            .count()
    };
    while started() < 250 {
        assert!(
            Instant::now() < deadline,
            "only {} of the 250 slow uploads started",
            started()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Keep every client trickling (one byte each per 200 ms) while reads are timed.
    let trickle = std::thread::spawn(move || {
        for offset in 1200..1215 {
            for s in heads.iter_mut() {
                let _ = s.write_all(b"a");
            }
            for s in bodies.iter_mut() {
                let _ = s.write_all(&upload[offset..offset + 1]);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (heads, bodies)
    });
    let (p50_loaded, p99_loaded) = get_latencies(&server, &url, 300);
    let (heads, bodies) = trickle.join().unwrap();

    println!(
        "slow clients: 500 connected (250 slow heads, 250 slow bodies); GET p50/p99 {p50_idle:.2}/{p99_idle:.2} ms \
         unloaded, {p50_loaded:.2}/{p99_loaded:.2} ms loaded"
    );
    assert!(
        p99_loaded < (p99_idle * 10.0).max(50.0),
        "reads slowed: p99 {p99_loaded:.2} ms vs {p99_idle:.2} ms"
    );

    // Heads never completed within 5 s of connecting: closed. Bodies went silent: 408 and gone.
    let started = Instant::now();
    for (kind, streams) in [("head", heads), ("body", bodies)] {
        for mut s in streams {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut answer = Vec::new();
            let closed = s.read_to_end(&mut answer).is_ok();
            let text = String::from_utf8_lossy(&answer);
            assert!(
                closed || text.contains(" 408 "),
                "a slow {kind} was not cut off: {text:?}"
            );
            if kind == "body" {
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        server
            .entries("medications")
            .iter()
            .all(|n| !n.starts_with('.')),
        "{:?}",
        server.entries("medications")
    );
    assert_eq!(server.client.get(&url).send().unwrap().status(), 200);
}
