//! Uploads over real HTTP: every fixture image stored and read back byte-identical, every hostile
//! fixture refused with nothing left on disk, limits, naming, all-or-nothing requests, deletes.

mod common;

use common::*;
use reqwest::blocking::multipart::{Form, Part};

#[test]
fn every_fixture_image_is_stored_and_read_back_byte_identical_with_its_type() {
    let server = TestServer::start(&[]);
    for (fixture_path, content_type, ext) in IMAGES {
        let bytes = fixture(fixture_path);
        let original = fixture_path.rsplit('/').next().unwrap();

        let (status, body) = server.upload("medications", original, bytes.clone(), None);
        assert_eq!(status, 201, "{fixture_path}: {body}");
        let stored = &body["files"][0];
        let name = stored["name"].as_str().unwrap();
        assert!(name.ends_with(&format!(".{ext}")), "{name}");
        assert_eq!(stored["content_type"], *content_type);
        assert_eq!(stored["size"], bytes.len());
        assert_eq!(stored["sha256"], sha256_hex(&bytes));
        assert_eq!(stored["url"], format!("/medications/{name}"));

        let response = server
            .client
            .get(server.url(&format!("/medications/{name}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], *content_type);
        assert_eq!(
            response.bytes().unwrap().as_ref(),
            bytes.as_slice(),
            "{fixture_path} differs over HTTP"
        );
        assert_eq!(
            std::fs::read(server.dir("medications").join(name)).unwrap(),
            bytes,
            "{fixture_path} differs on disk"
        );
    }
    assert_eq!(
        server.entries("medications").len(),
        IMAGES.len(),
        "no temporary or extra files"
    );
}

#[test]
fn created_response_has_location_of_the_first_file() {
    let server = TestServer::start(&[]);
    let form = Form::new()
        .part(
            "a",
            Part::bytes(fixture("images/rocket.jpg")).file_name("rocket.jpg"),
        )
        .part(
            "b",
            Part::bytes(fixture("images/chelsea.png")).file_name("chelsea.png"),
        );
    let response = server
        .client
        .post(server.url("/treatment-images"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["files"].as_array().unwrap().len(), 2);
    assert_eq!(location, body["files"][0]["url"]);
    assert!(location.starts_with("/treatment-images/rocket-"));
}

#[test]
fn hostile_fixtures_are_refused_with_their_code_and_leave_nothing_on_disk() {
    let server = TestServer::start(&[]);
    let cases = [
        (
            "hostile/html-disguised.jpg",
            415,
            "unsupported_type",
            "text/html",
        ),
        (
            "hostile/script.svg",
            415,
            "unsupported_type",
            "not a recognised image",
        ),
        (
            "hostile/elf-renamed.png",
            415,
            "unsupported_type",
            "application/x-executable",
        ),
        (
            "hostile/leaflet.pdf",
            415,
            "unsupported_type",
            "application/pdf",
        ),
        ("hostile/empty.jpg", 400, "empty_file", "empty"),
    ];
    for (path, status, code, detail) in cases {
        let name = path.rsplit('/').next().unwrap();
        let (got, body) = server.upload("medications", name, fixture(path), None);
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(detail), "{path}: {message}");
        assert!(
            server.entries("medications").is_empty(),
            "{path} left {:?}",
            server.entries("medications")
        );
    }
}

#[test]
fn a_jpeg_carrying_html_is_stored_and_served_only_as_a_jpeg() {
    let server = TestServer::start(&[]);
    let bytes = fixture("hostile/jpeg-with-trailing-html.jpg");
    let (status, body) = server.upload("medications", "page.html", bytes.clone(), None);
    assert_eq!(status, 201, "{body}");
    let name = body["files"][0]["name"].as_str().unwrap();
    assert!(name.ends_with(".jpg"), "{name}");

    let response = server
        .client
        .get(server.url(&format!("/medications/{name}")))
        .send()
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(response.bytes().unwrap().as_ref(), bytes.as_slice());
}

#[test]
fn the_clients_type_and_extension_are_not_trusted() {
    let server = TestServer::start(&[]);
    let part = Part::bytes(fixture("images/chelsea.png"))
        .file_name("photo.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    let (status, body) = server.post_form("medications", Form::new().part("file", part), None);
    assert_eq!(status, 201);
    assert_eq!(body["files"][0]["content_type"], "image/png");
    assert!(body["files"][0]["name"].as_str().unwrap().ends_with(".png"));

    let (status, _) = server.upload(
        "medications",
        "photo.jpg",
        b"<html><script>alert(1)</script>".to_vec(),
        None,
    );
    assert_eq!(status, 415);
}

#[test]
fn only_allowed_types_are_accepted() {
    let server = TestServer::start(&["--allowed-types", "jpeg,png"]);
    let (status, body) = server.upload(
        "medications",
        "a.webp",
        fixture("images/astronaut.webp"),
        None,
    );
    assert_eq!(status, 415);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("image/webp"),
        "{body}"
    );
    let (status, _) = server.upload("medications", "a.png", fixture("images/chelsea.png"), None);
    assert_eq!(status, 201);
}

#[test]
fn files_over_the_size_limit_are_refused_with_413_and_leave_nothing() {
    let server = TestServer::start(&["--max-upload-bytes", "100000"]);
    let small = fixture("images/astronaut-small.jpg");

    let mut exact = small.clone();
    exact.resize(100_000, 0);
    let (status, _) = server.upload("medications", "exact.jpg", exact, None);
    assert_eq!(status, 201, "a file of exactly the limit is accepted");

    let mut over = small.clone();
    over.resize(100_001, 0);
    let (status, body) = server.upload("medications", "over.jpg", over, None);
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100000")
    );

    let (status, _) = server.upload(
        "medications",
        "phone.jpg",
        fixture("images/phone-photo-gps.jpg"),
        None,
    );
    assert_eq!(status, 413);
    assert_eq!(
        server.entries("medications").len(),
        1,
        "{:?}",
        server.entries("medications")
    );
}

#[test]
fn a_body_far_over_the_limit_is_refused_without_being_read() {
    let server = TestServer::start(&["--max-upload-bytes", "1000"]);
    // 10 files × 1000 bytes + 1 MiB of slack is the most a request may declare.
    let request = "POST /medications HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000000000\r\n\r\n";
    let (status, text) = raw_request(server.addr, request.as_bytes());
    assert_eq!(status, 413, "{text}");
    assert!(server.entries("medications").is_empty());
}

#[test]
fn a_request_is_all_or_nothing() {
    let server = TestServer::start(&[]);
    let form = Form::new()
        .part(
            "a",
            Part::bytes(fixture("images/rocket.jpg")).file_name("rocket.jpg"),
        )
        .part(
            "b",
            Part::bytes(fixture("images/chelsea.png")).file_name("chelsea.png"),
        )
        .part(
            "c",
            Part::bytes(fixture("hostile/html-disguised.jpg")).file_name("bad.jpg"),
        );
    let (status, body) = server.post_form("medications", form, None);
    assert_eq!(status, 415, "{body}");
    assert!(
        server.entries("medications").is_empty(),
        "{:?}",
        server.entries("medications")
    );
}

#[test]
fn at_most_ten_files_per_request() {
    let server = TestServer::start(&[]);
    let small = fixture("images/astronaut-small.jpg");
    let form = |n: usize| {
        (0..n).fold(Form::new(), |form, i| {
            form.part(
                format!("f{i}"),
                Part::bytes(small.clone()).file_name(format!("p{i}.jpg")),
            )
        })
    };

    let (status, body) = server.post_form("medications", form(11), None);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "too_many_files");
    assert!(server.entries("medications").is_empty());

    let (status, body) = server.post_form("medications", form(10), None);
    assert_eq!(status, 201);
    assert_eq!(body["files"].as_array().unwrap().len(), 10);
    assert_eq!(server.entries("medications").len(), 10);

    // Blank file inputs count towards the limit too.
    let blank = || Part::bytes(Vec::new()).file_name("");
    let many_blank = (0..20).fold(form(1), |f, i| f.part(format!("blank{i}"), blank()));
    let (status, body) = server.post_form("medications", many_blank, None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "too_many_files");
    let (status, _) = server.post_form("medications", form(1).part("blank", blank()), None);
    assert_eq!(status, 201, "one blank input beside a file is ignored");
}

#[test]
fn text_fields_are_ignored_but_a_request_without_a_file_is_refused() {
    let server = TestServer::start(&[]);
    let (status, body) = server.post_form("medications", Form::new().text("note", "hola"), None);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "no_file");

    let form = Form::new().text("note", "hola").part(
        "file",
        Part::bytes(fixture("images/rocket.jpg")).file_name("r.jpg"),
    );
    let (status, _) = server.post_form("medications", form, None);
    assert_eq!(status, 201);
}

