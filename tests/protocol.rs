//! Protocol abuse over raw TCP: chunked uploads, `Expect: 100-continue`, conflicting framing,
//! pipelining, oversized headers, a boundary string inside the data.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn upload_head(extra: &str) -> String {
    format!(
        "POST /medications HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=pb\r\n{extra}\r\n"
    )
}

#[test]
fn a_chunked_upload_is_stored_intact() {
    let server = TestServer::start(&[]);
    let photo = fixture("images/retina.jpg");
    let body = multipart_body("pb", &[("file", Some("r.jpg"), &photo)]);
    let mut request = upload_head("Transfer-Encoding: chunked\r\n").into_bytes();
    for chunk in body.chunks(7000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_request(server.addr, &request);
    assert_eq!(status, 201, "{text}");
    let names = server.entries("medications");
    assert_eq!(
        std::fs::read(server.dir("medications").join(&names[0])).unwrap(),
        photo
    );
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = TestServer::start(&[]);
    let photo = fixture("images/phone-photo-gps.jpg");
    let body = multipart_body("pb", &[("file", Some("p.jpg"), &photo)]);
    let head = upload_head(&format!(
        "Content-Length: {}\r\nExpect: 100-continue\r\n",
        body.len()
    ));

    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    stream.write_all(&body).unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("HTTP/1.1 201"), "{rest}");
}

#[test]
fn conflicting_content_length_and_transfer_encoding_is_refused_and_stores_nothing() {
    let server = TestServer::start(&[]);
    let photo = fixture("images/astronaut-small.jpg");
    let body = multipart_body("pb", &[("file", Some("a.jpg"), &photo)]);
    let mut request =
        upload_head("Content-Length: 10\r\nTransfer-Encoding: chunked\r\n").into_bytes();
    request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    request.extend_from_slice(&body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, text) = raw_request(server.addr, &request);
    assert_eq!(status, 400, "{text}");

    let duplicate = upload_head("Content-Length: 10\r\nContent-Length: 20\r\n");
    let (status, text) = raw_request(server.addr, duplicate.as_bytes());
    assert_eq!(status, 400, "{text}");
    assert!(server.entries("medications").is_empty());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(&[]);
    std::fs::write(
        server.dir("medications").join("a.jpg"),
        fixture("images/astronaut-small.jpg"),
    )
    .unwrap();
    let request = "GET /medications/a.jpg HTTP/1.1\r\nHost: x\r\n\r\nGET /medications/missing.jpg HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (_, text) = raw_request(server.addr, request.as_bytes());
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"]);
}

#[test]
fn oversized_request_headers_are_refused() {
    let server = TestServer::start(&[]);
    // actix-http buffers at most 128 KiB of request head and 96 header fields.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let (status, _) = raw_request(server.addr, request.as_bytes());
    assert_eq!(status, 431);

    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let (status, _) = raw_request(server.addr, request.as_bytes());
    assert!(status == 431 || status == 400, "{status}");
}

#[test]
fn a_boundary_like_string_inside_the_data_is_kept_as_data() {
    let server = TestServer::start(&[]);
    let mut photo = fixture("images/astronaut-small.jpg");
    // Only CRLF followed by `--pb` delimits; the same bytes elsewhere are data.
    photo.extend_from_slice(b"--pb--\r\n-pb --pb\r\n--p\r\n");
    let body = multipart_body("pb", &[("file", Some("a.jpg"), &photo)]);
    let mut request = upload_head(&format!("Content-Length: {}\r\n", body.len())).into_bytes();
    request.extend_from_slice(&body);
    let (status, text) = raw_request(server.addr, &request);
    assert_eq!(status, 201, "{text}");
    let names = server.entries("medications");
    assert_eq!(
        std::fs::read(server.dir("medications").join(&names[0])).unwrap(),
        photo
    );
}

#[test]
fn a_client_that_goes_away_mid_upload_leaves_nothing() {
    let server = TestServer::start(&[]);
    let photo = fixture("images/phone-photo-gps.jpg");
    let body = multipart_body("pb", &[("file", Some("p.jpg"), &photo)]);
    {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(upload_head(&format!("Content-Length: {}\r\n", body.len())).as_bytes())
            .unwrap();
        stream.write_all(&body[..body.len() / 2]).unwrap();
        wait_until(Duration::from_secs(10), "the upload to start", || {
            !server.entries("medications").is_empty()
        });
    }
    wait_until(Duration::from_secs(10), "the temporary file to go", || {
        server.entries("medications").is_empty()
    });
    assert_eq!(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn an_upload_trickling_past_the_whole_request_deadline_is_cut_off_and_leaves_nothing() {
    let server = TestServer::start(&["--upload-timeout-secs", "1", "--body-idle-secs", "5"]);
    let photo = fixture("images/rocket.jpg");
    let body = multipart_body("pb", &[("file", Some("r.jpg"), &photo)]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(upload_head(&format!("Content-Length: {}\r\n", body.len())).as_bytes())
        .unwrap();

    // One small piece every 200 ms: never idle for long, but never done within a second.
    let started = std::time::Instant::now();
    for piece in body.chunks(1024).take(15) {
        if stream.write_all(piece).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        server.entries("medications").is_empty(),
        "{:?}",
        server.entries("medications")
    );
}

#[test]
fn a_link_swapped_in_for_the_temporary_file_during_an_upload_is_never_published() {
    let server = TestServer::start(&[]);
    let dir = server.dir("medications");
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.jpg");
    std::fs::write(&secret, "TOP-SECRET").unwrap();

    let photo = fixture("images/phone-photo-gps.jpg");
    let body = multipart_body("pb", &[("file", Some("p.jpg"), &photo)]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(upload_head(&format!("Content-Length: {}\r\n", body.len())).as_bytes())
        .unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    let temporary = || {
        entries(&dir)
            .into_iter()
            .find(|n| n.starts_with(".upload-"))
    };
    wait_until(Duration::from_secs(10), "the upload to start", || {
        temporary().is_some()
    });
    let temp = temporary().unwrap();

    std::fs::remove_file(dir.join(&temp)).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join(&temp)).unwrap();
    stream.write_all(&body[body.len() / 2..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();

    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP-SECRET");
}

#[test]
fn an_oversized_part_header_is_refused_and_stores_nothing() {
    let server = TestServer::start(&[]);
    let mut body = format!(
        "--pb\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.jpg\"\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    )
    .into_bytes();
    body.extend_from_slice(&fixture("images/astronaut-small.jpg"));
    body.extend_from_slice(b"\r\n--pb--\r\n");
    let mut request = upload_head(&format!("Content-Length: {}\r\n", body.len())).into_bytes();
    request.extend_from_slice(&body);
    let (status, text) = raw_request(server.addr, &request);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("malformed_multipart"), "{text}");
    assert!(server.entries("medications").is_empty());
}
