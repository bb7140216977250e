//! One test per validation rule of the configuration (SPEC §1): each broken file must be
//! refused with an error naming the file, the key path and the line, and saying what is wrong.

use std::path::Path;

use ringway::config::{ConfigError, load_str};

const FILE: &str = "t.toml";

/// A valid API block, to build broken files from.
const API: &str = r#"
[[services]]
name = "s"
[[services.apis]]
name = "a"
path = "=/a"
[services.apis.backend]
type = "mock"
"#;

fn errors(text: &str) -> Vec<ConfigError> {
    match load_str(text, Path::new(FILE)) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.0,
    }
}

/// Asserts that some error has this key, a message containing `fragment`, and this line.
#[track_caller]
fn assert_error(text: &str, key: &str, fragment: &str, line: Option<usize>) {
    let errs = errors(text);
    let found = errs
        .iter()
        .find(|e| e.key == key && e.message.contains(fragment));
    let Some(e) = found else {
        panic!(
            "no error at {key} containing {fragment:?}; got:\n{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    assert_eq!(e.file, FILE);
    assert_eq!(e.line, line, "line of {e}");
    let shown = e.to_string();
    assert!(shown.starts_with(FILE) && shown.contains(key), "{shown}");
}

#[test]
fn valid_files_load() {
    load_str(API, Path::new(FILE)).unwrap();
    load_str("", Path::new(FILE)).unwrap();
}

#[test]
fn toml_syntax_error_has_a_line() {
    let e = &errors("[server]\nworkers = \n")[0];
    assert_eq!((e.file.as_str(), e.line), (FILE, Some(2)));
    assert!(e.message.contains("TOML syntax"), "{e}");
}

#[test]
fn unknown_key() {
    let text = format!("{API}pathh = \"/x\"\n");
    assert_error(
        &text,
        "services[0].apis[0].backend.pathh",
        "unknown field",
        Some(9),
    );
    assert_error(
        "[server]\nlisten = 1\n",
        "server.listen",
        "unknown field",
        Some(2),
    );
    assert_error("[sever]\n", "sever", "unknown field", Some(1));
}

#[test]
fn wrong_type() {
    assert_error(
        "[server]\nworkers = \"two\"\n",
        "server.workers",
        "invalid type",
        Some(2),
    );
}

#[test]
fn service_names_unique() {
    let text = format!("{API}{API}");
    assert_error(&text, "services[1].name", "defined twice", Some(11));
}

#[test]
fn api_names_unique_per_service() {
    let text = format!(
        "{API}[[services.apis]]\nname = \"a\"\npath = \"=/b\"\n[services.apis.backend]\ntype = \"mock\"\n"
    );
    assert_error(&text, "services[0].apis[1].name", "defined twice", Some(10));
}

#[test]
fn api_name_at_most_60_characters() {
    let text = API.replace("name = \"a\"", &format!("name = \"{}\"", "é".repeat(61)));
    assert_error(&text, "services[0].apis[0].name", "61 characters", Some(5));
    load_str(
        &API.replace("name = \"a\"", &format!("name = \"{}\"", "é".repeat(60))),
        Path::new(FILE),
    )
    .unwrap();
}

#[test]
fn path_syntax() {
    for (path, fragment) in [
        ("=a", "must start with `/`"),
        ("^~/a/{id}", "only allowed in plain paths"),
        ("/a/{id", "unclosed"),
        ("/a/{x}{y}", "touch"),
        ("a/b", "must start with"),
        ("/a/../b", "dot"),
    ] {
        let text = API.replace("path = \"=/a\"", &format!("path = \"{path}\""));
        assert_error(&text, "services[0].apis[0].path", fragment, Some(6));
    }
}

#[test]
fn regex_must_compile() {
    let text = API.replace("path = \"=/a\"", "path = \"~ ^/a(\"");
    assert_error(
        &text,
        "services[0].apis[0].path",
        "does not compile",
        Some(6),
    );
}

#[test]
fn every_path_variable_is_declared() {
    let text = API.replace("path = \"=/a\"", "path = \"/a/{id}\"");
    assert_error(
        &text,
        "services[0].apis[0].path",
        "{id} is not declared",
        Some(6),
    );
}

#[test]
fn every_path_param_is_in_the_path() {
    let text = API.replace(
        "[services.apis.backend]",
        "[[services.apis.params]]\nname = \"id\"\nlocation = \"path\"\n[services.apis.backend]",
    );
    assert_error(
        &text,
        "services[0].apis[0].params[0].name",
        "does not appear in the path",
        Some(8),
    );
}

#[test]
fn backend_path_variables_exist() {
    let text = API.replace("type = \"mock\"", "type = \"mock\"\npath = \"/x/{nope}\"");
    assert_error(
        &text,
        "services[0].apis[0].backend.path",
        "{nope} is not a path parameter",
        Some(9),
    );
}

#[test]
fn upstream_names_resolve() {
    let text = API.replace("type = \"mock\"", "upstream = \"missing\"\npath = \"/x\"");
    assert_error(
        &text,
        "services[0].apis[0].backend.upstream",
        "no [[upstreams]] entry",
        Some(8),
    );
}

#[test]
fn upstream_names_unique() {
    let up = "[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n";
    assert_error(
        &format!("{up}{up}"),
        "upstreams[1].name",
        "defined twice",
        Some(5),
    );
}

#[test]
fn urls_parse() {
    for (url, fragment) in [
        ("ftp://1.2.3.4", "must start with http"),
        ("http://clb.internal:80", "by IP address"),
        ("http://1.2.3.4:80/path", "just scheme://vip:port"),
    ] {
        let text = format!("[[upstreams]]\nname = \"u\"\nurl = \"{url}\"\n");
        assert_error(&text, "upstreams[0].url", fragment, Some(3));
    }
    let ok = "[[upstreams]]\nname = \"u\"\nurl = \"https://[::1]\"\n";
    load_str(ok, Path::new(FILE)).unwrap();
}

#[test]
fn upstream_ports_are_checked() {
    for (url, message) in [
        (
            "http://127.0.0.1:99999",
            "\"http://127.0.0.1:99999\": port 99999 is out of range (1-65535)",
        ),
        (
            "https://[::1]:65536",
            "\"https://[::1]:65536\": port 65536 is out of range (1-65535)",
        ),
        (
            "http://127.0.0.1:0",
            "\"http://127.0.0.1:0\": port 0 is out of range (1-65535)",
        ),
        (
            "http://127.0.0.1:http",
            "\"http://127.0.0.1:http\": port \"http\" is not a number",
        ),
        (
            "http://127.0.0.1:",
            "\"http://127.0.0.1:\": the port after `:` is empty",
        ),
    ] {
        let text = format!("[[upstreams]]\nname = \"u\"\nurl = \"{url}\"\n");
        let errs = errors(&text);
        assert_error(&text, "upstreams[0].url", message, Some(3));
        assert!(
            errs.iter().all(|e| !e.message.contains("host names")),
            "{url}: {errs:?}"
        );
    }
    for (target, message) in [
        (
            "127.0.0.1:99999",
            "\"127.0.0.1:99999\": port 99999 is out of range (1-65535)",
        ),
        (
            "127.0.0.1:0",
            "\"127.0.0.1:0\": port 0 is out of range (1-65535)",
        ),
        (
            "127.0.0.1:x1",
            "\"127.0.0.1:x1\": port \"x1\" is not a number",
        ),
        ("127.0.0.1:", "\"127.0.0.1:\": the port after `:` is empty"),
        ("127.0.0.1", "the port is missing"),
        ("clb.internal:80", "host names are not resolved"),
    ] {
        let text = format!(
            "[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\ntargets = [\"127.0.0.1:2\", \"{target}\"]\n"
        );
        assert_error(&text, "upstreams[0].targets[1]", message, Some(4));
    }
}

#[test]
fn addresses_parse() {
    assert_error(
        "[server]\nlisten_http = [\"0.0.0.0:80\", \"nope:80\"]\n",
        "server.listen_http[1]",
        "not an address",
        Some(2),
    );
    assert_error(
        "[server]\nadmin_listen = \"localhost\"\n",
        "server.admin_listen",
        "not an address",
        Some(2),
    );
    assert_error(
        "[[upstreams]]\nname = \"u\"\nurl = \"http://1.2.3.4\"\ntargets = [\"1.2.3.4\"]\n",
        "upstreams[0].targets[0]",
        "not an address",
        Some(4),
    );
}

#[test]
fn listeners_unique() {
    assert_error(
        "[server]\nlisten_http = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
        "server.listen_http[1]",
        "also in",
        Some(2),
    );
}

#[test]
fn certificate_and_key_files_readable() {
    let text = "[[certificates]]\nhosts = [\"a.com\"]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n";
    assert_error(
        text,
        "certificates[0].cert",
        "cannot read certificates from /nonexistent/c.pem",
        Some(3),
    );
    assert_error(
        text,
        "certificates[0].key",
        "cannot read a PEM private key",
        Some(4),
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not pem\n").unwrap();
    let text = format!(
        "[[certificates]]\nhosts = [\"a.com\"]\ncert = \"{0}\"\nkey = \"{0}\"\n",
        empty.display()
    );
    assert_error(
        &text,
        "certificates[0].cert",
        "holds no PEM certificate",
        Some(3),
    );
}

#[test]
fn endless_key_files_are_refused_not_read_forever() {
    let text = "[[certificates]]\nhosts = [\"a.com\"]\ncert = \"/dev/zero\"\nkey = \"/dev/zero\"\n";
    assert_error(
        text,
        "certificates[0].cert",
        "larger than 1048576 bytes",
        Some(3),
    );
    assert_error(
        text,
        "certificates[0].key",
        "larger than 1048576 bytes",
        Some(4),
    );
    let jwk = format!("{API}[services.oauth2]\npublic_key_file = \"/dev/zero\"\n");
    assert_error(
        &jwk,
        "services[0].oauth2.public_key_file",
        "larger than",
        Some(10),
    );
}

#[test]
fn shipped_certificate_loads() {
    let text = "[[certificates]]\nhosts = [\"a.example.com\"]\ncert = \"conf/tls/example.crt\"\nkey = \"conf/tls/example.key\"\n";
    let cfg = load_str(text, Path::new(FILE)).unwrap();
    assert_eq!(cfg.certificates[0].chain.len(), 1);
    assert_eq!(
        cfg.server.listen_https.len(),
        1,
        "HTTPS listens by default once there is a certificate"
    );
}

#[test]
fn https_listener_needs_a_certificate() {
    assert_error(
        "[server]\nlisten_https = [\"0.0.0.0:8443\"]\n",
        "server.listen_https",
        "[[certificates]]",
        Some(2),
    );
}

#[test]
fn https_only_service_needs_a_covering_certificate() {
    let cert = "[[certificates]]\nhosts = [\"*.example.com\"]\ncert = \"conf/tls/example.crt\"\nkey = \"conf/tls/example.key\"\n";
    let text = format!(
        "{cert}{}",
        API.replace(
            "name = \"s\"",
            "name = \"s\"\nhosts = [\"a.example.com\", \"other.org\"]\nprotocol = \"https\""
        )
    );
    assert_error(
        &text,
        "services[0].hosts[1]",
        "no [[certificates]] entry covers \"other.org\"",
        Some(8),
    );
    let errs = errors(&text);
    assert!(
        !errs.iter().any(|e| e.key == "services[0].hosts[0]"),
        "a.example.com is covered"
    );
}

#[test]
fn key_pair_lengths() {
    let pair = |id: &str, key: &str| {
        format!(
            "{API}[[key_pairs]]\nsecret_id = \"{id}\"\nsecret_key = \"{key}\"\nservices = [\"s\"]\n"
        )
    };
    assert_error(
        &pair("abcd", "0123456789"),
        "key_pairs[0].secret_id",
        "4 characters",
        Some(10),
    );
    assert_error(
        &pair(&"i".repeat(51), "0123456789"),
        "key_pairs[0].secret_id",
        "51 characters",
        Some(10),
    );
    assert_error(
        &pair("abcde", "012345678"),
        "key_pairs[0].secret_key",
        "9 characters",
        Some(11),
    );
    assert_error(
        &pair("abcde", &"k".repeat(51)),
        "key_pairs[0].secret_key",
        "51 characters",
        Some(11),
    );
    load_str(&pair("abcde", "0123456789"), Path::new(FILE)).unwrap();
}

#[test]
fn key_pair_secret_from_environment() {
    let text = format!(
        "{API}[[key_pairs]]\nsecret_id = \"abcde\"\nsecret_key_env = \"RINGWAY_TEST_UNSET_VARIABLE\"\nservices = [\"s\"]\n"
    );
    assert_error(
        &text,
        "key_pairs[0].secret_key_env",
        "RINGWAY_TEST_UNSET_VARIABLE is not set",
        Some(11),
    );
}

#[test]
fn key_pair_services_resolve() {
    let text = format!(
        "{API}[[key_pairs]]\nsecret_id = \"abcde\"\nsecret_key = \"0123456789\"\nservices = [\"s\", \"ghost\"]\n"
    );
    assert_error(
        &text,
        "key_pairs[0].services[1]",
        "no service is named \"ghost\"",
        Some(12),
    );
}

#[test]
fn defaults_match_their_data_type() {
    for (ty, bad) in [
        ("int", "x"),
        ("int", "3000000000"),
        ("long", "1.5"),
        ("float", "abc"),
        ("double", "NaN"),
        ("boolean", "yes"),
    ] {
        let text = API.replace(
            "[services.apis.backend]",
            &format!("[[services.apis.params]]\nname = \"q\"\nlocation = \"query\"\ndata_type = \"{ty}\"\ndefault = \"{bad}\"\n[services.apis.backend]"),
        );
        assert_error(
            &text,
            "services[0].apis[0].params[0].default",
            &format!("is not a valid {ty}"),
            Some(11),
        );
    }
    let ok = API.replace("[services.apis.backend]", "[[services.apis.params]]\nname = \"q\"\nlocation = \"query\"\ndata_type = \"long\"\ndefault = 3000000000\n[services.apis.backend]");
    load_str(&ok, Path::new(FILE)).unwrap();
}

#[test]
fn required_keys_are_reported() {
    let text = "[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"a\"\n";
    assert_error(text, "services[0].apis[0].path", "is required", Some(3));
    assert_error(text, "services[0].apis[0].backend", "is required", Some(3));
    assert_error(
        "[[upstreams]]\nname = \"u\"\n",
        "upstreams[0].url",
        "is required",
        Some(1),
    );
}

#[test]
fn enum_values_are_checked() {
    let text = API.replace(
        "path = \"=/a\"",
        "path = \"=/a\"\nmethod = \"FETCH\"\nauth = \"basic\"\nfrontend_type = \"grpc\"",
    );
    assert_error(
        &text,
        "services[0].apis[0].method",
        "\"FETCH\" is not one of",
        Some(7),
    );
    assert_error(
        &text,
        "services[0].apis[0].auth",
        "\"basic\" is not one of",
        Some(8),
    );
    assert_error(
        &text,
        "services[0].apis[0].frontend_type",
        "\"grpc\" is not one of",
        Some(9),
    );
}

#[test]
fn hosts_unique_across_services() {
    let text = format!(
        "{}{}",
        API.replace("name = \"s\"", "name = \"s\"\nhosts = [\"a.com\"]"),
        API.replace("name = \"s\"", "name = \"t\"\nhosts = [\"A.com\"]")
    );
    assert_error(
        &text,
        "services[1].hosts[0]",
        "already belongs to service \"s\"",
        Some(13),
    );
}

#[test]
fn same_path_and_method_twice_is_unreachable() {
    let text = format!(
        "{API}[[services.apis]]\nname = \"b\"\npath = \"= /a\"\n[services.apis.backend]\ntype = \"mock\"\n"
    );
    assert_error(
        &text,
        "services[0].apis[1].path",
        "could never be reached",
        Some(11),
    );
}

#[test]
fn oauth2_api_needs_a_service_key() {
    let text = API.replace("path = \"=/a\"", "path = \"=/a\"\nauth = \"oauth2\"");
    assert_error(
        &text,
        "services[0].apis[0].auth",
        "no [services.oauth2]",
        Some(7),
    );
}

#[test]
fn oauth2_key_is_a_public_jwk() {
    let with_key = |jwk: &str| format!("{API}[services.oauth2]\npublic_key = '{jwk}'\n");
    assert_error(
        &with_key("{not json"),
        "services[0].oauth2.public_key",
        "not a JSON JWK",
        Some(10),
    );
    assert_error(
        &with_key(r#"{"kty":"oct","k":"abc"}"#),
        "services[0].oauth2.public_key",
        "kty",
        Some(10),
    );
    assert_error(
        &with_key(r#"{"kty":"RSA","e":"AQAB"}"#),
        "services[0].oauth2.public_key",
        "\"n\"",
        Some(10),
    );
    assert_error(
        &with_key(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}"#),
        "services[0].oauth2.public_key",
        "private key",
        Some(10),
    );
    // The right shape is not enough: the point must be on the curve.
    assert_error(
        &with_key(r#"{"kty":"EC","crv":"P-256","x":"abc","y":"def"}"#),
        "services[0].oauth2.public_key",
        "\"y\"",
        Some(10),
    );
    assert_error(
        &with_key(r#"{"kty":"RSA","e":"AQAB","n":"AQAB"}"#),
        "services[0].oauth2.public_key",
        "bits",
        Some(10),
    );
    // RFC 7515 A.3's public key loads.
    load_str(
        &with_key(r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#),
        Path::new(FILE),
    )
    .unwrap();
}

#[test]
fn ranges_are_checked() {
    assert_error(
        "[server]\nheader_timeout_ms = 0\n",
        "server.header_timeout_ms",
        "out of range",
        Some(2),
    );
    assert_error(
        "[server]\nmax_uri_bytes = 65536\n",
        "server.max_uri_bytes",
        "exceeds server.max_header_bytes",
        Some(2),
    );
    let text = API.replace("type = \"mock\"", "type = \"mock\"\nmock_status = 99");
    assert_error(
        &text,
        "services[0].apis[0].backend.mock_status",
        "out of range",
        Some(9),
    );
}

#[test]
fn websocket_apis_are_get_with_a_vpc_backend() {
    let text = API.replace(
        "path = \"=/a\"",
        "path = \"=/a\"\nfrontend_type = \"ws\"\nmethod = \"POST\"",
    );
    assert_error(&text, "services[0].apis[0].method", "must use GET", Some(8));
    assert_error(
        &text,
        "services[0].apis[0].backend.type",
        "needs a \"vpc\" backend",
        Some(10),
    );
}

#[test]
fn backend_type_fields() {
    let up = "[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n";
    let text = format!(
        "{up}{}",
        API.replace("type = \"mock\"", "upstream = \"u\"\nmock_status = 200")
    );
    assert_error(
        &text,
        "services[0].apis[0].backend.mock_status",
        "only applies to type = \"mock\"",
        Some(12),
    );
    assert_error(
        &text,
        "services[0].apis[0].backend.path",
        "is required",
        Some(10),
    );
}

#[test]
fn constants_cannot_set_framing_headers() {
    let text = API.replace("type = \"mock\"", "type = \"mock\"\n[[services.apis.backend.constants]]\nname = \"Content-Length\"\nlocation = \"header\"\nvalue = \"5\"");
    assert_error(
        &text,
        "services[0].apis[0].backend.constants[0].name",
        "managed by the gateway",
        Some(10),
    );
    // The caller's identity is the auth stage's to set.
    for name in ["X-Api-SecretId", "x-api-subject"] {
        let text = API.replace("type = \"mock\"", &format!("type = \"mock\"\n[[services.apis.backend.constants]]\nname = \"{name}\"\nlocation = \"header\"\nvalue = \"admin\""));
        assert_error(
            &text,
            "services[0].apis[0].backend.constants[0].name",
            "managed by the gateway",
            Some(10),
        );
    }
}

#[test]
fn ip_control_entries_are_addresses_or_cidr_ranges() {
    // (entry, what the error says); each entry on its own line, from line 12.
    let cases = [
        (
            "10.0.0.0/33",
            "/33 is out of range 0..=32 for an IPv4 address",
        ),
        (
            "2001:db8::/129",
            "/129 is out of range 0..=128 for an IPv6 address",
        ),
        (
            "10.0.0.1/8",
            "has bits set past the /8 prefix: write \"10.0.0.0/8\"",
        ),
        ("10.0.0.0/x", "the prefix length \"x\" is not a number"),
        ("fe80::1%eth0", "has an IPv6 zone"),
        ("10.0.0", "is not an IP address or a CIDR range"),
        (
            "gateway.example.com",
            "is not an IP address or a CIDR range",
        ),
    ];
    let list: String = cases.iter().map(|(e, _)| format!("  \"{e}\",\n")).collect();
    for table in ["[services.ip_control]", "[services.apis.ip_control]"] {
        let text = format!("{API}{table}\nmode = \"allow\"\nips = [\n  \"10.0.0.0/8\",\n{list}]\n");
        let base = match table {
            "[services.ip_control]" => "services[0].ip_control",
            _ => "services[0].apis[0].ip_control",
        };
        for (i, (_, fragment)) in cases.iter().enumerate() {
            assert_error(
                &text,
                &format!("{base}.ips[{}]", i + 1),
                fragment,
                Some(13 + i),
            );
        }
        assert_eq!(errors(&text).len(), cases.len(), "one error per bad entry");
    }
}

#[test]
fn ip_control_ips_is_not_empty() {
    for (table, key) in [
        ("[services.ip_control]", "services[0].ip_control.ips"),
        (
            "[services.apis.ip_control]",
            "services[0].apis[0].ip_control.ips",
        ),
    ] {
        let text = format!("{API}{table}\nmode = \"deny\"\nips = []\n");
        assert_error(&text, key, "is empty", Some(11));
        let text = format!("{API}{table}\nmode = \"deny\"\n");
        assert_error(&text, key, "is required", Some(9));
    }
}

#[test]
fn ip_control_mode_is_allow_or_deny() {
    for (table, key) in [
        ("[services.ip_control]", "services[0].ip_control.mode"),
        (
            "[services.apis.ip_control]",
            "services[0].apis[0].ip_control.mode",
        ),
    ] {
        let text = format!("{API}{table}\nmode = \"block\"\nips = [\"10.0.0.0/8\"]\n");
        assert_error(
            &text,
            key,
            "\"block\" is not one of \"allow\" | \"deny\"",
            Some(10),
        );
        // No default: a forgotten mode would be the opposite policy.
        let text = format!("{API}{table}\nips = [\"10.0.0.0/8\"]\n");
        assert_error(&text, key, "is required", Some(9));
        let text = format!("{API}{table}\nmode = \"allow\"\nip = [\"10.0.0.0/8\"]\n");
        assert_error(&text, &key.replace("mode", "ip"), "unknown field", Some(11));
    }
}

#[test]
fn every_error_is_collected() {
    let text = "[server]\nworkers = 5000\n[[upstreams]]\nname = \"u\"\nurl = \"gopher://x\"\n[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"a\"\npath = \"nope\"\nmethod = \"FETCH\"\n[services.apis.backend]\nupstream = \"zz\"\npath = \"/x\"\n";
    let errs = errors(text);
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "server.workers",
        "upstreams[0].url",
        "services[0].apis[0].path",
        "services[0].apis[0].method",
        "services[0].apis[0].backend.upstream",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert!(errs.iter().all(|e| e.line.is_some()), "{errs:?}");
}

#[test]
fn shipped_configs_are_valid() {
    for f in ["conf/ringway.toml", "conf/minimal.toml"] {
        ringway::config::load(Path::new(f)).unwrap_or_else(|e| panic!("{e}"));
    }
}
