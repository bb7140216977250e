//! `ringway run` forwarding (SPEC §3): what the backend receives and what the client gets
//! back, byte for byte, through the real binary, a recording backend and a raw client.

mod support;

use std::time::Duration;

use support::*;

const HEADER_CONSTANT: &str = "[[services.apis.backend.constants]]\nname = \"X-Const\"\nlocation = \"header\"\nvalue = \"c1\"\n";
const QUERY_CONSTANT: &str = "[[services.apis.backend.constants]]\nname = \"source\"\nlocation = \"query\"\nvalue = \"gw\"\n";

#[test]
fn forwarded_request_head_is_exactly_what_forward_rs_writes() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(
        backend.addr(),
        "",
        &format!("{HEADER_CONSTANT}{QUERY_CONSTANT}"),
    ));
    let mut c = gw.connect();
    let r = c.roundtrip(
        "GET /api/items/7?b=2&a=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\nAccept: */*\r\nx-lower: v1\r\n\r\n",
    );
    assert_eq!(
        (r.status, r.body_text()),
        (200, "ok".into()),
        "{}",
        r.text()
    );
    let got = backend.wait_requests(1);
    let id = got[0].request_id();
    let want = format!(
        "GET /internal/items/7?b=2&a=1&source=gw HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\nAccept: */*\r\nx-lower: v1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: {id}\r\nX-Const: c1\r\n\r\n"
    );
    assert_eq!(got[0].text(), want);
    assert!(got[0].body_raw.is_empty());
    assert_eq!(r.request_id(), id, "the client sees the id the backend saw");
}

#[test]
fn backend_paths_are_composed_per_tier_with_the_query_forwarded() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let up = upstream_section("up", backend.addr(), "");
    let api = |name: &str, path: &str, backend_path: &str, extra: &str| {
        format!(
            "[[services.apis]]\nname = \"{name}\"\npath = \"{path}\"\nmethod = \"ANY\"\n{extra}[services.apis.backend]\nupstream = \"up\"\npath = \"{backend_path}\"\n"
        )
    };
    let config = format!(
        "{}{up}[[services]]\nname = \"s\"\n{}{}{}{}{}",
        server_section(1, ""),
        api("exact", "=/exact", "/b/exact", ""),
        api(
            "user",
            "/user/{id}",
            "/internal/user/{id}",
            "[[services.apis.params]]\nname = \"id\"\nlocation = \"path\"\n"
        ),
        api("files", "/files/", "/store/", ""),
        api("static", "^~/static/", "/s/", ""),
        api("api", "/api", "/internal", ""),
    );
    let gw = Gateway::start(&config);
    let cases = [
        ("/exact?x=1", "/b/exact?x=1"),
        ("/user/42", "/internal/user/42"),
        ("/user/42?v=1", "/internal/user/42?v=1"),
        ("/files/a/b.txt", "/store/a/b.txt"),
        ("/static/x/../y.css", "/s/y.css"),
        ("/api", "/internal"),
        ("/apix", "/internalx"),
        ("/api/a%20b?q=%2F", "/internal/a%20b?q=%2F"),
        ("/api/q?a=1&&b=2", "/internal/q?a=1&b=2"),
        ("/api/./q/../r", "/internal/r"),
    ];
    let mut c = gw.connect();
    for (i, (target, want)) in cases.iter().enumerate() {
        let r = c.roundtrip(get(target));
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.body_text(), *want, "{target}");
        let got = backend.wait_requests(i + 1);
        assert_eq!(got[i].target, *want, "{target}");
        assert_eq!(got[i].version, "HTTP/1.1");
    }
}

