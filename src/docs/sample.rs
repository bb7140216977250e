//! What a caller needs besides the path: the base URLs of a service, a `curl` sample request
//! per API, and how to authenticate (the key-pair signing recipe, where an OAuth 2.0 token
//! goes and which algorithms the service's key verifies).
//!
//! Server URLs come from the service's `hosts` × its `protocol` × the listener ports: an
//! exact host as it is, a wildcard host as an OpenAPI variable (`{subdomain}.example.com`),
//! and a service without hosts as `{host}` (defaulting to the listener's address, or
//! `localhost` for an unspecified one). Ports 80/443 (and port 0: an ephemeral listener) are
//! left out of the URL.

use std::net::SocketAddr;

use crate::auth::hmac;
use crate::config::{
    Api, Auth, Config, FrontendType, Location, OAuth2, Protocol, Service, TokenLocation,
};
use crate::router::HostPattern;

use super::paths::{percent_encode, sample_path, sample_value};

/// A server URL, with its variables as (name, default, description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub url: String,
    pub variables: Vec<(&'static str, String, &'static str)>,
    pub https: bool,
}

impl ServerUrl {
    /// The URL with every variable replaced by its default.
    pub fn concrete(&self) -> String {
        let mut url = self.url.clone();
        for (name, default, _) in &self.variables {
            url = url.replace(&format!("{{{name}}}"), default);
        }
        url
    }
}

/// The service's base URLs: HTTP ones first, then HTTPS ones (see the module docs).
pub fn servers(config: &Config, service: &Service) -> Vec<ServerUrl> {
    let mut out: Vec<ServerUrl> = Vec::new();
    let schemes = [
        (false, &config.server.listen_http),
        (true, &config.server.listen_https),
    ];
    for (https, listeners) in schemes {
        if !service.protocol.allows(https) {
            continue;
        }
        for addr in listeners.iter() {
            for url in urls_for(service, *addr, https) {
                if !out.contains(&url) {
                    out.push(url);
                }
            }
        }
    }
    out
}

