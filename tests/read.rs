//! Reads over real HTTP: headers, validators, ranges, HEAD, files left by the old app, and a
//! corpus of paths that try to leave their collection or reach hidden files.

mod common;

use std::os::unix::fs::symlink;

use common::*;

fn stored(server: &TestServer, fixture_path: &str) -> (String, Vec<u8>) {
    let bytes = fixture(fixture_path);
    let (status, body) = server.upload("medications", "photo.jpg", bytes.clone(), None);
    assert_eq!(status, 201, "{body}");
    (body["files"][0]["url"].as_str().unwrap().to_owned(), bytes)
}

#[test]
fn a_stored_file_is_served_with_validators_caching_and_safety_headers() {
    let server = TestServer::start(&[]);
    let (url, bytes) = stored(&server, "images/rocket.jpg");

    let response = server.client.get(server.url(&url)).send().unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["content-length"], bytes.len().to_string().as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert!(h.contains_key("etag") && h.contains_key("last-modified"));
}

#[test]
fn head_has_the_same_headers_and_no_body() {
    let server = TestServer::start(&[]);
    let (url, bytes) = stored(&server, "images/chelsea.png");
    let get = server.client.get(server.url(&url)).send().unwrap();
    let head = server.client.head(server.url(&url)).send().unwrap();
    assert_eq!(head.status(), 200);
    for name in [
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "cache-control",
    ] {
        assert_eq!(head.headers()[name], get.headers()[name], "{name}");
    }
    assert_eq!(
        head.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert!(head.bytes().unwrap().is_empty());
}

#[test]
fn conditional_requests_answer_304_only_when_the_file_is_unchanged() {
    let server = TestServer::start(&[]);
    let (url, _) = stored(&server, "images/rocket.jpg");
    let first = server.client.get(server.url(&url)).send().unwrap();
    let etag = first.headers()["etag"].clone();
    let modified = first.headers()["last-modified"].clone();

    let revalidated = server
        .client
        .get(server.url(&url))
        .header("if-none-match", etag.clone())
        .send()
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert!(revalidated.bytes().unwrap().is_empty());

    let by_date = server
        .client
        .get(server.url(&url))
        .header("if-modified-since", modified)
        .send()
        .unwrap();
    assert_eq!(by_date.status(), 304);

    let stale = server
        .client
        .get(server.url(&url))
        .header("if-none-match", "\"not-it\"")
        .send()
        .unwrap();
    assert_eq!(stale.status(), 200);
}

#[test]
fn byte_ranges_give_206_and_unsatisfiable_ones_416() {
    let server = TestServer::start(&[]);
    let (url, bytes) = stored(&server, "images/phone-photo-gps.jpg");
    let len = bytes.len();
    let get = |range: &str| {
        server
            .client
            .get(server.url(&url))
            .header("range", range)
            .send()
            .unwrap()
    };

    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, len),
        ("bytes=-500", len - 500, len),
    ];
    for (range, start, end) in cases {
        let response = get(range);
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{}/{len}", end - 1).as_str(),
            "{range}"
        );
        assert_eq!(
            response.bytes().unwrap().as_ref(),
            &bytes[*start..*end],
            "{range}"
        );
    }

    let response = get(&format!("bytes={len}-"));
    assert_eq!(response.status(), 416);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    assert!(
        !response.headers().contains_key("cache-control"),
        "an error is not cached for a year"
    );
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable");

    let response = server
        .client
        .get(server.url(&url))
        .header("if-match", "\"other\"")
        .send()
        .unwrap();
    assert_eq!(response.status(), 412);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "precondition_failed");
}