#[test]
fn malformed_bodies_get_400_and_store_nothing() {
    let server = TestServer::start(&[]);
    let jpeg = fixture("images/astronaut-small.jpg");

    // Not multipart at all.
    let response = server
        .client
        .post(server.url("/medications"))
        .header("content-type", "image/jpeg")
        .body(jpeg.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "malformed_multipart");

    // Multipart without its closing boundary.
    let mut body = multipart_body("xyz", &[("file", Some("a.jpg"), &jpeg)]);
    body.truncate(body.len() - "--xyz--\r\n".len());
    let request = [raw_upload_head("xyz", body.len()).into_bytes(), body].concat();
    let (status, text) = raw_request(server.addr, &request);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("malformed_multipart"), "{text}");
    assert!(
        server.entries("medications").is_empty(),
        "{:?}",
        server.entries("medications")
    );
}

#[test]
fn stored_names_are_safe_unique_and_keep_a_hint_of_the_original() {
    let server = TestServer::start(&[]);
    let cases = [
        ("Ibuprofeno 600mg.JPG", "ibuprofeno-600mg-"),
        ("../../../etc/passwd.jpg", "passwd-"),
        ("<script>.jpg", "script-"),
        ("ñandú.jpg", "and-"),
        ("", "medications-"),
    ];
    for (original, prefix) in cases {
        let (status, body) = server.upload(
            "medications",
            original,
            fixture("images/astronaut-small.jpg"),
            None,
        );
        assert_eq!(status, 201, "{original:?}: {body}");
        let name = body["files"][0]["name"].as_str().unwrap();
        let id = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".jpg"))
            .unwrap_or_else(|| panic!("{original:?} gave {name}"));
        assert_eq!(id.len(), 26, "{name}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{name}"
        );
    }
}