fn urls_for(service: &Service, addr: SocketAddr, https: bool) -> Vec<ServerUrl> {
    let scheme = if https { "https" } else { "http" };
    let default_port = if https { 443 } else { 80 };
    let port = match addr.port() {
        0 => String::new(),
        p if p == default_port => String::new(),
        p => format!(":{p}"),
    };
    if service.hosts.is_empty() {
        let host = if addr.ip().is_unspecified() {
            "localhost".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        return vec![ServerUrl {
            url: format!("{scheme}://{{host}}{port}"),
            variables: vec![("host", host, "any host name: this service has no `hosts`")],
            https,
        }];
    }
    service
        .hosts
        .iter()
        .map(|h| match h {
            HostPattern::Exact(name) => ServerUrl {
                url: match name.parse::<std::net::Ipv6Addr>() {
                    Ok(v6) => format!("{scheme}://[{v6}]{port}"),
                    Err(_) => format!("{scheme}://{name}{port}"),
                },
                variables: Vec::new(),
                https,
            },
            HostPattern::Wildcard(suffix) => ServerUrl {
                url: format!("{scheme}://{{subdomain}}.{suffix}{port}"),
                variables: vec![("subdomain", "www".into(), "any one DNS label")],
                https,
            },
        })
        .collect()
}

/// A string as one shell word (single-quoted).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The headers the key-pair recipe signs, in order: (name in the signing string and in
/// `headers="..."`, header as sent, shell variable, the variable's value in shell). The signing
/// string, the `-H` options and the `headers="..."` list are all made from this one list, so
/// they cannot disagree.
pub const KEY_PAIR_SIGNED: [(&str, &str, &str, &str); 2] = [
    (
        "x-date",
        "X-Date",
        "XDATE",
        "$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')",
    ),
    ("source", "Source", "SOURCE", "my-app"),
];

/// The first line of a sample that needs the caller's key pair.
pub const KEY_PAIR_NOTE: &str =
    "# Set SECRET_ID and SECRET_KEY to your key pair's secret_id and secret_key first.";

/// The key-pair signing recipe in shell (SPEC §4, hmac-sha256, signed by the `openssl` CLI):
/// the lines that set each signed header's variable and `SIG`, and the `curl -H` arguments
/// (shell words) that send the signed headers and `Authorization`. Uses `$SECRET_ID` and
/// `$SECRET_KEY`.
pub fn key_pair_recipe() -> (Vec<String>, Vec<String>) {
    let mut lines: Vec<String> = KEY_PAIR_SIGNED
        .iter()
        .map(|(_, _, var, value)| format!("{var}={value}"))
        .collect();
    let format: Vec<String> = KEY_PAIR_SIGNED
        .iter()
        .map(|(name, ..)| format!("{name}: %s"))
        .collect();
    let args: Vec<String> = KEY_PAIR_SIGNED
        .iter()
        .map(|(_, _, var, _)| format!("\"${var}\""))
        .collect();
    lines.push(format!(
        "SIG=$(printf '{}' {} | openssl dgst -sha256 -hmac \"$SECRET_KEY\" -binary | openssl base64 -A)",
        format.join("\\n"),
        args.join(" ")
    ));
    let mut headers: Vec<String> = KEY_PAIR_SIGNED
        .iter()
        .map(|(_, header, var, _)| format!("\"{header}: ${var}\""))
        .collect();
    headers.push(format!(
        r#""Authorization: hmac id=\"$SECRET_ID\", algorithm=\"hmac-sha256\", headers=\"{}\", signature=\"$SIG\"""#,
        key_pair_signed_names()
    ));
    (lines, headers)
}

/// The `headers="..."` value of the recipe: the signed header names, space-separated.
pub fn key_pair_signed_names() -> String {
    let names: Vec<&str> = KEY_PAIR_SIGNED.iter().map(|(name, ..)| *name).collect();
    names.join(" ")
}

/// A `curl` command for the API, calling it with its configured method (see [`curl_as`]).
pub fn curl(config: &Config, service: &Service, api: &Api) -> String {
    curl_as(config, service, api, api.methods.name())
}

/// A `curl` command for the API sent with `method` (an `ANY` API's OpenAPI operations pass
/// their own): the first server URL with the params' samples, defaults or type examples. It
/// runs as shown, but for what it says in `#` lines first: a key-pair API's sample signs
/// with `$SECRET_ID` / `$SECRET_KEY` (set them first), and a sample with a placeholder in
/// `<...>` (`<JWT>` for an OAuth 2.0 token, `<rest>` for the part of a path only a regex
/// describes) starts with `# Template:` lines saying what to put there.
pub fn curl_as(config: &Config, service: &Service, api: &Api, method: &str) -> String {
    let base = servers(config, service)
        .first()
        .map_or_else(|| "http://localhost".to_string(), ServerUrl::concrete);
    let (mut path, complete) = sample_path(api);
    let mut query: Vec<String> = api
        .params
        .iter()
        .filter(|p| p.location == Location::Query && (p.required || p.sample.is_some()))
        .map(|p| {
            format!(
                "{}={}",
                percent_encode(&p.name, b""),
                percent_encode(&sample_value(p), b"")
            )
        })
        .collect();
    let mut headers: Vec<String> = api
        .params
        .iter()
        .filter(|p| p.location == Location::Header && (p.required || p.sample.is_some()))
        .map(|p| shell_quote(&format!("{}: {}", p.name, sample_value(p))))
        .collect();
    let mut lines: Vec<String> = Vec::new();
    if !complete {
        lines.push(format!(
            "# Template: replace {REST} with the rest of a path that the regex {} matches.",
            api.path_source.replace('\n', " ")
        ));
        path.push_str(REST);
    }
    match (api.auth, service.oauth2.as_ref()) {
        (Auth::KeyPair, _) => {
            lines.push(KEY_PAIR_NOTE.to_string());
            let (recipe, mut signed) = key_pair_recipe();
            lines.extend(recipe);
            headers.append(&mut signed);
        }
        (Auth::OAuth2, Some(o)) => {
            lines.push(format!(
                "# Template: replace {JWT} with a JWT from the service's identity provider ({}).",
                jwt_algorithms(o).join(", ")
            ));
            match o.token_location {
                TokenLocation::Header => {
                    headers.push(shell_quote(&format!("Authorization: Bearer {JWT}")))
                }
                TokenLocation::Cookie => headers.push(format!(
                    "-b {}",
                    shell_quote(&format!("{}={JWT}", o.token_name))
                )),
                TokenLocation::Query => {
                    query.push(format!("{}={JWT}", percent_encode(&o.token_name, b"")))
                }
            }
        }
        _ => {}
    }
    let mut url = format!("{base}{path}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    let flags = match (api.frontend_type, method) {
        (FrontendType::Ws, _) => {
            let handshake = [
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ];
            let mut all: Vec<String> = handshake.iter().map(|h| shell_quote(h)).collect();
            all.append(&mut headers);
            headers = all;
            "-i -N --http1.1".to_string()
        }
        (_, "HEAD") => "-I".into(),
        (_, "GET" | "ANY") => "-i".into(),
        (_, m) => format!("-i -X {m}"),
    };
    let mut cmd = vec![format!("curl {flags} {}", shell_quote(&url))];
    for h in headers {
        if h.starts_with("-b ") {
            cmd.push(h);
        } else {
            cmd.push(format!("-H {h}"));
        }
    }
    lines.push(cmd.join(" \\\n  "));
    lines.join("\n")
}

/// The placeholder for an OAuth 2.0 token in a sample.
pub const JWT: &str = "<JWT>";
/// The placeholder for the part of a sample path that only a regex describes.
pub const REST: &str = "<rest>";

/// The key-pair (HMAC) recipe, as Markdown lines (also shown by the HTML page).
pub fn key_pair_howto() -> Vec<String> {
    let algs: Vec<&str> = hmac::Algorithm::ALL.iter().map(|a| a.name()).collect();
    vec![
        "Sign each request with a key pair (a `secret_id` and its `secret_key`, given to you by the gateway's operator) and send:".into(),
        format!("`Authorization: hmac id=\"<secret_id>\", algorithm=\"hmac-sha256\", headers=\"{}\", signature=\"<base64>\"`", key_pair_signed_names()),
        "The signing string is, for each header named in `headers`, in order, `lowercase(name) + \": \" + value`, joined by `\\n` (no trailing newline); the pseudo-header `request-line` stands for the request line (`GET /path?q HTTP/1.1`).".into(),
        format!("`signature` is the standard (padded) base64 of the HMAC of the signing string with the secret key. Algorithms: {}.", algs.join(", ")),
        format!("`x-date` (or `date`) must be signed: an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) within {} s of the gateway's clock.", hmac::MAX_CLOCK_SKEW.as_secs()),
        "Failures get 401 with a message such as `HMAC signature does not match`, `HMAC id not found` or `Time skew exceeded`. The backend receives your `secret_id` as `X-Api-SecretId`; the `Authorization` header is not forwarded.".into(),
    ]
}

/// Where an OAuth 2.0 token goes, e.g. "the `Authorization: Bearer <JWT>` header".
pub fn token_place(o: &OAuth2) -> String {
    match o.token_location {
        TokenLocation::Header => "the `Authorization: Bearer <JWT>` header".into(),
        TokenLocation::Cookie => format!("the cookie `{}`", o.token_name),
        TokenLocation::Query => format!("the query parameter `{}`", o.token_name),
    }
}

/// The JWT algorithms the service's key verifies: the JWK's `alg` if it names one, else
/// every algorithm of its key type.
pub fn jwt_algorithms(o: &OAuth2) -> Vec<String> {
    if let Some(alg) = o.public_key.get("alg").and_then(|v| v.as_str()) {
        return vec![alg.to_string()];
    }
    let kty = o.public_key.get("kty").and_then(|v| v.as_str());
    let crv = o.public_key.get("crv").and_then(|v| v.as_str());
    let algs: &[&str] = match (kty, crv) {
        (Some("RSA"), _) => &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
        (Some("EC"), Some("P-256")) => &["ES256"],
        (Some("EC"), Some("P-384")) => &["ES384"],
        _ => &[],
    };
    algs.iter().map(|a| a.to_string()).collect()
}

/// The OAuth 2.0 recipe, as Markdown lines.
pub fn oauth2_howto(o: &OAuth2) -> Vec<String> {
    vec![
        format!(
            "Send a JWT signed by the service's identity provider in {}.",
            token_place(o)
        ),
        format!(
            "Algorithms: {}. `exp` and `nbf` are checked ({} s leeway); `alg: none` is refused.",
            jwt_algorithms(o).join(", "),
            crate::auth::jwt::LEEWAY_SECS
        ),
        format!(
            "A missing token gets 401 `{}`, any other failure 401 `{}`. The backend receives the token's `sub` as `X-Api-Subject`.",
            crate::auth::jwt::MSG_MISSING,
            crate::auth::jwt::MSG_INVALID
        ),
    ]
}

/// What CORS means for an API with `cors = true`.
pub const CORS_HOWTO: &str = "Every response (the backend's and the gateway's own errors) carries `Access-Control-Allow-Origin: *` and `Access-Control-Expose-Headers: X-Api-RequestId`. A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by the gateway: 204, the allowed methods, the requested headers echoed, max-age 86400; it needs no auth.";

/// Whether the service is reachable over plain HTTP / over TLS, in words.
pub fn protocol_words(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "HTTP only (HTTPS requests get 426)",
        Protocol::Https => "HTTPS only (plain HTTP requests get 426)",
        Protocol::Both => "HTTP and HTTPS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::tests::config;

    const LISTEN: &str =
        "[server]\nlisten_http = [\"0.0.0.0:8080\", \"127.0.0.1:80\"]\nadmin_listen = \"off\"\n";

    fn urls(cfg: &Config) -> Vec<String> {
        servers(cfg, &cfg.services[0])
            .iter()
            .map(|s| s.url.clone())
            .collect()
    }

    #[test]
    fn servers_from_hosts_protocol_and_ports() {
        let cfg = config(&format!(
            "{LISTEN}[[services]]\nname = \"s\"\nhosts = [\"api.example.com\", \"*.example.org\"]\n"
        ));
        assert_eq!(
            urls(&cfg),
            [
                "http://api.example.com:8080",
                "http://{subdomain}.example.org:8080",
                "http://api.example.com",
                "http://{subdomain}.example.org",
            ]
        );
        let s = &servers(&cfg, &cfg.services[0])[1];
        assert_eq!(s.concrete(), "http://www.example.org:8080");

        let cfg = config(&format!(
            "{LISTEN}[[services]]\nname = \"v6\"\nhosts = [\"::1\"]\n"
        ));
        assert_eq!(urls(&cfg), ["http://[::1]:8080", "http://[::1]"]);

        let cfg = config(&format!("{LISTEN}[[services]]\nname = \"s\"\n"));
        let all = servers(&cfg, &cfg.services[0]);
        assert_eq!(urls(&cfg), ["http://{host}:8080", "http://{host}"]);
        assert_eq!(all[0].concrete(), "http://localhost:8080");
        assert_eq!(all[1].concrete(), "http://127.0.0.1");
    }

    fn one_api(api: &str, service_extra: &str) -> Config {
        config(&format!(
            "[server]\nlisten_http = [\"0.0.0.0:8080\"]\nadmin_listen = \"off\"\n[[services]]\nname = \"s\"\n{service_extra}\n[[services.apis]]\nname = \"a\"\n{api}\n[services.apis.backend]\ntype = \"mock\"\n"
        ))
    }

    #[test]
    fn curl_samples() {
        let params = "[[services.apis.params]]\nname = \"id\"\nlocation = \"path\"\ndata_type = \"int\"\nsample = \"7\"\n[[services.apis.params]]\nname = \"q\"\nlocation = \"query\"\nrequired = true\nsample = \"a b\"\n[[services.apis.params]]\nname = \"opt\"\nlocation = \"query\"\ndefault = \"1\"\n[[services.apis.params]]\nname = \"X-T\"\nlocation = \"header\"\nrequired = true\n";
        let cases = [
            (
                format!("path = \"/u/{{id}}\"\nmethod = \"POST\"\n{params}"),
                "curl -i -X POST 'http://localhost:8080/u/7?q=a%20b' \\\n  -H 'X-T: my-X-T'",
            ),
            (
                "path = \"=/h\"\nmethod = \"HEAD\"".to_string(),
                "curl -I 'http://localhost:8080/h'",
            ),
            (
                "path = \"=/it's\"".to_string(),
                "curl -i 'http://localhost:8080/it'\\''s'",
            ),
        ];
        for (api, want) in cases {
            let cfg = one_api(&api, "");
            let s = &cfg.services[0];
            assert_eq!(curl(&cfg, s, &s.apis[0]), want, "{api}");
        }
    }

    #[test]
    fn curl_key_pair_signs_first() {
        let cfg = one_api("path = \"=/s\"\nmethod = \"POST\"\nauth = \"key_pair\"", "");
        let s = &cfg.services[0];
        assert_eq!(
            curl(&cfg, s, &s.apis[0]),
            r#"# Set SECRET_ID and SECRET_KEY to your key pair's secret_id and secret_key first.
XDATE=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
SOURCE=my-app
SIG=$(printf 'x-date: %s\nsource: %s' "$XDATE" "$SOURCE" | openssl dgst -sha256 -hmac "$SECRET_KEY" -binary | openssl base64 -A)
curl -i -X POST 'http://localhost:8080/s' \
  -H "X-Date: $XDATE" \
  -H "Source: $SOURCE" \
  -H "Authorization: hmac id=\"$SECRET_ID\", algorithm=\"hmac-sha256\", headers=\"x-date source\", signature=\"$SIG\"""#
        );
    }

    /// The recipe signs exactly the headers its `headers="..."` names, in that order, sends
    /// each of them, and the howto names the same list.
    #[test]
    fn key_pair_recipe_signs_what_it_lists() {
        let (lines, headers) = key_pair_recipe();
        let sig = lines.iter().find(|l| l.starts_with("SIG=")).unwrap();
        let format = sig
            .strip_prefix("SIG=$(printf '")
            .and_then(|r| r.split_once('\''))
            .unwrap()
            .0;
        let signed: Vec<&str> = format
            .split("\\n")
            .map(|part| part.strip_suffix(": %s").unwrap())
            .collect();
        let auth = headers.last().unwrap();
        let listed = auth
            .split_once(r#"headers=\""#)
            .and_then(|(_, r)| r.split_once('\\'))
            .unwrap()
            .0;
        assert_eq!(listed.split(' ').collect::<Vec<_>>(), signed);
        assert_eq!(signed, ["x-date", "source"], "SPEC §4's example");
        for (name, header, var, _) in KEY_PAIR_SIGNED {
            assert!(lines.iter().any(|l| l.starts_with(&format!("{var}="))));
            assert!(sig.contains(&format!("\"${var}\"")), "{sig}");
            assert_eq!(header.to_ascii_lowercase(), name);
            assert!(headers.contains(&format!("\"{header}: ${var}\"")));
        }
        let howto = key_pair_howto().join("\n");
        assert!(howto.contains(&format!(r#"headers="{listed}""#)), "{howto}");
    }

    #[test]
    fn curl_regex_path_is_a_template() {
        let cfg = one_api("path = '~ ^/files/.*\\.txt$'", "");
        let s = &cfg.services[0];
        assert_eq!(
            curl(&cfg, s, &s.apis[0]),
            "# Template: replace <rest> with the rest of a path that the regex ~ ^/files/.*\\.txt$ matches.\ncurl -i 'http://localhost:8080/files/<rest>'"
        );
    }

    #[test]
    fn curl_any_api_per_method() {
        let cfg = one_api("path = \"/p\"\nmethod = \"ANY\"", "");
        let s = &cfg.services[0];
        let api = &s.apis[0];
        assert_eq!(curl(&cfg, s, api), "curl -i 'http://localhost:8080/p'");
        assert_eq!(
            curl_as(&cfg, s, api, "DELETE"),
            "curl -i -X DELETE 'http://localhost:8080/p'"
        );
        assert_eq!(
            curl_as(&cfg, s, api, "HEAD"),
            "curl -I 'http://localhost:8080/p'"
        );
    }

    #[test]
    fn curl_oauth2_token_places() {
        let jwk = include_str!("../../conf/demo/jwt-demo.jwk.json").trim();
        for (place, want) in [
            ("header", "-H 'Authorization: Bearer <JWT>'"),
            ("cookie", "-b 'tok=<JWT>'"),
            ("query", "'http://localhost:8080/me?tok=<JWT>'"),
        ] {
            let cfg = one_api(
                "path = \"=/me\"\nauth = \"oauth2\"",
                &format!(
                    "[services.oauth2]\npublic_key = '{jwk}'\ntoken_location = \"{place}\"\ntoken_name = \"tok\"\n"
                ),
            );
            let s = &cfg.services[0];
            let c = curl(&cfg, s, &s.apis[0]);
            assert!(c.contains(want), "{place}: {c}");
            assert!(
                c.starts_with("# Template: replace <JWT> with a JWT from the service's identity provider (RS256, "),
                "{place}: {c}"
            );
            let o = s.oauth2.as_ref().unwrap();
            assert_eq!(jwt_algorithms(o)[0], "RS256");
        }
    }

    #[test]
    fn curl_websocket_handshake() {
        let cfg = config(
            "[server]\nlisten_http = [\"0.0.0.0:8080\"]\nadmin_listen = \"off\"\n[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:9\"\n[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"chat\"\nfrontend_type = \"ws\"\npath = \"=/chat\"\n[services.apis.backend]\nupstream = \"u\"\npath = \"/ws\"\n",
        );
        let s = &cfg.services[0];
        let c = curl(&cfg, s, &s.apis[0]);
        assert_eq!(
            c,
            "curl -i -N --http1.1 'http://localhost:8080/chat' \\\n  -H 'Connection: Upgrade' \\\n  -H 'Upgrade: websocket' \\\n  -H 'Sec-WebSocket-Version: 13' \\\n  -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='"
        );
    }
}