#[test]
fn constants_replace_client_headers_and_query_params() {
    let backend = Backend::ok();
    let constants = format!(
        "{HEADER_CONSTANT}{QUERY_CONSTANT}[[services.apis.backend.constants]]\nname = \"host\"\nlocation = \"header\"\nvalue = \"internal.example\"\n[[services.apis.backend.constants]]\nname = \"note\"\nlocation = \"query\"\nvalue = \"a b/c\"\n"
    );
    let gw = Gateway::start(&proxy_config(backend.addr(), "", &constants));
    let mut c = gw.connect();
    let r = c.roundtrip(
        "GET /api/c?source=evil&x=1&source=evil2 HTTP/1.1\r\nHost: example.test\r\nX-Const: evil\r\nx-const: evil2\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.target, "/internal/c?x=1&source=gw&note=a%20b%2Fc");
    assert_eq!(got.header_all("x-const"), ["c1"], "{}", got.text());
    assert_eq!(
        got.header_all("host"),
        ["internal.example"],
        "{}",
        got.text()
    );
    assert!(!got.text().contains("evil"), "{}", got.text());
}

/// RFC 9112 §3.2.2: an absolute-form target's authority, as sent (port included), is the
/// Host the backend gets, the client's Host dropped; a constant Host still wins.
#[test]
fn an_absolute_form_target_forwards_its_authority_as_host() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let cases = [
        (
            "GET http://a.test/api/x HTTP/1.1\r\nHost: b\r\nX-A: 1\r\n\r\n",
            "GET /internal/x HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n",
        ),
        (
            "GET HTTP://A.Test:8080/api/y?q=1 HTTP/1.1\r\nhost: b:81\r\n\r\n",
            "GET /internal/y?q=1 HTTP/1.1\r\nhost: A.Test:8080\r\n",
        ),
        (
            "GET /api/z HTTP/1.1\r\nHost: b\r\n\r\n",
            "GET /internal/z HTTP/1.1\r\nHost: b\r\n",
        ),
    ];
    for (i, (request, want)) in cases.into_iter().enumerate() {
        let r = c.roundtrip(request);
        assert_eq!(r.status, 200, "{request}: {}", r.text());
        let got = &backend.wait_requests(i + 1)[i];
        assert!(got.text().starts_with(want), "{request}\n{}", got.text());
        assert_eq!(got.header_all("host").len(), 1, "{}", got.text());
    }
    // HTTP/1.0 without a Host: the authority, not the upstream's address.
    let mut c = gw.connect();
    let r = c.roundtrip("GET http://a.test:81/api/w HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = backend.wait_requests(4);
    assert_eq!(
        got[3].header_all("host"),
        ["a.test:81"],
        "{}",
        got[3].text()
    );

    let constant = "[[services.apis.backend.constants]]\nname = \"Host\"\nlocation = \"header\"\nvalue = \"internal.example\"\n";
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", constant));
    let mut c = gw.connect();
    let r = c.roundtrip("GET http://a.test/api/x HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &backend.wait_requests(1)[0];
    assert_eq!(
        got.header_all("host"),
        ["internal.example"],
        "{}",
        got.text()
    );
}

#[test]
fn hop_by_hop_headers_are_removed_and_forwarding_headers_set() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(
        "GET /api/h HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic eHg=\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Api-RequestId: spoofed\r\nX-Keep: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &backend.wait_requests(1)[0];
    let id = got.request_id();
    assert_ne!(id, "spoofed");
    assert_eq!(
        got.text(),
        format!(
            "GET /internal/h HTTP/1.1\r\nHost: example.test\r\nX-Keep: yes\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: {id}\r\n\r\n"
        )
    );
    assert_eq!(r.request_id(), id);
}

#[test]
fn response_head_passes_through_minus_connection_headers_plus_request_id() {
    let backend = Backend::queue(vec![Reply::raw(
        "HTTP/1.1 299 Custom Reason\r\nServer: test-backend\r\nConnection: keep-alive\r\nx-lower-case: v\r\nKeep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello",
    )]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/r"));
    assert_eq!(r.status_line, "HTTP/1.1 299 Custom Reason");
    let want: Vec<(String, String)> = [
        ("Server", "test-backend"),
        ("x-lower-case", "v"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Length", "5"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        r.headers_without(&["x-api-requestid"]),
        want,
        "{}",
        r.text()
    );
    assert_eq!(r.header_all("x-api-requestid").len(), 1, "{}", r.text());
    assert_eq!(r.body, b"hello");
    let got = backend.wait_requests(1);
    assert_eq!(r.request_id(), got[0].request_id());
    // The client connection stays open for the next request.
    assert_eq!(c.roundtrip(get("/api/r2")).status, 200);
}

#[test]
fn content_length_bodies_are_forwarded_byte_exact_both_ways() {
    let backend = Backend::start(|r| {
        let mut body = r.body.clone();
        body.reverse();
        Reply::ok(body)
    });
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let body: Vec<u8> = (0..=255u8)
        .chain(b"\r\n\r\n0\r\n\r\n".iter().copied())
        .collect();
    let r = c.roundtrip(with_body("POST", "/api/upload", &body));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("content-length"), Some(&*body.len().to_string()));
    assert_eq!(got.header("transfer-encoding"), None);
    assert_eq!(got.body_raw, body);
    let mut reversed = body.clone();
    reversed.reverse();
    assert_eq!(r.body, reversed);
    assert_eq!(r.header("content-length"), Some(&*body.len().to_string()));
}

#[test]
fn chunked_request_body_is_passed_through_chunked_byte_exact() {
    let backend = Backend::start(|r| Reply::ok(&r.body));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let wire = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n";
    let mut req =
        b"POST /api/chunks HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    req.extend_from_slice(wire);
    let r = c.roundtrip(&req);
    assert_eq!((r.status, r.body_text()), (200, "hello0123456789!".into()));
    let got = &backend.wait_requests(1)[0];
    assert_eq!(
        got.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        got.text()
    );
    assert_eq!(got.header("content-length"), None, "{}", got.text());
    assert_eq!(got.body_raw, wire);
}

#[test]
fn chunked_request_body_sent_in_small_pieces_is_passed_through() {
    let backend = Backend::start(|r| Reply::ok(&r.body));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let body = pattern(50_000);
    let wire = chunked(&body, 3000);
    c.send(b"PUT /api/pieces HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in wire.chunks(997) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, body);
    assert_eq!(backend.wait_requests(1)[0].body_raw, wire);
}

#[test]
fn chunked_request_trailers_are_passed_through() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let wire = b"3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n";
    let mut req =
        b"POST /api/t HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    req.extend_from_slice(wire);
    assert_eq!(c.roundtrip(&req).status, 200);
    assert_eq!(backend.wait_requests(1)[0].body_raw, wire);
    // The connection is still in sync afterwards.
    assert_eq!(c.roundtrip(get("/api/after")).status, 200);
}

#[test]
fn chunked_response_is_passed_through_chunked_byte_exact() {
    let wire = "4\r\nWiki\r\n5;x=y\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    let backend = Backend::queue(vec![Reply::raw(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{wire}"
    ))]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/chunked"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.chunked, "{}", r.text());
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.body_raw, wire.as_bytes());
    assert_eq!(r.body_text(), "Wikipedia in\r\n\r\nchunks.");
    assert_eq!(c.roundtrip(get("/api/next")).status, 200);
}

