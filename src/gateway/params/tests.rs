use super::*;
use crate::config::Limits;
use crate::http::head::{Progress, parse_head};
use crate::router::PathPattern;

use DataType::{Boolean, Double, Float, Int, Long};
use Location::{Header, Path, Query};

fn param(name: &str, location: Location, data_type: DataType) -> Param {
    Param {
        name: name.into(),
        location,
        data_type,
        required: false,
        default: None,
        sample: None,
        description: String::new(),
        backend_name: None,
        backend_location: None,
    }
}

fn required(mut p: Param) -> Param {
    p.required = true;
    p
}

fn default(mut p: Param, v: &str) -> Param {
    p.default = Some(v.into());
    p
}

fn mapped(mut p: Param, name: Option<&str>, location: Option<Location>) -> Param {
    p.backend_name = name.map(Into::into);
    p.backend_location = location;
    p
}

fn limits() -> Limits {
    Limits {
        max_header_bytes: 8192,
        max_headers: 32,
        max_uri_bytes: 2048,
        max_body_bytes: 1000,
    }
}

/// `GET target` with these extra header lines.
fn request(target: &str, headers: &[&[u8]]) -> Vec<u8> {
    let mut raw = format!("GET {target} HTTP/1.1\r\nHost: api.example.com\r\n").into_bytes();
    for h in headers {
        raw.extend_from_slice(h);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

type Outcome = Result<Vec<(usize, String)>, (u16, String)>;
type Headers<'a> = &'a [&'a [u8]];

/// Parses `raw`, matches its path against `pattern` and runs [`apply`].
fn run_on(params: &[Param], pattern: &str, raw: &[u8], out: &mut ParamValues) -> Outcome {
    let mut head = RequestHead::default();
    let progress = parse_head(raw, &limits(), &mut head).expect("test request parses");
    assert_eq!(progress, Progress::Complete);
    let target = std::str::from_utf8(head.target.get(raw)).unwrap();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let pattern = PathPattern::parse(pattern).unwrap();
    let mut captures = Captures::empty();
    assert!(
        pattern.matches(path, &mut captures),
        "{pattern:?} on {path}"
    );
    let input = ParamInput {
        buf: raw,
        head: &head,
        query,
        path,
        captures: &captures,
    };
    match apply(params, &input, out) {
        Ok(()) => Ok(out.iter().map(|(i, v)| (i, v.to_string())).collect()),
        Err(e) => Err((e.status(), e.message())),
    }
}

fn run(params: &[Param], pattern: &str, target: &str, headers: &[&[u8]]) -> Outcome {
    run_on(
        params,
        pattern,
        &request(target, headers),
        &mut ParamValues::default(),
    )
}

fn ok(placed: &[(usize, &str)]) -> Outcome {
    Ok(placed.iter().map(|&(i, v)| (i, v.to_string())).collect())
}

fn err(status: u16, message: &str) -> Outcome {
    Err((status, message.to_string()))
}

#[test]
fn types() {
    let cases: &[(DataType, &str, bool)] = &[
        (Int, "0", true),
        (Int, "-0", true),
        (Int, "007", true),
        (Int, "2147483647", true),
        (Int, "-2147483648", true),
        (Int, "2147483648", false),
        (Int, "-2147483649", false),
        (Int, "+1", false),
        (Int, "", false),
        (Int, "-", false),
        (Int, " 1", false),
        (Int, "1 ", false),
        (Int, "1_000", false),
        (Int, "1.5", false),
        (Int, "1e3", false),
        (Int, "0x10", false),
        (Int, "\u{663}", false),
        (Long, "9223372036854775807", true),
        (Long, "-9223372036854775808", true),
        (Long, "9223372036854775808", false),
        (Long, "-9223372036854775809", false),
        (Long, "2147483648", true),
        (Long, "+1", false),
        (Long, "", false),
        (Long, "1.0", false),
        (Float, "1", true),
        (Float, "-1", true),
        (Float, "1.5", true),
        (Float, "-0.25", true),
        (Float, "1e3", true),
        (Float, "1E3", true),
        (Float, "1e+3", true),
        (Float, "-1.5e-3", true),
        (Float, "3.4e38", true),
        (Float, "1e-60", true),
        (Float, "1e39", false),
        (Float, "NaN", false),
        (Float, "nan", false),
        (Float, "inf", false),
        (Float, "-inf", false),
        (Float, "infinity", false),
        (Float, "+1", false),
        (Float, "+1.5", false),
        (Float, "", false),
        (Float, ".5", false),
        (Float, "5.", false),
        (Float, "-.5", false),
        (Float, "0x10", false),
        (Float, "1e", false),
        (Float, "1e+", false),
        (Float, "e3", false),
        (Float, "1.5.2", false),
        (Float, "--1", false),
        (Float, "1,5", false),
        (Float, "1 ", false),
        (Double, "1.5", true),
        (Double, "1e3", true),
        (Double, "1e39", true),
        (Double, "1.7976931348623157e308", true),
        (Double, "1e309", false),
        (Double, "NaN", false),
        (Double, "inf", false),
        (Double, "+1", false),
        (Double, "", false),
        (Boolean, "true", true),
        (Boolean, "false", true),
        (Boolean, "TRUE", false),
        (Boolean, "True", false),
        (Boolean, "1", false),
        (Boolean, "", false),
        (DataType::String, "", true),
        (DataType::String, "anything at all \u{e9}", true),
    ];
    for &(t, v, want) in cases {
        assert_eq!(valid(t, v), want, "{} {v:?}", type_word(t));
        // The looser config check accepts everything this one does.
        if want {
            assert!(t.accepts(v), "{} {v:?}", type_word(t));
        }
    }
}

#[test]
fn header_params() {
    let id = || param("X-User-Id", Header, Int);
    let cases: Vec<(Param, &[&[u8]], Outcome)> = vec![
        (id(), &[b"X-User-Id: 42"], ok(&[])),
        (id(), &[b"x-user-id: 42"], ok(&[])),
        (id(), &[b"X-USER-ID:-7"], ok(&[])),
        (required(id()), &[b"x-user-id: 42"], ok(&[])),
        (id(), &[], ok(&[])),
        (id(), &[b"X-User-Idx: 1"], ok(&[])),
        (
            required(id()),
            &[],
            err(403, "header X-User-Id is required"),
        ),
        (
            required(id()),
            &[b"X-User: 1"],
            err(403, "header X-User-Id is required"),
        ),
        (default(id(), "7"), &[], ok(&[(0, "7")])),
        (default(id(), "7"), &[b"X-User-Id: 8"], ok(&[])),
        (
            id(),
            &[b"X-User-Id: abc"],
            err(400, "header X-User-Id is not a valid int"),
        ),
        (
            id(),
            &[b"X-User-Id:"],
            err(400, "header X-User-Id is not a valid int"),
        ),
        // Repeated: the first one counts.
        (id(), &[b"X-User-Id: 1", b"X-User-Id: abc"], ok(&[])),
        (
            id(),
            &[b"X-User-Id: abc", b"X-User-Id: 1"],
            err(400, "header X-User-Id is not a valid int"),
        ),
        // Values are not decoded.
        (
            id(),
            &[b"X-User-Id: %34%32"],
            err(400, "header X-User-Id is not a valid int"),
        ),
        (param("X-S", Header, DataType::String), &[b"X-S:"], ok(&[])),
        (
            param("X-S", Header, DataType::String),
            &[b"X-S: \xff\xfe"],
            err(400, "header X-S is not a valid string"),
        ),
        (
            param("X-B", Header, Boolean),
            &[b"X-B: TRUE"],
            err(400, "header X-B is not a valid boolean"),
        ),
    ];
    for (p, headers, want) in cases {
        let got = run(std::slice::from_ref(&p), "/", "/", headers);
        assert_eq!(got, want, "{} {:?}", p.name, headers);
    }
}

#[test]
fn query_params() {
    let id = || param("id", Query, Int);
    let s = || param("q", Query, DataType::String);
    let cases: Vec<(Param, &str, Outcome)> = vec![
        (id(), "/?id=5", ok(&[])),
        (id(), "/?a=1&id=-5&b", ok(&[])),
        (id(), "/", ok(&[])),
        (id(), "/?", ok(&[])),
        (id(), "/?ID=5", ok(&[])),
        (id(), "/?idx=5", ok(&[])),
        (required(id()), "/?id=5", ok(&[])),
        (required(id()), "/", err(403, "querystring id is required")),
        (
            required(id()),
            "/?ID=1&idx=2",
            err(403, "querystring id is required"),
        ),
        (default(id(), "10"), "/", ok(&[(0, "10")])),
        (default(id(), "10"), "/?id=3", ok(&[])),
        (id(), "/?id", err(400, "querystring id is not a valid int")),
        (id(), "/?id=", err(400, "querystring id is not a valid int")),
        (s(), "/?q", ok(&[])),
        (s(), "/?q=", ok(&[])),
        (default(s(), "d"), "/?q", ok(&[])),
        (
            id(),
            "/?id=x",
            err(400, "querystring id is not a valid int"),
        ),
        (id(), "/?id=1&id=x", ok(&[])),
        (
            id(),
            "/?id=x&id=1",
            err(400, "querystring id is not a valid int"),
        ),
        // Decoded names and values.
        (id(), "/?%69%64=5", ok(&[])),
        (
            id(),
            "/?%69%64=x&id=5",
            err(400, "querystring id is not a valid int"),
        ),
        (param("user name", Query, Int), "/?user+name=1", ok(&[])),
        (
            required(param("user name", Query, Int)),
            "/?user%2Bname=1",
            err(403, "querystring user name is required"),
        ),
        (id(), "/?id=%2D5", ok(&[])),
        (id(), "/?id=%35%35", ok(&[])),
        (
            id(),
            "/?id=+5",
            err(400, "querystring id is not a valid int"),
        ),
        (
            id(),
            "/?id=%2B5",
            err(400, "querystring id is not a valid int"),
        ),
        (
            s(),
            "/?q=%zz",
            err(400, "querystring q is not a valid string"),
        ),
        (
            s(),
            "/?q=100%",
            err(400, "querystring q is not a valid string"),
        ),
        (
            s(),
            "/?q=%FF",
            err(400, "querystring q is not a valid string"),
        ),
        (s(), "/?q=%C3%A9", ok(&[])),
        // A bad escape in another pair does not matter.
        (s(), "/?x=%zz&q=1", ok(&[])),
        (param("f", Query, Float), "/?f=1e3", ok(&[])),
        (
            param("f", Query, Float),
            "/?f=NaN",
            err(400, "querystring f is not a valid float"),
        ),
        (
            param("d", Query, Double),
            "/?d=inf",
            err(400, "querystring d is not a valid double"),
        ),
        (
            param("l", Query, Long),
            "/?l=9223372036854775808",
            err(400, "querystring l is not a valid long"),
        ),
    ];
    for (p, target, want) in cases {
        let got = run(std::slice::from_ref(&p), "/", target, &[]);
        assert_eq!(got, want, "{} {target}", p.name);
    }
}

#[test]
fn path_params() {
    let id = || required(param("id", Path, Int));
    let optional = "~ ^/r(/(?P<id>[^/]+))?$";
    let cases: Vec<(Param, &str, &str, Outcome)> = vec![
        (id(), "/users/{id}", "/users/42", ok(&[])),
        (id(), "/users/{id}", "/users/-2147483648", ok(&[])),
        (
            id(),
            "/users/{id}",
            "/users/2147483648",
            err(400, "path variable id is not a valid int"),
        ),
        (
            id(),
            "/users/{id}",
            "/users/abc",
            err(400, "path variable id is not a valid int"),
        ),
        (id(), "/users/{id}", "/users/%34%32", ok(&[])),
        (
            id(),
            "/users/{id}",
            "/users/%zz",
            err(400, "path variable id is not a valid int"),
        ),
        (
            param("id", Path, Long),
            "/users/{id}",
            "/users/1.5",
            err(400, "path variable id is not a valid long"),
        ),
        (id(), optional, "/r/7", ok(&[])),
        (
            id(),
            optional,
            "/r",
            err(403, "path variable id is required"),
        ),
        (param("id", Path, Int), optional, "/r", ok(&[])),
        (
            id(),
            optional,
            "/r/x",
            err(400, "path variable id is not a valid int"),
        ),
        // `+` is itself in a path: "4+2" is not an int, " 42" would not be either.
        (
            id(),
            "/users/{id}",
            "/users/4+2",
            err(400, "path variable id is not a valid int"),
        ),
    ];
    for (p, pattern, target, want) in cases {
        let got = run(std::slice::from_ref(&p), pattern, target, &[]);
        assert_eq!(got, want, "{pattern} {target}");
    }
}

#[test]
fn mappings() {
    let h2q = mapped(param("X-Id", Header, Int), Some("id"), Some(Query));
    let q2h = mapped(
        param("q", Query, DataType::String),
        Some("X-Search"),
        Some(Header),
    );
    let p2h = mapped(
        required(param("name", Path, DataType::String)),
        Some("X-Name"),
        Some(Header),
    );
    let p2q = mapped(required(param("id", Path, Int)), None, Some(Query));
    let q2q = mapped(param("page", Query, Int), Some("p"), None);
    let cases: Vec<(&Param, &str, &str, Headers, Outcome)> = vec![
        (&h2q, "/", "/", &[b"x-id: 5"], ok(&[(0, "5")])),
        (&h2q, "/", "/", &[], ok(&[])),
        (&q2h, "/", "/?q=hello+world", &[], ok(&[(0, "hello world")])),
        (&q2h, "/", "/?q=a%09b", &[], ok(&[(0, "a\tb")])),
        (&q2h, "/", "/?q=%C3%A9", &[], ok(&[(0, "\u{e9}")])),
        (&q2h, "/", "/?q=", &[], ok(&[(0, "")])),
        (&q2h, "/", "/?q=1&q=%0D%0A", &[], ok(&[(0, "1")])),
        (
            &q2h,
            "/",
            "/?q=a%0D%0AX-Evil:%201",
            &[],
            err(400, "querystring q cannot be sent as a header"),
        ),
        (
            &q2h,
            "/",
            "/?q=%0A",
            &[],
            err(400, "querystring q cannot be sent as a header"),
        ),
        (
            &q2h,
            "/",
            "/?q=%00",
            &[],
            err(400, "querystring q cannot be sent as a header"),
        ),
        (
            &q2h,
            "/",
            "/?q=%7F",
            &[],
            err(400, "querystring q cannot be sent as a header"),
        ),
        (
            &q2h,
            "/",
            "/?q=+a",
            &[],
            err(400, "querystring q cannot be sent as a header"),
        ),
        (
            &q2h,
            "/",
            "/?q=a%09",
            &[],
            err(400, "querystring q cannot be sent as a header"),
        ),
        (&p2h, "/u/{name}", "/u/a%20b", &[], ok(&[(0, "a b")])),
        (&p2h, "/u/{name}", "/u/a+b/c", &[], ok(&[(0, "a+b/c")])),
        (
            &p2h,
            "/u/{name}",
            "/u/a%0d%0ab",
            &[],
            err(400, "path variable name cannot be sent as a header"),
        ),
        (&p2q, "/u/{id}", "/u/12", &[], ok(&[(0, "12")])),
        (&q2q, "/", "/?page=3", &[], ok(&[(0, "3")])),
        (&q2q, "/", "/?p=3", &[], ok(&[])),
    ];
    for (p, pattern, target, headers, want) in cases {
        let got = run(std::slice::from_ref(p), pattern, target, headers);
        assert_eq!(got, want, "{} {target}", p.name);
    }
}

#[test]
fn defaults_go_to_the_backend_target() {
    let params = [
        default(
            mapped(param("page", Query, Int), Some("p"), Some(Header)),
            "1",
        ),
        default(param("size", Query, Int), "20"),
        default(
            mapped(
                param("X-Lang", Header, DataType::String),
                Some("lang"),
                Some(Query),
            ),
            "en",
        ),
        param("sort", Query, DataType::String),
    ];
    let got = run(&params, "/", "/?size=5", &[]);
    assert_eq!(got, ok(&[(0, "1"), (2, "en")]));
    assert_eq!(backend_target(&params[0]), ("p", Header));
    assert_eq!(backend_target(&params[1]), ("size", Query));
    assert_eq!(backend_target(&params[2]), ("lang", Query));
    // A default that cannot be a header value is refused too (the loader should catch it).
    let bad = [default(param("X-A", Header, DataType::String), "a\r\nb")];
    assert_eq!(
        run(&bad, "/", "/", &[]),
        err(400, "header X-A cannot be sent as a header")
    );
}

#[test]
fn moved_or_not() {
    let cases: &[(Param, (&str, Location), bool)] = &[
        (param("a", Query, Int), ("a", Query), false),
        (
            mapped(param("a", Query, Int), Some("a"), Some(Query)),
            ("a", Query),
            false,
        ),
        (
            mapped(param("a", Query, Int), Some("A"), None),
            ("A", Query),
            true,
        ),
        (
            mapped(param("a", Query, Int), None, Some(Header)),
            ("a", Header),
            true,
        ),
        (
            mapped(param("X-A", Header, Int), Some("x-a"), None),
            ("x-a", Header),
            false,
        ),
        (
            mapped(param("X-A", Header, Int), Some("X-B"), None),
            ("X-B", Header),
            true,
        ),
        (
            mapped(param("X-A", Header, Int), None, Some(Query)),
            ("X-A", Query),
            true,
        ),
        (param("id", Path, Int), ("id", Path), false),
        (
            mapped(param("id", Path, Int), Some("uid"), Some(Query)),
            ("uid", Query),
            true,
        ),
    ];
    for (p, target, moved) in cases {
        assert_eq!(backend_target(p), *target, "{}", p.name);
        assert_eq!(is_moved(p), *moved, "{}", p.name);
    }
}

#[test]
fn config_order_and_first_failure() {
    let params = [
        required(param("X-A", Header, Int)),
        mapped(
            param("b", Query, DataType::String),
            Some("X-B"),
            Some(Header),
        ),
        required(param("c", Query, Boolean)),
        default(param("d", Query, Long), "-1"),
    ];
    assert_eq!(
        run(&params, "/", "/?c=true&b=x", &[b"X-A: 1"]),
        ok(&[(1, "x"), (3, "-1")])
    );
    assert_eq!(
        run(&params, "/", "/?c=yes&b=x", &[]),
        err(403, "header X-A is required")
    );
    assert_eq!(
        run(&params, "/", "/?c=yes", &[b"X-A: 1"]),
        err(400, "querystring c is not a valid boolean")
    );
    assert_eq!(
        run(&params, "/", "/?b=x", &[b"X-A: 1"]),
        err(403, "querystring c is required")
    );
}

#[test]
fn apply_where_passes_over_what_it_does_not_judge() {
    let params = [
        required(param("X-A", Header, Int)),
        default(param("X-B", Header, Int), "7"),
        required(param("c", Query, Boolean)),
        default(param("d", Query, Long), "-1"),
    ];
    let no_headers = |p: &Param| p.location != Header;
    let run_where = |target: &str, headers: &[&[u8]]| -> Outcome {
        let raw = request(target, headers);
        let mut head = RequestHead::default();
        parse_head(&raw, &limits(), &mut head).expect("test request parses");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let captures = Captures::empty();
        let input = ParamInput {
            buf: &raw,
            head: &head,
            query: Some(query),
            path,
            captures: &captures,
        };
        let mut out = ParamValues::default();
        match apply_where(&params, no_headers, &input, &mut out) {
            Ok(()) => Ok(out.iter().map(|(i, v)| (i, v.to_string())).collect()),
            Err(e) => Err((e.status(), e.message())),
        }
    };
    // The missing required header and the header default are not looked at; indices stay
    // those of the whole list.
    assert_eq!(run_where("/?c=true", &[]), ok(&[(3, "-1")]));
    // A bad header value is not looked at either.
    assert_eq!(run_where("/?c=true", &[b"X-A: x"]), ok(&[(3, "-1")]));
    // What is judged is judged as `apply` does.
    assert_eq!(
        run_where("/?c=1", &[]),
        err(400, "querystring c is not a valid boolean")
    );
    assert_eq!(run_where("/", &[]), err(403, "querystring c is required"));
    // `apply` judges all of them.
    assert_eq!(
        run(&params, "/", "/?c=true", &[]),
        err(403, "header X-A is required")
    );
}

#[test]
fn empty_params_touch_nothing() {
    let mut out = ParamValues::default();
    let params = [default(param("a", Query, Int), "1")];
    let raw = request("/", &[]);
    assert_eq!(run_on(&params, "/", &raw, &mut out), ok(&[(0, "1")]));
    assert!(!out.is_empty());
    // Spans pointing nowhere: reading them would find nothing, but nothing reads them.
    let head = RequestHead {
        headers: vec![(
            crate::http::head::Span { start: 9, end: 1 },
            crate::http::head::Span::default(),
        )],
        ..RequestHead::default()
    };
    let captures = Captures::empty();
    let input = ParamInput {
        buf: b"",
        head: &head,
        query: Some("%zz=%zz"),
        path: "",
        captures: &captures,
    };
    assert_eq!(apply(&[], &input, &mut out), Ok(()));
    assert!(out.is_empty());
    assert_eq!(out.len(), 0);
    assert_eq!(out.iter().count(), 0);
}

/// After the first request, the buffers are reused as they are.
#[test]
fn reuse_keeps_the_buffers() {
    let params = [
        required(param("X-T", Header, Int)),
        mapped(
            param("q", Query, DataType::String),
            Some("X-Q"),
            Some(Header),
        ),
        default(param("page", Query, Int), "1"),
        mapped(required(param("id", Path, Int)), Some("uid"), Some(Query)),
    ];
    let raw = request("/u/12?q=caf%C3%A9+au+lait", &[b"X-T: 3"]);
    let mut out = ParamValues::default();
    let want = ok(&[(1, "caf\u{e9} au lait"), (2, "1"), (3, "12")]);
    assert_eq!(run_on(&params, "/u/{id}", &raw, &mut out), want);
    let buffers = |o: &ParamValues| {
        (
            o.text.as_ptr(),
            o.text.capacity(),
            o.placed.as_ptr(),
            o.placed.capacity(),
            o.scratch.as_ptr(),
            o.scratch.capacity(),
        )
    };
    let before = buffers(&out);
    for _ in 0..50 {
        assert_eq!(run_on(&params, "/u/{id}", &raw, &mut out), want);
        assert_eq!(buffers(&out), before);
    }
    assert_eq!(out.get(2), Some("1"));
    assert_eq!(out.get(0), None);
    assert_eq!(out.placed()[0].param, 1);
    assert_eq!(
        &out.text()[out.placed()[0].value.clone()],
        "caf\u{e9} au lait"
    );
    out.clear();
    assert!(out.is_empty());
    assert_eq!(buffers(&out), before);
}

#[test]
fn header_values() {
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("a", true),
        ("a b", true),
        ("a\tb", true),
        ("\u{e9}", true),
        (" a", false),
        ("a ", false),
        ("\ta", false),
        ("a\t", false),
        ("a\rb", false),
        ("a\nb", false),
        ("a\0b", false),
        ("a\x7fb", false),
        ("a\x1bb", false),
    ];
    for &(v, want) in cases {
        assert_eq!(header_value_ok(v), want, "{v:?}");
    }
}