#[test]
fn files_left_by_the_old_app_are_served_unchanged_at_their_old_urls() {
    let server = TestServer::start(&[]);
    let bytes = fixture("images/astronaut-small.jpg");
    std::fs::write(server.dir("medications").join("medication-123.jpg"), &bytes).unwrap();
    std::fs::write(
        server.dir("treatment-images").join("treatment-7.PNG"),
        fixture("images/chelsea.png"),
    )
    .unwrap();

    let response = server
        .client
        .get(server.url("/medications/medication-123.jpg"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.bytes().unwrap().as_ref(), bytes.as_slice());

    let response = server
        .client
        .get(server.url("/treatment-images/treatment-7.PNG"))
        .send()
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/png");
}

#[test]
fn a_file_that_is_not_an_image_is_only_ever_a_download() {
    let server = TestServer::start(&[]);
    std::fs::write(
        server.dir("medications").join("notes.html"),
        "<script>alert(1)</script>",
    )
    .unwrap();
    std::fs::write(
        server.dir("medications").join("logo.svg"),
        fixture("hostile/script.svg"),
    )
    .unwrap();
    for name in ["notes.html", "logo.svg"] {
        let response = server
            .client
            .get(server.url(&format!("/medications/{name}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream",
            "{name}"
        );
        assert!(
            response.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment"),
            "{name}"
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
}

#[test]
fn collections_are_never_listed() {
    let server = TestServer::start(&[]);
    stored(&server, "images/rocket.jpg");
    std::fs::create_dir(server.dir("medications").join("sub")).unwrap();
    for path in [
        "/medications",
        "/medications/",
        "/medications/sub",
        "/medications/sub/",
        "/treatment-images/",
    ] {
        let (status, text) = raw_get(server.addr, path);
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("photo-"), "{path} listed a file: {text}");
        assert!(text.contains("\"code\":\"not_found\""), "{path}: {text}");
    }
}

#[test]
fn hidden_files_and_temporary_uploads_are_never_served() {
    let server = TestServer::start(&[]);
    let dir = server.dir("medications");
    std::fs::write(
        dir.join(".upload-01jabcdefghjkmnpqrstvwxyz0.part"),
        fixture("images/rocket.jpg"),
    )
    .unwrap();
    std::fs::write(dir.join(".env"), "SECRET=1").unwrap();
    for path in [
        "/medications/.upload-01jabcdefghjkmnpqrstvwxyz0.part",
        "/medications/.env",
        "/medications/%2eenv",
    ] {
        let (status, text) = raw_get(server.addr, path);
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("SECRET"));
    }
}

#[test]
fn paths_that_try_to_leave_their_collection_read_nothing_outside() {
    let server = TestServer::start(&[]);
    let marker = "TOP-SECRET-MARKER";
    std::fs::write(server.data.path().join("secret.txt"), marker).unwrap();
    std::fs::write(server.dir("treatment-images").join("secret.txt"), marker).unwrap();

    let corpus = [
        "/medications/../secret.txt",
        "/medications/..%2fsecret.txt",
        "/medications/..%2Fsecret.txt",
        "/medications/%2e%2e%2fsecret.txt",
        "/medications/%2e%2e/secret.txt",
        "/medications/%252e%252e%252fsecret.txt",
        "/medications/..%5csecret.txt",
        "/medications/..\\secret.txt",
        "/medications/%2e%2e%5csecret.txt",
        "/medications/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/medications/%2fetc%2fpasswd",
        "/medications//etc/passwd",
        "/medications/%00secret.txt",
        "/medications/secret.txt%00.jpg",
        "/medications/..%c0%afsecret.txt",
        "/medications/..%ef%bc%8fsecret.txt",
        "/medications/..",
        "/medications/.",
        "/medications/%2e",
        "/medications/%2e%2e",
        "/medications/..;/secret.txt",
        "/medications/..%2ftreatment-images%2fsecret.txt",
        "/medications/../treatment-images/secret.txt",
        "/medications/./../treatment-images/secret.txt",
        "//etc/passwd",
        "/../../etc/passwd",
        "/secret.txt",
        "/medications/secret.txt",
        "/medications/..%252fsecret.txt",
        "/medications/%25%32%65%25%32%65%25%32%66secret.txt",
        "/medications/..%c0%2fsecret.txt",
        "/medications/%c0%ae%c0%ae%c0%afsecret.txt",
        "/medications/%e0%80%ae%e0%80%ae/secret.txt",
        "/medications/..%u2215secret.txt",
        "/medications/%e2%80%a4%e2%80%a4%e2%88%95secret.txt",
        "/medications/%ef%bc%8e%ef%bc%8e%ef%bc%8fsecret.txt",
        "/medications/..%e2%81%84secret.txt",
        "/medications/...",
        "/medications/.. ",
        "/medications/..%20",
        "/medications/..%09",
        "/medications/secret.txt.",
        "/medications/secret.txt%20",
        "/medications/secret.txt::$DATA",
        "/medications/secret.txt%3a%3a$DATA",
        "/medications/..%00/secret.txt",
        "/medications/%0a..%2fsecret.txt",
        "/medications/%0d%0aX-Injected:%201",
        "/medications/....//....//secret.txt",
        "/medications/..///secret.txt",
        "/medications/.%2e/secret.txt",
        "/medications/%2e./secret.txt",
        "/medications/~/secret.txt",
        "/medications/%7e%2fsecret.txt",
        "/medications/file:%2f%2f%2fetc%2fpasswd",
        "/medications/%2f%2f%2fetc%2fpasswd",
        "/medications/C:%5cWindows%5cwin.ini",
        "/medications/\\..\\secret.txt",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/treatment-images/..%2fmedications%2f..%2fsecret.txt",
        "/medications/?file=../secret.txt",
        "/medications/#../secret.txt",
    ];
    let long = format!("/medications/{}", "a".repeat(300));
    let deep = format!("/medications/{}secret.txt", "..%2f".repeat(2000));
    let corpus: Vec<&str> = corpus
        .iter()
        .copied()
        .chain([long.as_str(), deep.as_str()])
        .collect();
    assert!(corpus.len() >= 50, "{}", corpus.len());
    for path in corpus {
        let (status, text) = raw_get(server.addr, path);
        assert!(
            status == 400 || status == 404,
            "{path} answered {status}: {text}"
        );
        assert!(
            !text.contains(marker) && !text.contains("root:"),
            "{path} leaked: {text}"
        );
    }
}

#[test]
fn a_symbolic_link_out_of_the_data_folder_is_not_followed() {
    let server = TestServer::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.jpg"), "TOP-SECRET").unwrap();
    symlink(
        outside.path().join("secret.jpg"),
        server.dir("medications").join("escape.jpg"),
    )
    .unwrap();
    symlink("/etc/passwd", server.dir("medications").join("passwd.jpg")).unwrap();
    symlink(outside.path(), server.dir("medications").join("dir")).unwrap();

    for path in [
        "/medications/escape.jpg",
        "/medications/passwd.jpg",
        "/medications/dir",
    ] {
        let (status, text) = raw_get(server.addr, path);
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("TOP-SECRET") && !text.contains("root:"));
    }

    // Links inside the data folder reach only files that could be served by their own name.
    let dir = server.dir("medications");
    std::fs::write(dir.join(".env"), "TOP-SECRET").unwrap();
    std::fs::write(
        dir.join(".upload-01jabcdefghjkmnpqrstvwxyz0.part"),
        "TOP-SECRET",
    )
    .unwrap();
    std::fs::write(server.data.path().join("top.jpg"), "TOP-SECRET").unwrap();
    symlink(".env", dir.join("env.jpg")).unwrap();
    symlink(
        ".upload-01jabcdefghjkmnpqrstvwxyz0.part",
        dir.join("partial.jpg"),
    )
    .unwrap();
    symlink("../top.jpg", dir.join("top.jpg")).unwrap();
    for path in [
        "/medications/env.jpg",
        "/medications/partial.jpg",
        "/medications/top.jpg",
    ] {
        let (status, text) = raw_get(server.addr, path);
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("TOP-SECRET"), "{path}: {text}");
    }

    // A link that stays inside the data folder is still served.
    let (url, bytes) = stored(&server, "images/rocket.jpg");
    let target = url.rsplit('/').next().unwrap();
    symlink(
        server.dir("medications").join(target),
        server.dir("treatment-images").join("alias.jpg"),
    )
    .unwrap();
    let response = server
        .client
        .get(server.url("/treatment-images/alias.jpg"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().as_ref(), bytes.as_slice());
}

#[test]
fn missing_files_and_unknown_collections_are_json_404s() {
    let server = TestServer::start(&[]);
    for path in [
        "/medications/nope.jpg",
        "/prescriptions/a.jpg",
        "/nothing/here/at/all",
    ] {
        let response = server.client.get(server.url(path)).send().unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let response = server
        .client
        .put(server.url("/medications/a.jpg"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD, DELETE");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[test]
fn a_named_pipe_in_a_collection_is_not_served_and_blocks_nothing() {
    let server = TestServer::start(&[]);
    let fifo = server.dir("medications").join("pipe.jpg");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    for _ in 0..4 {
        let (status, text) = raw_get(server.addr, "/medications/pipe.jpg");
        assert_eq!(status, 404, "{text}");
    }
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
fn a_cached_file_replaced_rewritten_or_deleted_by_someone_else_is_never_served_stale() {
    let server = TestServer::start(&[]);
    let dir = server.dir("medications");
    let url = server.url("/medications/photo.jpg");
    let get = || server.client.get(&url).send().unwrap();
    let first = fixture("images/astronaut-small.jpg");
    std::fs::write(dir.join("photo.jpg"), &first).unwrap();

    // Small files are cached once their times are two seconds old.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let response = get();
    let etag = response.headers()["etag"].clone();
    assert_eq!(response.bytes().unwrap().as_ref(), first.as_slice());
    assert_eq!(
        get().bytes().unwrap().as_ref(),
        first.as_slice(),
        "served from the cache"
    );
    let ranged = server
        .client
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["etag"],
        etag,
        "both paths give the same validator"
    );

    // Replaced by a rename, with the same size.
    let mut second = fixture("images/rocket.jpg");
    second.truncate(first.len());
    std::fs::write(dir.join("incoming"), &second).unwrap();
    std::fs::rename(dir.join("incoming"), dir.join("photo.jpg")).unwrap();
    assert_eq!(get().bytes().unwrap().as_ref(), second.as_slice());
    let stale = server
        .client
        .get(&url)
        .header("if-none-match", etag)
        .send()
        .unwrap();
    assert_eq!(
        stale.status(),
        200,
        "an old ETag does not match the new file"
    );

    // Rewritten in place, same size.
    let mut third = second.clone();
    third[first.len() / 2] ^= 0xff;
    std::fs::write(dir.join("photo.jpg"), &third).unwrap();
    assert_eq!(get().bytes().unwrap().as_ref(), third.as_slice());

    // Swapped for a link out of the data folder, then deleted.
    std::fs::remove_file(dir.join("photo.jpg")).unwrap();
    symlink("/etc/passwd", dir.join("photo.jpg")).unwrap();
    assert_eq!(get().status(), 404);
    std::fs::remove_file(dir.join("photo.jpg")).unwrap();
    assert_eq!(get().status(), 404);
}

#[test]
fn a_large_photo_is_sent_whole_whether_the_page_cache_holds_it_or_not() {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    use std::os::fd::AsRawFd;

    let server = TestServer::start(&[]);
    let (url, bytes) = stored(&server, "images/phone-photo-gps.jpg");
    let path = server
        .dir("medications")
        .join(url.rsplit('/').next().unwrap());
    let get = || server.client.get(server.url(&url)).send().unwrap();

    // Warm: the whole file in one answer, with the validators the ranged path gives too.
    let warm = get();
    assert_eq!(warm.status(), 200);
    let etag = warm.headers()["etag"].clone();
    assert_eq!(warm.headers()["content-type"], "image/jpeg");
    assert_eq!(
        warm.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(warm.bytes().unwrap().as_ref(), bytes.as_slice());
    let ranged = server
        .client
        .get(server.url(&url))
        .header("range", "bytes=0-0")
        .send()
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["etag"], etag);

    // Cold: the page cache is told to drop the file, so the disk must be read.
    for _ in 0..3 {
        let file = std::fs::File::open(&path).unwrap();
        posix_fadvise(
            file.as_raw_fd(),
            0,
            0,
            PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .unwrap();
        let cold = get();
        assert_eq!(cold.status(), 200);
        let body = cold.bytes().unwrap();
        assert_eq!(sha256_hex(&body), sha256_hex(&bytes), "cold read");
    }

    let head = server.client.head(server.url(&url)).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert!(head.bytes().unwrap().is_empty());

    let revalidated = server
        .client
        .get(server.url(&url))
        .header("if-none-match", etag)
        .send()
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert!(revalidated.bytes().unwrap().is_empty());
}

#[test]
fn if_none_match_lists_weak_tags_and_star_revalidate_small_and_large_files() {
    let server = TestServer::start(&[]);
    for fixture_path in ["images/astronaut-small.jpg", "images/rocket.jpg"] {
        let (url, _) = stored(&server, fixture_path);
        let etag = server
            .client
            .get(server.url(&url))
            .send()
            .unwrap()
            .headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        let status = |values: &[&str]| {
            let mut request = server.client.get(server.url(&url));
            for value in values {
                request = request.header("if-none-match", *value);
            }
            request.send().unwrap().status().as_u16()
        };
        let weak = format!("W/{etag}");
        let listed = format!("\"other\", {etag} ,\"more\"");
        let longer = format!("{}x\"", &etag[..etag.len() - 1]);
        let unquoted = etag.trim_matches('"').to_owned();
        assert_eq!(status(&[&etag]), 304, "{fixture_path}");
        assert_eq!(status(&[&weak]), 304, "{fixture_path}: weak comparison");
        assert_eq!(status(&[&listed]), 304, "{fixture_path}: in a list");
        assert_eq!(
            status(&["\"other\"", &etag]),
            304,
            "{fixture_path}: 2 headers"
        );
        assert_eq!(status(&["*"]), 304, "{fixture_path}: any version");
        assert_eq!(status(&[&longer]), 200, "{fixture_path}: {longer}");
        assert_eq!(status(&[&unquoted]), 200, "{fixture_path}: {unquoted}");
        assert_eq!(status(&["\"other\", W/\"x\""]), 200, "{fixture_path}");
    }
}

#[test]
fn a_photo_modified_before_1970_is_served_without_last_modified() {
    use std::time::{Duration, UNIX_EPOCH};

    let server = TestServer::start(&[]);
    let dir = server.dir("medications");
    let long_ago = UNIX_EPOCH - Duration::from_secs(10 * 365 * 24 * 3600);
    for (name, fixture_path) in [
        ("old-small.jpg", "images/astronaut-small.jpg"),
        ("old-large.jpg", "images/rocket.jpg"),
    ] {
        let bytes = fixture(fixture_path);
        std::fs::write(dir.join(name), &bytes).unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(name))
            .unwrap();
        file.set_modified(long_ago).unwrap();

        let url = server.url(&format!("/medications/{name}"));
        let response = server.client.get(&url).send().unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert!(!response.headers().contains_key("last-modified"), "{name}");
        let etag = response.headers()["etag"].clone();
        assert_eq!(
            response.bytes().unwrap().as_ref(),
            bytes.as_slice(),
            "{name}"
        );

        let head = server.client.head(&url).send().unwrap();
        assert_eq!(head.status(), 200, "{name}");
        let revalidated = server
            .client
            .get(&url)
            .header("if-none-match", etag)
            .send()
            .unwrap();
        assert_eq!(revalidated.status(), 304, "{name}");
        let by_date = server
            .client
            .get(&url)
            .header("if-modified-since", "Thu, 01 Jan 2026 00:00:00 GMT")
            .send()
            .unwrap();
        assert_eq!(by_date.status(), 200, "{name}: no known date to compare");
    }
}

#[test]
fn a_star_inside_an_if_none_match_list_matches_nothing_on_either_path() {
    let server = TestServer::start(&[]);
    for fixture_path in ["images/astronaut-small.jpg", "images/rocket.jpg"] {
        let (url, _) = stored(&server, fixture_path);
        for extra in [None, Some(("if-match", "*"))] {
            let mut request = server
                .client
                .get(server.url(&url))
                .header("if-none-match", "\"a\", *");
            if let Some((name, value)) = extra {
                request = request.header(name, value);
            }
            assert_eq!(
                request.send().unwrap().status(),
                200,
                "{fixture_path} {extra:?}"
            );
        }
    }
}