#[test]
fn fifty_concurrent_uploads_of_one_name_give_fifty_distinct_intact_files() {
    let server = TestServer::start(&[]);
    let photo = fixture("images/rocket.jpg");
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    let (status, body) =
                        server.upload("medications", "same.jpg", photo.clone(), None);
                    assert_eq!(status, 201, "{body}");
                    body["files"][0]["name"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 50);
    assert_eq!(
        server.entries("medications"),
        unique,
        "exactly the 50 files, nothing else"
    );
    for name in &unique {
        assert_eq!(
            std::fs::read(server.dir("medications").join(name)).unwrap(),
            photo,
            "{name}"
        );
    }
}

#[test]
fn files_written_in_many_batches_are_stored_intact_even_several_at_once() {
    let server = TestServer::start(&[]);
    // A real JPEG followed by bytes that differ everywhere, so a lost, repeated or reordered
    // piece of any write changes the stored file.
    let mut big = fixture("images/phone-photo-gps.jpg");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while big.len() < 6_000_000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        big.extend_from_slice(&state.to_le_bytes());
    }

    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let (status, body) = server.upload("medications", "big.jpg", big.clone(), None);
                    assert_eq!(status, 201, "{body}");
                    assert_eq!(body["files"][0]["size"], big.len());
                    assert_eq!(body["files"][0]["sha256"], sha256_hex(&big));
                    body["files"][0]["name"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    assert_eq!(server.entries("medications").len(), 4, "no temporary files");
    for name in &names {
        assert!(
            std::fs::read(server.dir("medications").join(name)).unwrap() == big,
            "{name} differs on disk"
        );
    }
}

#[test]
fn unknown_collections_are_404() {
    let server = TestServer::start(&[]);
    let (status, body) =
        server.upload("prescriptions", "a.jpg", fixture("images/rocket.jpg"), None);
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(!server.data.path().join("prescriptions").exists());
}

#[test]
fn configured_collections_replace_the_defaults() {
    let server = TestServer::start(&["--collections", "recetas"]);
    let (status, _) = server.upload("recetas", "a.jpg", fixture("images/rocket.jpg"), None);
    assert_eq!(status, 201);
    let (status, _) = server.upload("medications", "a.jpg", fixture("images/rocket.jpg"), None);
    assert_eq!(status, 404);
}

#[test]
fn delete_removes_a_file_and_then_answers_404() {
    let server = TestServer::start(&[]);
    let (_, body) = server.upload("medications", "a.jpg", fixture("images/rocket.jpg"), None);
    let url = server.url(body["files"][0]["url"].as_str().unwrap());

    assert_eq!(server.client.delete(&url).send().unwrap().status(), 204);
    assert!(server.entries("medications").is_empty());
    assert_eq!(server.client.get(&url).send().unwrap().status(), 404);

    let response = server.client.delete(&url).send().unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let (status, _) = raw_request(server.addr, b"DELETE /medications/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(status == 400 || status == 404, "{status}");

    // Only regular files are deleted: links and folders an operator placed stay.
    let dir = server.dir("medications");
    std::os::unix::fs::symlink("/", dir.join("root")).unwrap();
    std::fs::create_dir(dir.join("folder")).unwrap();
    for name in ["root", "folder", ".hidden"] {
        let response = server
            .client
            .delete(server.url(&format!("/medications/{name}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), 404, "{name}");
    }
    assert!(std::fs::symlink_metadata(dir.join("root")).is_ok() && dir.join("folder").is_dir());
}

#[test]
fn a_part_named_only_with_rfc_5987_filename_star_is_a_file() {
    let server = TestServer::start(&[]);
    let jpeg = fixture("images/astronaut-small.jpg");
    let mut body = b"--q\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8''caf%C3%A9%20Foto.jpg\r\n\r\n".to_vec();
    body.extend_from_slice(&jpeg);
    body.extend_from_slice(b"\r\n--q--\r\n");
    let head = raw_upload_head("q", body.len());
    let (status, text) = raw_request(server.addr, &[head.into_bytes(), body].concat());
    assert_eq!(status, 201, "{text}");
    assert!(text.contains("\"name\":\"caf-foto-"), "{text}");
}
