//! `/healthz` and `/readyz` over real HTTP: ready only while every collection folder can be
//! written now.

mod common;

use common::*;

#[test]
fn healthz_answers_200_while_the_process_serves() {
    let server = TestServer::start(&[]);
    let response = server.client.get(server.url("/healthz")).send().unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn readyz_turns_503_naming_the_collection_when_its_folder_goes_and_recovers() {
    let server = TestServer::start(&[]);
    assert_eq!(
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .unwrap()
            .status(),
        200
    );

    std::fs::remove_dir_all(server.dir("treatment-images")).unwrap();
    let response = server.client.get(server.url("/readyz")).send().unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(
        body["collections"][0]["collection"], "treatment-images",
        "{body}"
    );
    assert!(
        body["collections"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("No such file"),
        "{body}"
    );
    assert_eq!(body["collections"].as_array().unwrap().len(), 1);

    // Uploads there fail cleanly meanwhile; reads elsewhere keep working.
    let (status, body) = server.upload(
        "treatment-images",
        "a.jpg",
        fixture("images/rocket.jpg"),
        None,
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");
    let (status, _) = server.upload("medications", "a.jpg", fixture("images/rocket.jpg"), None);
    assert_eq!(status, 201);

    std::fs::create_dir(server.dir("treatment-images")).unwrap();
    assert_eq!(
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let (status, _) = server.upload(
        "treatment-images",
        "a.jpg",
        fixture("images/rocket.jpg"),
        None,
    );
    assert_eq!(status, 201);
}

#[test]
fn health_probes_answer_head_too() {
    let server = TestServer::start(&[]);
    assert_eq!(
        server
            .client
            .head(server.url("/healthz"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        server
            .client
            .head(server.url("/readyz"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn a_collection_folder_replaced_by_a_file_is_unavailable_not_an_internal_error() {
    let server = TestServer::start(&[]);
    std::fs::remove_dir(server.dir("medications")).unwrap();
    std::fs::write(server.dir("medications"), "not a folder").unwrap();
    let (status, body) = server.upload("medications", "a.jpg", fixture("images/rocket.jpg"), None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");
    let response = server.client.get(server.url("/readyz")).send().unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().unwrap().contains("Not a directory"));
}

#[test]
fn readyz_leaves_no_probe_files_behind() {
    let server = TestServer::start(&[]);
    for _ in 0..5 {
        assert_eq!(
            server
                .client
                .get(server.url("/readyz"))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    assert!(server.entries("medications").is_empty());
    assert!(server.entries("treatment-images").is_empty());
}

#[test]
fn fixed_paths_answer_get_and_head_and_405_with_allow_to_other_methods() {
    let server = TestServer::start(&[]);
    for path in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.yaml",
        "/static/app.js",
    ] {
        assert_eq!(
            server.client.get(server.url(path)).send().unwrap().status(),
            200,
            "GET {path}"
        );
        assert_eq!(
            server
                .client
                .head(server.url(path))
                .send()
                .unwrap()
                .status(),
            200,
            "HEAD {path}"
        );
        for method in ["POST", "DELETE", "PUT", "OPTIONS"] {
            let response = server
                .client
                .request(method.parse().unwrap(), server.url(path))
                .send()
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(response.headers()["allow"], "GET, HEAD", "{method} {path}");
        }
    }
    let response = server
        .client
        .get(server.url("/static/missing.js"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 404);
}
