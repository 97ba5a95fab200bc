//! Who may write: the bearer-token matrix over real HTTP, the token file and its rotation, and
//! the loopback-only rule when no token is configured.

mod common;

use actix_web::test as actix_test;
use botilyx_media::app::{AppState, app};
use botilyx_media::storage::Storage;
use botilyx_media::{Cli, Config};
use clap::Parser;
use common::*;

const TOKEN: &str = "b0tilyx-upload-token-with-enough-entropy";

fn upload_with(server: &TestServer, authorization: Option<&str>) -> reqwest::blocking::Response {
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(fixture("images/astronaut-small.jpg"))
            .file_name("a.jpg"),
    );
    let mut request = server
        .client
        .post(server.url("/medications"))
        .multipart(form);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().unwrap()
}

#[test]
fn with_a_token_only_the_exact_bearer_token_may_upload() {
    let server = TestServer::start(&["--upload-token", TOKEN]);
    let last_byte_differs = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
    let extra_space = format!("Bearer  {TOKEN}");
    let suffixed = format!("Bearer {TOKEN}.");
    let long = format!("Bearer {}", "a".repeat(8000));
    let refused = [
        None,
        Some("Bearer wrong"),
        Some(last_byte_differs.as_str()),
        Some(extra_space.as_str()),
        Some(suffixed.as_str()),
        Some(long.as_str()),
        Some("Basic Ym90aWx5eDpwYXNz"),
        Some("Bearer"),
        Some(TOKEN),
    ];
    for authorization in refused {
        let response = upload_with(&server, authorization);
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert!(server.entries("medications").is_empty());

    let response = upload_with(&server, Some(&format!("Bearer {TOKEN}")));
    assert_eq!(response.status(), 201);
    let response = upload_with(&server, Some(&format!("bearer {TOKEN}")));
    assert_eq!(response.status(), 201, "the scheme is case-insensitive");

    // NOTE: HTTP drops white space around a field value before any handler sees it (RFC 9110
    // §5.5), so a trailing space on the wire is no part of the token; it still matches.
    let response = upload_with(&server, Some(&format!("Bearer {TOKEN} ")));
    assert_eq!(response.status(), 201);
}

#[test]
fn with_a_token_deletes_need_it_too() {
    let server = TestServer::start(&["--upload-token", TOKEN]);
    let (status, body) = server.upload(
        "medications",
        "a.jpg",
        fixture("images/rocket.jpg"),
        Some(TOKEN),
    );
    assert_eq!(status, 201);
    let url = server.url(body["files"][0]["url"].as_str().unwrap());

    assert_eq!(server.client.delete(&url).send().unwrap().status(), 401);
    assert_eq!(
        server
            .client
            .delete(&url)
            .bearer_auth("wrong")
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(server.entries("medications").len(), 1);
    assert_eq!(
        server
            .client
            .delete(&url)
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .status(),
        204
    );

    // Reading never needs the token.
    let (_, body) = server.upload(
        "medications",
        "b.jpg",
        fixture("images/rocket.jpg"),
        Some(TOKEN),
    );
    let url = server.url(body["files"][0]["url"].as_str().unwrap());
    assert_eq!(server.client.get(&url).send().unwrap().status(), 200);
}

#[test]
fn without_a_token_loopback_clients_may_write() {
    let server = TestServer::start(&[]);
    assert_eq!(upload_with(&server, None).status(), 201);
}

#[test]
fn a_rotated_token_file_takes_effect_without_a_restart() {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let server = TestServer::start(&["--upload-token-file", token_file.to_str().unwrap()]);

    assert_eq!(
        upload_with(&server, Some("Bearer first-token")).status(),
        201,
        "trailing newline ignored"
    );

    // Kubernetes swaps a Secret's file by renaming a new one into place.
    let staged = secrets.path().join("token.new");
    std::fs::write(&staged, "second-token\n").unwrap();
    std::fs::rename(&staged, &token_file).unwrap();

    assert_eq!(
        upload_with(&server, Some("Bearer first-token")).status(),
        401
    );
    assert_eq!(
        upload_with(&server, Some("Bearer second-token")).status(),
        201
    );

    // A token file that disappears fails closed.
    std::fs::remove_file(&token_file).unwrap();
    let response = upload_with(&server, Some("Bearer second-token"));
    assert_eq!(response.status(), 500);
    assert_eq!(server.entries("medications").len(), 2);
}

/// A client off this machine cannot be made on loopback, so this drives the real `App`
/// in-process with the peer address a remote client would have.
#[actix_web::test]
async fn without_a_token_remote_clients_are_refused_with_403() {
    let data = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from(["botilyx-media", "--data-dir", data.path().to_str().unwrap()])
        .unwrap();
    let config = Config::from_options(cli.options).unwrap();
    let storage = botilyx_media::app::prepare_storage(&config).unwrap();
    let collections = config.collections.clone();
    let service = actix_test::init_service(app(AppState::new(config, storage))).await;

    let boundary = "b0undary";
    let jpeg = fixture("images/astronaut-small.jpg");
    for (peer, status) in [
        ("203.0.113.7:5000", 403),
        ("[2001:db8::1]:5000", 403),
        ("127.0.0.1:5000", 201),
        ("[::ffff:127.0.0.1]:5000", 201),
    ] {
        let request = actix_test::TestRequest::post()
            .uri("/medications")
            .peer_addr(peer.parse().unwrap())
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            ))
            .set_payload(multipart_body(boundary, &[("file", Some("a.jpg"), &jpeg)]))
            .to_request();
        let response = actix_test::call_service(&service, request).await;
        assert_eq!(response.status().as_u16(), status, "{peer}");
        if status == 403 {
            let body: serde_json::Value = actix_test::read_body_json(response).await;
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }
    let storage = Storage::new(data.path(), &collections);
    let dir = &storage.collection("medications").unwrap().dir;
    assert_eq!(
        entries(dir).len(),
        2,
        "only the two loopback uploads are stored"
    );
}