#[test]
fn chunked_response_trailers_are_passed_through() {
    let wire = "3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n";
    let backend = Backend::queue(vec![Reply::raw(format!(
        "HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n{wire}"
    ))]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/t"));
    assert_eq!(r.body_raw, wire.as_bytes());
    assert_eq!(c.roundtrip(get("/api/next")).status, 200);
}

#[test]
fn chunked_response_is_streamed_chunk_by_chunk() {
    let gate = Gate::new();
    let g = gate.clone();
    let backend = Backend::start(move |_| {
        Reply::raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst,\r\n")
            .then_after(&g, "4\r\nlast\r\n0\r\n\r\n")
    });
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.send(get("/api/stream"));
    let arrived = c.wait_for_bytes(b"first,\r\n", Duration::from_secs(10));
    gate.open();
    assert!(
        arrived,
        "the first chunk did not reach the client while the backend held the rest; got {:?}",
        String::from_utf8_lossy(c.buffered())
    );
    let r = c.read_response();
    assert_eq!(r.body_text(), "first,last");
}

#[test]
fn ten_mib_request_body_is_forwarded_intact() {
    let backend = Backend::start(|r| Reply::ok(r.body.len().to_string()));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let body = pattern(10 * 1024 * 1024);
    let mut c = gw.connect();
    let r = c.roundtrip(with_body("POST", "/api/big", &body));
    assert_eq!(
        (r.status, r.body_text()),
        (200, body.len().to_string()),
        "{}",
        r.text()
    );
    let got = &backend.wait_requests(1)[0];
    assert!(got.body_raw == body, "the 10 MiB body differs");
}

#[test]
fn ten_mib_chunked_request_body_is_forwarded_intact() {
    let backend = Backend::start(|r| Reply::ok(r.body.len().to_string()));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let body = pattern(10 * 1024 * 1024);
    let wire = chunked(&body, 256 * 1024 + 7);
    let mut c = gw.connect();
    let mut req =
        b"POST /api/big HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    req.extend_from_slice(&wire);
    let r = c.roundtrip(&req);
    assert_eq!(
        (r.status, r.body_text()),
        (200, body.len().to_string()),
        "{}",
        r.text()
    );
    assert!(
        backend.wait_requests(1)[0].body_raw == wire,
        "the chunked body differs"
    );
}

#[test]
fn request_body_is_streamed_to_the_backend_before_it_is_complete() {
    let backend = Backend::start(|r| Reply::ok(r.body.len().to_string()));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let body = pattern(10 * 1024 * 1024);
    let req = with_body("POST", "/api/stream", &body);
    let mut c = gw.connect();
    let half = req.len() / 2;
    c.send(&req[..half]);
    let head_reached = backend.wait_until(Duration::from_secs(10), |s| {
        s.conns.iter().any(|c| c.raw.len() > 1024 * 1024)
    });
    c.send(&req[half..]);
    assert!(
        head_reached,
        "with half of a 10 MiB body sent, the backend had received {} bytes after 10 s",
        backend.bytes_received()
    );
    let r = c.read_response();
    assert_eq!(r.body_text(), body.len().to_string());
}

#[test]
fn ten_mib_response_body_is_returned_intact() {
    let body = pattern(10 * 1024 * 1024);
    let b = body.clone();
    let backend = Backend::start(move |_| Reply::ok(&b));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/big"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*body.len().to_string()));
    assert!(r.body == body, "the 10 MiB response differs");
    assert_eq!(c.roundtrip(get("/api/after")).status, 200);
}

#[test]
fn a_large_response_cut_short_by_the_backend_passes_what_came_then_closes() {
    // 1 MiB promised, 300 KiB sent, then the backend closes: a large Content-Length answer
    // between plain sockets is spliced (proxy::splice); what came is passed on byte for
    // byte and the client connection is closed, as on the copy path.
    let part = pattern(300 * 1024);
    let mut raw =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 1024 * 1024).into_bytes();
    raw.extend_from_slice(&part);
    let backend = Backend::queue(vec![Reply::raw(raw).close()]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.send(get("/api/big"));
    let got = c.read_to_close();
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    assert!(head.contains("content-length: 1048576"), "{head}");
    assert!(
        got[end + 4..] == part[..],
        "the 300 KiB that came differ ({} bytes)",
        got.len() - end - 4
    );
}

#[test]
fn ten_mib_chunked_response_is_returned_chunked_intact() {
    let body = pattern(10 * 1024 * 1024);
    let wire = chunked(&body, 100_000);
    let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(&wire);
    let backend = Backend::queue(vec![Reply::raw(raw)]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/big"));
    assert!(r.chunked);
    assert!(r.body_raw == wire, "the chunked 10 MiB response differs");
}

#[test]
fn head_204_and_304_responses_have_no_body() {
    let backend = Backend::queue(vec![
        Reply::raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"),
        Reply::raw("HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"),
        Reply::raw("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
        Reply::ok("after"),
    ]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.send("HEAD /api/h HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-length"), Some("1234"), "{}", r.text());
    let r = c.roundtrip(get("/api/204"));
    assert_eq!(
        (r.status, r.header("x-a")),
        (204, Some("1")),
        "{}",
        r.text()
    );
    let r = c.roundtrip(get("/api/304"));
    assert_eq!(
        (r.status, r.header("etag")),
        (304, Some("\"x\"")),
        "{}",
        r.text()
    );
    // No stray bytes were sent for any of them.
    let r = c.roundtrip(get("/api/after"));
    assert_eq!(r.body_text(), "after", "{}", r.text());
    let got = backend.wait_requests(4);
    assert_eq!(got[0].method, "HEAD");
}

#[test]
fn interim_1xx_responses_are_relayed_before_the_final_one() {
    let backend = Backend::queue(vec![Reply::raw(
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
    )]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.send(get("/api/hints"));
    let (interim, r) = c.read_final_response();
    assert_eq!(interim.len(), 1, "{r:?}");
    assert_eq!(interim[0].status_line, "HTTP/1.1 103 Early Hints");
    assert_eq!(interim[0].header("link"), Some("</s.css>; rel=preload"));
    assert_eq!((r.status, r.body_text()), (200, "final".into()));
    assert_eq!(r.request_id(), backend.wait_requests(1)[0].request_id());
}

#[test]
fn expect_100_continue_is_answered_by_the_gateway_before_the_body() {
    let backend = Backend::start(|r| Reply::ok(&r.body));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.send("POST /api/e HTTP/1.1\r\nHost: example.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = c.read_exact_bytes(b"HTTP/1.1 100 Continue\r\n\r\n".len());
    assert_eq!(
        String::from_utf8_lossy(&interim),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    c.send("hello");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body_text()),
        (200, "hello".into()),
        "{}",
        r.text()
    );
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.header("expect"), None, "{}", got.text());
    assert_eq!(got.body_raw, b"hello");
}

#[test]
fn mock_backend_answers_by_itself() {
    let config = format!(
        "{}[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"m\"\npath = \"=/mock\"\n[services.apis.backend]\ntype = \"mock\"\nmock_status = 201\nmock_body = \"made by mock\"\nmock_content_type = \"text/plain\"\n",
        server_section(1, "")
    );
    let gw = Gateway::start(&config);
    let mut c = gw.connect();
    let r = c.roundtrip(get("/mock"));
    let id = r.request_id();
    assert_eq!(
        String::from_utf8_lossy(&r.head_raw),
        format!(
            "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nX-Api-RequestId: {id}\r\n\r\n"
        )
    );
    assert_eq!(r.body_text(), "made by mock");
    // Keep-alive: a second request on the same connection gets a new id.
    let r2 = c.roundtrip(get("/mock"));
    assert_eq!(r2.status, 201);
    assert_ne!(r2.request_id(), id);
}

#[test]
fn every_response_has_a_unique_request_id_equal_to_the_backends() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200);
        ids.push(r.request_id());
    }
    let seen: Vec<String> = backend
        .wait_requests(5)
        .iter()
        .map(Request::request_id)
        .collect();
    assert_eq!(ids, seen);
    let r = c.roundtrip(get("/elsewhere"));
    r.assert_gateway_error(404, "404 on a proxied connection");
    ids.push(r.request_id());
    let mut c2 = gw.connect();
    ids.push(c2.roundtrip(get("/api/other-conn")).request_id());
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids repeat: {ids:?}");
}

