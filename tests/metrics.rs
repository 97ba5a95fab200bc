//! `/metrics` over real HTTP: after some traffic, every family moved by exactly what was done.

mod common;

use common::*;

/// The value of the sample `name{labels}` (labels as printed, in order), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn metrics_count_requests_bytes_and_uploads_by_outcome() {
    let server = TestServer::start(&[]);
    let scrape = || {
        let response = server.client.get(server.url("/metrics")).send().unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        response.text().unwrap()
    };
    let before = scrape();

    let photo = fixture("images/rocket.jpg");
    let png = fixture("images/chelsea.png");
    let (_, body) = server.upload("medications", "a.jpg", photo.clone(), None);
    server.upload("medications", "b.png", png.clone(), None);
    server.upload(
        "medications",
        "c.jpg",
        fixture("hostile/html-disguised.jpg"),
        None,
    );
    server.upload("treatment-images", "d.jpg", Vec::new(), None);
    let url = server.url(body["files"][0]["url"].as_str().unwrap());
    assert_eq!(server.client.get(&url).send().unwrap().status(), 200);
    assert_eq!(
        server
            .client
            .get(server.url("/medications/missing.jpg"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        server
            .client
            .get(server.url("/no/such/route"))
            .send()
            .unwrap()
            .status(),
        404
    );

    let after = scrape();
    let delta = |series: &str| sample(&after, series) - sample(&before, series);

    assert_eq!(
        delta(
            r#"botilyx_media_http_requests_total{collection="medications",method="POST",status="201"}"#
        ),
        2.0
    );
    assert_eq!(
        delta(
            r#"botilyx_media_http_requests_total{collection="medications",method="POST",status="415"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            r#"botilyx_media_http_requests_total{collection="treatment-images",method="POST",status="400"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            r#"botilyx_media_http_requests_total{collection="medications",method="GET",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            r#"botilyx_media_http_requests_total{collection="medications",method="GET",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(r#"botilyx_media_http_requests_total{collection="-",method="GET",status="404"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"botilyx_media_uploads_stored_total{collection="medications"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"botilyx_media_stored_bytes_total{collection="medications"}"#),
        (photo.len() + png.len()) as f64
    );
    assert_eq!(
        delta(
            r#"botilyx_media_uploads_refused_total{collection="medications",reason="unsupported_type"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            r#"botilyx_media_uploads_refused_total{collection="treatment-images",reason="empty_file"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(r#"botilyx_media_served_bytes_total{collection="medications"}"#),
        photo.len() as f64
    );
    assert_eq!(sample(&after, "botilyx_media_uploads_in_progress"), 0.0);
    // Seven requests of ours plus the first scrape were timed.
    assert!(
        delta("botilyx_media_http_request_duration_seconds_count") >= 8.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            r#"botilyx_media_collection_free_bytes{collection="medications"}"#
        ) > 0.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            r#"botilyx_media_collection_free_bytes{collection="treatment-images"}"#
        ) > 0.0
    );
}
