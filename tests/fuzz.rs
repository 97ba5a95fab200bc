//! Property tests: random and mutated input into the upload path and into name and range
//! handling. Whatever the input: no panic, no 5xx, no file outside its collection, no file kept
//! from a refused request. `PROPTEST_CASES=100000 cargo test --release --test fuzz` runs longer.

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
}
