//! Property tests: random and mutated input into the upload path and into name and range
//! handling. Whatever the input: no panic, no 5xx, no file outside its collection, no file kept
//! from a refused request. Conditional and ranged reads of stored files, on both the fast path
//! and the `NamedFile` path, always give the file's exact bytes or an empty 304. `PROPTEST_CASES=100000 cargo test --release --test fuzz` runs longer.

mod common;

use actix_web::test as actix_test;
use botilyx_media::app::{AppState, app, prepare_storage};
use botilyx_media::image_type::ImageType;
use botilyx_media::naming::{check_requested_name, stored_name};
use botilyx_media::{Cli, Config};
use clap::Parser;
use common::*;
use proptest::prelude::*;

/// Runs one request against the real `App` over a fresh data folder; returns the status and
/// every file now under the data folder (relative paths).
fn run_once(
    method: &str,
    uri: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> (u16, Vec<String>) {
    let data = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from([
        "botilyx-media",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--max-upload-bytes",
        "40000",
    ])
    .unwrap();
    let config = Config::from_options(cli.options).unwrap();
    let storage = prepare_storage(&config).unwrap();
    let state = AppState::new(config, storage);

    let status = actix_web::rt::System::new().block_on(async move {
        let service = actix_test::init_service(app(state)).await;
        let mut request = actix_test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .peer_addr("127.0.0.1:9".parse().unwrap());
        for (name, value) in headers {
            request = request.insert_header((name, value));
        }
        let response =
            actix_test::call_service(&service, request.set_payload(body).to_request()).await;
        response.status().as_u16()
    });

    let mut files = Vec::new();
    for entry in walk(data.path()) {
        files.push(
            entry
                .strip_prefix(data.path())
                .unwrap()
                .display()
                .to_string(),
        );
    }
    (status, files)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The answer to a plain GET and then to `method` with `headers`, for `bytes` stored as
/// `medications/<name>` with a modification time an hour ago (so small files are cached).
fn read_stored(
    bytes: &[u8],
    name: &str,
    method: &str,
    headers: impl FnOnce(&str, &str) -> Vec<(String, String)>,
) -> (u16, actix_web::http::header::HeaderMap, Vec<u8>) {
    let data = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from(["botilyx-media", "--data-dir", data.path().to_str().unwrap()])
        .unwrap();
    let config = Config::from_options(cli.options).unwrap();
    let storage = prepare_storage(&config).unwrap();
    let path = data.path().join("medications").join(name);
    std::fs::write(&path, bytes).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let state = AppState::new(config, storage);
    let uri = format!("/medications/{name}");

    actix_web::rt::System::new().block_on(async move {
        let service = actix_test::init_service(app(state)).await;
        let first = actix_test::call_service(
            &service,
            actix_test::TestRequest::get().uri(&uri).to_request(),
        )
        .await;
        let header = |n: &str| first.headers().get(n).unwrap().to_str().unwrap().to_owned();
        let (etag, modified) = (header("etag"), header("last-modified"));
        let mut request = actix_test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(&uri);
        for (name, value) in headers(&etag, &modified) {
            request = request.insert_header((name, value));
        }
        let response = actix_test::call_service(&service, request.to_request()).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = actix_test::read_body(response).await.to_vec();
        (status, headers, body)
    })
}

/// A multipart body whose parts are built from random pieces, some of them real images.
fn body_strategy() -> impl Strategy<Value = (String, Vec<u8>)> {
    let images: Vec<Vec<u8>> = [
        "images/astronaut-small.jpg",
        "images/animated.gif",
        "hostile/html-disguised.jpg",
        "hostile/empty.jpg",
    ]
    .iter()
    .map(|p| fixture(p))
    .collect();
    let part = (
        prop::option::of("[ -~]{0,40}"),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            (
                0..images.len(),
                prop::collection::vec(any::<u8>(), 0..64),
                0usize..30000
            )
                .prop_map(move |(i, junk, cut)| {
                    let mut bytes = images[i].clone();
                    bytes.truncate(cut.max(1));
                    bytes.extend(junk);
                    bytes
                }),
        ],
    );
    (
        "[a-zA-Z0-9]{1,20}",
        prop::collection::vec(part, 0..4),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(boundary, parts, close, tail)| {
            let mut body = Vec::new();
            for (filename, bytes) in parts {
                body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                match filename {
                    Some(f) => body.extend_from_slice(
                        format!(
                            "Content-Disposition: form-data; name=\"f\"; filename=\"{}\"\r\n\r\n",
                            f.replace('"', "")
                        )
                        .as_bytes(),
                    ),
                    None => body
                        .extend_from_slice(b"Content-Disposition: form-data; name=\"t\"\r\n\r\n"),
                }
                body.extend_from_slice(&bytes);
                body.extend_from_slice(b"\r\n");
            }
            if close {
                body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            }
            body.extend(tail);
            (boundary, body)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_uploads_never_fail_on_the_server_side_nor_keep_files_from_refusals((boundary, body) in body_strategy()) {
        let headers = vec![("content-type".to_owned(), format!("multipart/form-data; boundary={boundary}"))];
        let (status, files) = run_once("POST", "/medications", headers, body);
        prop_assert!(status < 500, "status {status}");
        for file in &files {
            prop_assert!(file.starts_with("medications/"), "file outside the collection: {file}");
            prop_assert!(!file.contains("/."), "temporary or hidden file left: {file}");
        }
        if status != 201 {
            prop_assert!(files.is_empty(), "refused ({status}) but kept {files:?}");
        } else {
            prop_assert!(!files.is_empty());
        }
    }

    #[test]
    fn random_paths_and_ranges_never_fail_on_the_server_side(
        name in "[ -~]{0,80}",
        range in "(bytes=)?[0-9,\\- ]{0,20}",
        method in prop_oneof![Just("GET"), Just("HEAD"), Just("DELETE")],
    ) {
        let encoded: String = name.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        let uri = format!("/medications/{encoded}");
        let (status, files) = run_once(method, &uri, vec![("range".to_owned(), range)], Vec::new());
        prop_assert!(status < 500, "{method} {uri}: {status}");
        prop_assert!(files.is_empty(), "{files:?}");
    }

    #[test]
    fn stored_names_are_always_one_safe_visible_component(original in any::<String>(), collection in "[a-z0-9-]{1,20}") {
        let name = stored_name(Some(&original), &collection, ImageType::Webp);
        prop_assert!(check_requested_name(&name).is_ok(), "{name}");
        prop_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'), "{name}");
        prop_assert!(name.len() <= 48 + 1 + 26 + 5, "{name}");
        prop_assert!(name.ends_with(".webp"));
    }

    #[test]
    fn requested_names_with_separators_or_control_characters_are_refused(prefix in ".{0,10}", bad in prop_oneof![Just('/'), Just('\\'), Just('\0'), Just('\n'), Just('\u{7f}')], suffix in ".{0,10}") {
        let name = format!("{prefix}{bad}{suffix}");
        prop_assert!(check_requested_name(&name).is_err());
    }

    #[test]
    fn conditional_and_ranged_reads_give_the_exact_file_or_an_empty_304(
        large in any::<bool>(),
        head in any::<bool>(),
        none_match in prop_oneof![
            Just(None),
            Just(Some("{etag}")),
            Just(Some("W/{etag}")),
            Just(Some("\"x\", {etag}")),
            Just(Some("*")),
            Just(Some("\"a\", *")),
            "[ -~]{0,30}".prop_map(|s| Some(Box::leak(s.into_boxed_str()) as &str)),
        ],
        modified_since in prop_oneof![
            Just(None),
            Just(Some("{modified}")),
            Just(Some("Thu, 01 Jan 1970 00:00:00 GMT")),
            Just(Some("Fri, 01 Jan 2100 00:00:00 GMT")),
            Just(Some("yesterday")),
        ],
        if_match in prop_oneof![Just(None), Just(Some("*")), Just(Some("{etag}")), Just(Some("\"x\""))],
        range in prop::option::of("(bytes=)?[0-9,\\- ]{0,14}"),
    ) {
        let (fixture_path, name) = if large {
            ("images/rocket.jpg", "p.jpg")
        } else {
            ("images/astronaut-small.jpg", "p.jpg")
        };
        let bytes = fixture(fixture_path);
        let method = if head { "HEAD" } else { "GET" };
        let mut sent = Vec::new();
        let (status, headers, body) = read_stored(&bytes, name, method, |etag, modified| {
            let fill = |t: &str| t.replace("{etag}", etag).replace("{modified}", modified);
            let mut out = Vec::new();
            if let Some(v) = none_match { out.push(("if-none-match".to_owned(), fill(v))); }
            if let Some(v) = modified_since { out.push(("if-modified-since".to_owned(), fill(v))); }
            if let Some(v) = if_match { out.push(("if-match".to_owned(), fill(v))); }
            if let Some(v) = &range { out.push(("range".to_owned(), v.clone())); }
            sent = out.clone();
            out
        });
        let context = format!("{method} {fixture_path} {sent:?} -> {status}");
        prop_assert!([200, 206, 304, 400, 412, 416].contains(&status), "{context}");
        match status {
            200 => {
                // NOTE: Content-Length and HEAD's empty body are the HTTP layer's work, not the
                // App's; the real-server tests check them.
                if !head {
                    prop_assert!(body == bytes, "{context}: body differs");
                }
            }
            206 => {
                let content_range = headers.get("content-range").unwrap().to_str().unwrap().to_owned();
                let (span, total) = content_range.strip_prefix("bytes ").unwrap().split_once('/').unwrap();
                prop_assert_eq!(total.parse::<usize>().unwrap(), bytes.len(), "{}", context);
                let (a, b) = span.split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                if !head {
                    prop_assert!(body == bytes[a..=b], "{context}: range body differs");
                }
            }
            304 => {
                prop_assert!(body.is_empty(), "{context}");
                prop_assert!(none_match.is_some() || modified_since.is_some(), "{context}");
            }
            _ => prop_assert!(body.is_empty() || body.starts_with(b"{"), "{context}: JSON error body"),
        }
        // The browser's revalidation: its own ETag, nothing else that changes the answer.
        let plain_revalidation = matches!(none_match, Some("{etag}") | Some("W/{etag}") | Some("\"x\", {etag}"))
            && if_match.is_none() && range.is_none();
        if plain_revalidation {
            prop_assert_eq!(status, 304, "{}", context);
        }
    }
}