#[test]
fn pipelined_requests_are_answered_in_order_even_when_the_first_is_slowest() {
    let backend = Backend::start(|r| {
        let d = if r.target.ends_with("/1") { 300 } else { 0 };
        let mut body = r.target.clone().into_bytes();
        body.push(b' ');
        body.extend_from_slice(&r.body);
        Reply::ok(body).delay(Duration::from_millis(d))
    });
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let mut all = get("/api/1");
    all.extend(with_body("POST", "/api/2", b"two"));
    all.extend(get("/nowhere"));
    all.extend(b"PUT /api/4 HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfour\r\n0\r\n\r\n".iter());
    all.extend(get("/api/5"));
    c.send(&all);
    assert_eq!(c.read_response().body_text(), "/internal/1 ");
    assert_eq!(c.read_response().body_text(), "/internal/2 two");
    c.read_response().assert_gateway_error(404, "pipelined 404");
    assert_eq!(c.read_response().body_text(), "/internal/4 four");
    assert_eq!(c.read_response().body_text(), "/internal/5 ");
    let got = backend.wait_requests(4);
    assert_eq!(
        got.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
        ["/internal/1", "/internal/2", "/internal/4", "/internal/5"]
    );
}

#[test]
fn http10_request_without_keep_alive_is_closed_after_the_response() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip("GET /api/old HTTP/1.0\r\n\r\n");
    assert_eq!(
        (r.status, r.body_text()),
        (200, "ok".into()),
        "{}",
        r.text()
    );
    assert!(
        r.closes(),
        "the gateway closes, so it says so: {}",
        r.text()
    );
    c.expect_closed();
    let got = &backend.wait_requests(1)[0];
    // forward.rs: an HTTP/1.0 request is sent as HTTP/1.0 (so the answer is never chunked).
    assert_eq!(got.version, "HTTP/1.0", "{}", got.text());
    // No Host from the client: the upstream's address is sent.
    assert_eq!(
        got.header_all("host"),
        [backend.addr().to_string().as_str()],
        "{}",
        got.text()
    );
}

#[test]
fn http10_request_with_keep_alive_keeps_the_connection() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let req = "GET /api/old HTTP/1.0\r\nHost: example.test\r\nConnection: keep-alive\r\n\r\n";
    let r = c.roundtrip(req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.closes(), "{}", r.text());
    let r = c.roundtrip(req);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = backend.wait_requests(2);
    assert_eq!(got[0].header("connection"), None, "{}", got[0].text());
}

#[test]
fn http11_connection_close_closes_the_client_but_keeps_the_backend_connection() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip("GET /api/bye HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.closes(), "{}", r.text());
    c.expect_closed();
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.header("connection"), None, "{}", got.text());
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/again")).status, 200);
    assert_eq!(
        backend.connections(),
        1,
        "the backend connection was pooled"
    );
}

#[test]
fn close_delimited_response_is_relayed_and_ends_with_the_gateway_closing() {
    let backend = Backend::queue(vec![
        Reply::raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close").close(),
    ]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/eof"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.close_delimited, "{}", r.text());
    assert!(r.closes(), "{}", r.text());
    assert_eq!(r.body_text(), "body until close");
}
