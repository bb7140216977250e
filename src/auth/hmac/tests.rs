use super::*;
use std::time::UNIX_EPOCH;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The same path as [`verify`]: a [`Mac`] fed the message, then `matches`.
fn mac_matches(alg: Algorithm, key: &[u8], msg: &[u8], expected: &[u8]) -> bool {
    let mut mac = Mac::new(alg, key);
    mac.update(msg);
    mac.matches(expected)
}

/// RFC 4231 §4 (HMAC-SHA-256/384/512, cases 1-4, 6, 7) and RFC 2202 §3 (HMAC-SHA-1).
#[rustfmt::skip]
#[test]
fn rfc_test_vectors() {
    use Algorithm::{Sha1, Sha256, Sha384, Sha512};
    let case6: &[u8] = b"Test Using Larger Than Block-Size Key - Hash Key First";
    let case7: &[u8] = b"This is a test using a larger than block-size key and a larger than \
        block-size data. The key needs to be hashed before being used by the HMAC algorithm.";
    let rfc2202_7: &[u8] = b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data";
    let jefe: &[u8] = b"what do ya want for nothing?";
    let k01: Vec<u8> = (0x01..=0x19).collect();
    let (k0b, kaa, kaa80, kaa131) = ([0x0b; 20], [0xaa; 20], [0xaa; 80], [0xaa; 131]);
    let (dd, cd) = ([0xdd; 50], [0xcd; 50]);
    // (RFC and case, algorithm, key, data, expected hex)
    type Vector<'a> = (&'a str, Algorithm, &'a [u8], &'a [u8], &'a str);
    let cases: &[Vector] = &[
        ("4231/1", Sha256, &k0b, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ("4231/1", Sha384, &k0b, b"Hi There", "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"),
        ("4231/1", Sha512, &k0b, b"Hi There", "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"),
        ("4231/2", Sha256, b"Jefe", jefe, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("4231/2", Sha384, b"Jefe", jefe, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"),
        ("4231/2", Sha512, b"Jefe", jefe, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"),
        ("4231/3", Sha256, &kaa, &dd, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ("4231/3", Sha384, &kaa, &dd, "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27"),
        ("4231/3", Sha512, &kaa, &dd, "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"),
        ("4231/4", Sha256, &k01, &cd, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        ("4231/4", Sha384, &k01, &cd, "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb"),
        ("4231/4", Sha512, &k01, &cd, "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"),
        ("4231/6", Sha256, &kaa131, case6, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ("4231/6", Sha384, &kaa131, case6, "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952"),
        ("4231/6", Sha512, &kaa131, case6, "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"),
        ("4231/7", Sha256, &kaa131, case7, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
        ("4231/7", Sha384, &kaa131, case7, "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e"),
        ("4231/7", Sha512, &kaa131, case7, "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58"),
        ("2202/1", Sha1, &k0b, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
        ("2202/2", Sha1, b"Jefe", jefe, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        ("2202/3", Sha1, &kaa, &dd, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
        ("2202/6", Sha1, &kaa80, case6, "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
        ("2202/7", Sha1, &kaa80, rfc2202_7, "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"),
    ];
    for &(what, alg, key, data, want) in cases {
        let want = hex(want);
        assert!(mac_matches(alg, key, data, &want), "{what} {alg:?}");
        let mut flipped = want.clone();
        flipped[want.len() - 1] ^= 1;
        assert!(!mac_matches(alg, key, data, &flipped), "{what} {alg:?} flipped bit");
        assert!(!mac_matches(alg, key, data, &want[..want.len() - 1]), "{what} {alg:?} short");
    }
}

#[test]
fn lowercase_update_matches_lowercased_input() {
    let name = "X-Some-Very-Long-Header-Name-".repeat(7);
    let msg = format!("{}: v", name.to_ascii_lowercase());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), msg.as_bytes());
    let mut mac = Mac::new(Algorithm::Sha256, b"k");
    mac.update_lowercase(name.as_bytes());
    mac.update(b": v");
    assert!(mac.matches(tag.as_ref()));
}

const ID: &str = "AKIDexample";
const KEY: &[u8] = b"secretexample123";
const LINE: &[u8] = b"GET /v1/orders?x=1 HTTP/1.1";
/// 784 887 151 s after the epoch (`date -u -d '…' +%s`); a Tuesday.
const SIGNED_AT: &str = "Tue, 15 Nov 1994 08:12:31 GMT";

fn signed_at() -> SystemTime {
    SystemTime::from(HttpDate::from_str(SIGNED_AT).unwrap())
}

/// `signed_at() + secs` (negative: before).
fn at(secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs < 0 {
        signed_at() - d
    } else {
        signed_at() + d
    }
}

struct FakeRequest {
    line: &'static [u8],
    headers: Vec<(&'static str, &'static str)>,
}

impl SignedRequest for FakeRequest {
    fn header_values(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }

    fn request_line(&self) -> &[u8] {
        self.line
    }
}

/// The request every fixture signs, before the case's edits.
fn request() -> FakeRequest {
    FakeRequest {
        line: LINE,
        headers: vec![
            ("Host", "api.example.com"),
            ("X-Date", SIGNED_AT),
            ("Source", "ringway-test"),
            ("Accept", "text/plain"),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ],
    }
}

/// Replaces every value of `name` with one `value`.
fn set(req: &mut FakeRequest, name: &'static str, value: &'static str) {
    req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    req.headers.push((name, value));
}

fn auth(alg: &str, headers: &str, signature: &str) -> String {
    format!(r#"hmac id="{ID}", algorithm="{alg}", headers="{headers}", signature="{signature}""#)
}

// Signatures made with the openssl CLI, key `secretexample123`; SHA256_XS for example:
//   printf 'x-date: Tue, 15 Nov 1994 08:12:31 GMT\nsource: ringway-test' \
//     | openssl dgst -sha256 -hmac secretexample123 -binary | base64 -w0
// Each constant's comment gives the printf argument and the digest option. SHA256_XS was
// also checked with Python's `hmac` module.

/// `x-date: Tue, 15 Nov 1994 08:12:31 GMT\nsource: ringway-test`, -sha1
const SHA1_XS: &str = "w3ICj0r37SE5cCkE/h+hr6dqPzU=";
/// the same string, -sha256
const SHA256_XS: &str = "Iec7vkD7zJonB5Z94306mkmW2wdxD5nV4ywKb4gOiGg=";
/// the same string, -sha384
const SHA384_XS: &str = "T+8pPvaXf/V/2onsybTmO0+P7CP071EbhivmK8A+YejKRV0G0EAGVXn7DfhbWJr5";
/// the same string, -sha512
const SHA512_XS: &str =
    "KohVHjNJWGNBMqYqrCQltk5+GWYDVi+qXUtoHINQu22Pp26XsL1DymP+AXyJX/QM0XekuI1HX123h6ieenAuSg==";
/// `x-date: Tue, 15 Nov 1994 08:12:31 GMT\nsource: ringway-test\ncontent-type: application/json`, -sha1
const SHA1_XSC: &str = "SnnkuDmwBGVvjuYMuaSxVwnjCnQ=";
/// `source: ringway-test\nx-date: Tue, 15 Nov 1994 08:12:31 GMT`, -sha256
const SHA256_SX: &str = "SalsqVA6hvQTyTY0/uejNBl7w0iQRTbGISV6BPzU5tI=";
/// `GET /v1/orders?x=1 HTTP/1.1\nx-date: Tue, 15 Nov 1994 08:12:31 GMT`, -sha256
const SHA256_LINE_X: &str = "aSvnd8qXptEBUPUXufAC3ry84qjjiHwnIiP9e3hRMrQ=";
/// `date: Tue, 15 Nov 1994 08:12:31 GMT\nsource: ringway-test`, -sha256
const SHA256_DS: &str = "jP8yb64mhkeawDnLEp9LNbNDUsrjITt8YV5kk3VLolQ=";
/// `x-date: Tue, 15 Nov 1994 08:12:31 GMT\naccept: text/plain, application/json`, -sha256
const SHA256_XA: &str = "PU7lTbKBlZ/V5q5xHrFQIqpbPES884p7TL1n4RfTwM0=";
/// `date: Sat, 01 Jan 2000 00:00:00 GMT\nx-date: Tue, 15 Nov 1994 08:12:31 GMT`, -sha256
const SHA256_DX: &str = "Mn2+dlvSMBEYAQcaml7dzeI6xsqPWWp+KNIAQKCQN3M=";
/// `x-date: Tuesday, 15-Nov-94 08:12:31 GMT\nsource: ringway-test`, -sha256
const SHA256_RFC850: &str = "RGCut6sp4YAU9J77LHm1w0A5Nvi9242aOeGtjlsgWoQ=";
/// `x-date: Tue Nov 15 08:12:31 1994\nsource: ringway-test`, -sha256
const SHA256_ASCTIME: &str = "WCTv5HSQpTn5T3nPuAbMZCxKrHnPlwRAGLPjbOKIRno=";
/// `x-date: Tue, 15 Nov 1994 08:12:31 GMT\nsource: ` (empty value), -sha256
const SHA256_X_EMPTY: &str = "eIexGVRd9eMdBDaGA6UHXR/ScYtmarO//upTHKLe/zY=";

struct Case {
    what: &'static str,
    authorization: String,
    edit: fn(&mut FakeRequest),
    key: &'static [u8],
    now: SystemTime,
    want: Result<(), HmacError>,
}

/// A case on the unedited request, with the right key, at the signing time.
fn ok(what: &'static str, authorization: String) -> Case {
    Case {
        what,
        authorization,
        edit: |_| {},
        key: KEY,
        now: signed_at(),
        want: Ok(()),
    }
}

fn refused(what: &'static str, authorization: String, want: HmacError) -> Case {
    Case {
        want: Err(want),
        ..ok(what, authorization)
    }
}

#[rustfmt::skip]
#[test]
fn whole_requests() {
    use HmacError::{BadDate, DateNotSigned, Malformed, SignatureMismatch as Mismatch, SignedHeaderMissing, TimeSkew};
    let xs = "x-date source";
    let s256 = |headers: &str, sig: &str| auth("hmac-sha256", headers, sig);
    let cases = [
        ok("sha1", auth("hmac-sha1", xs, SHA1_XS)),
        ok("sha256", s256(xs, SHA256_XS)),
        ok("sha384", auth("hmac-sha384", xs, SHA384_XS)),
        ok("sha512", auth("hmac-sha512", xs, SHA512_XS)),
        ok("sha1, three headers", auth("hmac-sha1", "x-date source content-type", SHA1_XSC)),
        ok("another order", s256("source x-date", SHA256_SX)),
        ok("names in any case, several spaces", s256("  X-Date   SOURCE ", SHA256_XS)),
        ok("algorithm name in any case", auth("HMAC-SHA256", xs, SHA256_XS)),
        ok("request-line signed", s256("request-line x-date", SHA256_LINE_X)),
        ok("several values joined", s256("x-date accept", SHA256_XA)),
        ok("params in another order, unknown one ignored",
           format!("HMAC signature=\"{SHA256_XS}\" , realm=\"x\",headers = \"{xs}\",algorithm=\"hmac-sha256\",\tid=\"{ID}\"")),
        Case { edit: |r| set(r, "Date", SIGNED_AT), ..ok("date instead of x-date", s256("date source", SHA256_DS)) },
        Case { edit: |r| set(r, "Source", ""), ..ok("empty value counts as present", s256(xs, SHA256_X_EMPTY)) },
        Case { edit: |r| set(r, "Date", "Sat, 01 Jan 2000 00:00:00 GMT"), ..ok("x-date decides over date", s256("date x-date", SHA256_DX)) },
        Case {
            edit: |r| { set(r, "Date", SIGNED_AT); set(r, "X-Date", "Sat, 01 Jan 2000 00:00:00 GMT") },
            ..refused("x-date decides, even when date would pass", s256("date x-date", SHA256_DX), TimeSkew)
        },
        Case { now: at(899), ..ok("899 s late", s256(xs, SHA256_XS)) },
        Case { now: at(900), ..ok("900 s late", s256(xs, SHA256_XS)) },
        Case { now: at(901), ..refused("901 s late", s256(xs, SHA256_XS), TimeSkew) },
        Case { now: at(900) + Duration::from_millis(1), ..refused("900.001 s late", s256(xs, SHA256_XS), TimeSkew) },
        Case { now: at(-899), ..ok("899 s early", s256(xs, SHA256_XS)) },
        Case { now: at(-900), ..ok("900 s early", s256(xs, SHA256_XS)) },
        Case { now: at(-901), ..refused("901 s early", s256(xs, SHA256_XS), TimeSkew) },
        Case { key: b"secretexample124", ..refused("wrong key", s256(xs, SHA256_XS), Mismatch) },
        Case { edit: |r| set(r, "Source", "ringway-tesT"), ..refused("tampered value", s256(xs, SHA256_XS), Mismatch) },
        Case { edit: |r| r.headers.push(("Source", "x")), ..refused("extra value of a signed header", s256(xs, SHA256_XS), Mismatch) },
        Case {
            edit: |r| r.line = b"GET /v1/orders?x=2 HTTP/1.1",
            ..refused("tampered request line", s256("request-line x-date", SHA256_LINE_X), Mismatch)
        },
        refused("another algorithm's signature", auth("hmac-sha384", xs, SHA256_XS), Mismatch),
        refused("list differs from the signed one", s256("x-date host", SHA256_XS), Mismatch),
        refused("longer than any signature", auth("hmac-sha512", xs, &format!("{SHA512_XS}AAAA")), Mismatch),
        Case { edit: |r| r.headers.retain(|h| h.0 != "Source"), ..refused("signed header absent", s256(xs, SHA256_XS), SignedHeaderMissing("source".into())) },
        Case { edit: |r| r.headers.retain(|h| h.0 != "X-Date"), ..refused("x-date absent", s256("X-Date source", SHA256_XS), SignedHeaderMissing("X-Date".into())) },
        Case { edit: |r| r.headers.push(("X-Date", SIGNED_AT)), ..refused("two x-date values", s256(xs, SHA256_XS), BadDate) },
        refused("date not signed", s256("source host", SHA256_XS), DateNotSigned),
        Case { edit: |r| set(r, "X-Date", "Tuesday, 15-Nov-94 08:12:31 GMT"), ..refused("RFC 850 date", s256(xs, SHA256_RFC850), BadDate) },
        Case { edit: |r| set(r, "X-Date", "Tue Nov 15 08:12:31 1994"), ..refused("asctime date", s256(xs, SHA256_ASCTIME), BadDate) },
        Case { edit: |r| set(r, "X-Date", "785146351"), ..refused("epoch seconds", s256(xs, SHA256_XS), BadDate) },
        refused("signature not base64", s256(xs, "Iec7vkD7zJonB5Z9!306mkmW2wdxD5nV4ywKb4gOiGg="), Malformed("signature is not base64")),
        refused("signature unpadded", s256(xs, SHA256_XS.trim_end_matches('=')), Malformed("signature is not base64")),
        refused("signature in the url-safe alphabet", auth("hmac-sha1", xs, &SHA1_XS.replace('/', "_").replace('+', "-")), Malformed("signature is not base64")),
    ];
    for case in cases {
        let mut req = request();
        (case.edit)(&mut req);
        let got = parse_authorization(case.authorization.as_bytes())
            .and_then(|creds| verify(&creds, &SecretKey::new(case.key), &req, case.now));
        assert_eq!(got, case.want, "{}: {}", case.what, case.authorization);
    }
}

#[test]
fn parse_accepts() {
    let want = Credentials {
        id: ID,
        algorithm: Algorithm::Sha256,
        headers: "x-date source",
        signature: "c2ln",
    };
    let cases = [
        r#"hmac id="AKIDexample", algorithm="hmac-sha256", headers="x-date source", signature="c2ln""#,
        r#"Hmac signature="c2ln",headers="x-date source",algorithm="hmac-sha256",id="AKIDexample""#,
        "HMAC\tid = \"AKIDexample\" ,\talgorithm= \"hmac-sha256\",  headers =\"x-date source\" , signature=\"c2ln\"  ",
        r#"hmac ID="AKIDexample", Algorithm="hmac-sha256", HEADERS="x-date source", Signature="c2ln""#,
        r#"hmac realm="", id="AKIDexample", x="1", x="2", algorithm="hmac-sha256", headers="x-date source", signature="c2ln", nonce="abc""#,
    ];
    for value in cases {
        assert_eq!(parse_authorization(value.as_bytes()), Ok(want), "{value}");
    }
}

#[rustfmt::skip]
#[test]
fn parse_refuses() {
    use HmacError::{Malformed as M, TooManySignedHeaders, UnsupportedAlgorithm};
    let names = |n: usize| (0..n).map(|i| format!("h{i}")).collect::<Vec<_>>().join(" ");
    let good = auth("hmac-sha256", "x-date", "c2ln");
    let edit = |from: &str, to: &str| good.replacen(from, to, 1);
    let cases: Vec<(String, HmacError)> = vec![
        (String::new(), M("scheme is not hmac")),
        ("hmac".into(), M("scheme is not hmac")),
        ("hmac ".into(), M("no parameters")),
        ("hmacid=\"x\"".into(), M("scheme is not hmac")),
        ("Bearer abc".into(), M("scheme is not hmac")),
        (format!(" {good}"), M("scheme is not hmac")),
        (edit("hmac id", "hmac-x id"), M("scheme is not hmac")),
        (edit("\"AKIDexample\"", "AKIDexample"), M("parameter value is not quoted")),
        (edit("\"hmac-sha256\"", "'hmac-sha256'"), M("parameter value is not quoted")),
        (edit("\"c2ln\"", "\"c2ln"), M("unterminated quoted value")),
        (edit("AKIDexample", "AKID\\\"example"), M("escapes are not allowed in values")),
        (edit("AKIDexample", "AKID\\example"), M("escapes are not allowed in values")),
        (edit("AKIDexample", "AKID\texample"), M("value has a byte outside visible ASCII")),
        (edit("AKIDexample", "AKID\u{e9}"), M("value has a byte outside visible ASCII")),
        (edit("AKIDexample", "AKID\0"), M("value has a byte outside visible ASCII")),
        (edit("AKIDexample\"", "AKID\"example\""), M("expected `,` between parameters")),
        (edit(", algorithm", " algorithm"), M("expected `,` between parameters")),
        (format!("{good},"), M("expected a parameter name")),
        (format!("{good}, ,x=\"1\""), M("expected a parameter name")),
        (edit("id=", "id:"), M("expected `=` after a parameter name")),
        (edit("id=", "i d="), M("expected `=` after a parameter name")),
        (format!("{good}, id=\"other\""), M("duplicate id")),
        (format!("{good}, Algorithm=\"hmac-sha1\""), M("duplicate algorithm")),
        (format!("{good}, headers=\"x-date\""), M("duplicate headers")),
        (format!("{good}, signature=\"c2ln\""), M("duplicate signature")),
        (r#"hmac algorithm="hmac-sha256", headers="x-date", signature="c2ln""#.into(), M("missing id")),
        (r#"hmac id="a", headers="x-date", signature="c2ln""#.into(), M("missing algorithm")),
        (r#"hmac id="a", algorithm="hmac-sha256", signature="c2ln""#.into(), M("missing headers")),
        (r#"hmac id="a", algorithm="hmac-sha256", headers="x-date""#.into(), M("missing signature")),
        (edit("AKIDexample", ""), M("empty id")),
        (auth("", "x-date", "c2ln"), M("empty algorithm")),
        (auth("hmac-sha256", "", "c2ln"), M("empty headers")),
        (auth("hmac-sha256", "x-date", ""), M("empty signature")),
        (auth("hmac-md5", "x-date", "c2ln"), UnsupportedAlgorithm("hmac-md5".into())),
        (auth("sha256", "x-date", "c2ln"), UnsupportedAlgorithm("sha256".into())),
        (auth(&"x".repeat(100), "x-date", "c2ln"), UnsupportedAlgorithm("x".repeat(MAX_ECHO_CHARS))),
        (auth("hmac-sha256", "(request-target) x-date", "c2ln"), M("signed header name is not a token")),
        (auth("hmac-sha256", "x-date x:y", "c2ln"), M("signed header name is not a token")),
        (auth("hmac-sha256", &names(MAX_SIGNED_HEADERS + 1), "c2ln"), TooManySignedHeaders),
    ];
    for (value, want) in cases {
        assert_eq!(parse_authorization(value.as_bytes()), Err(want), "{value:?}");
    }
    assert!(parse_authorization(auth("hmac-sha256", &names(MAX_SIGNED_HEADERS), "c2ln").as_bytes()).is_ok());
    assert_eq!(parse_authorization(b"hmac id=\"\xff\""), Err(M("value has a byte outside visible ASCII")));
}

/// [`Credentials`] has public fields, so [`verify`] does not rely on [`parse_authorization`].
#[test]
fn verify_alone_enforces_the_list_limit() {
    let many = "x-date ".repeat(MAX_SIGNED_HEADERS + 1);
    let creds = Credentials {
        id: ID,
        algorithm: Algorithm::Sha256,
        headers: &many,
        signature: SHA256_XS,
    };
    let got = verify(&creds, &SecretKey::new(KEY), &request(), signed_at());
    assert_eq!(got, Err(HmacError::TooManySignedHeaders));
    let creds = Credentials {
        headers: "x-date sourc\u{e9}",
        ..creds
    };
    let got = verify(&creds, &SecretKey::new(KEY), &request(), signed_at());
    let want = HmacError::SignedHeaderMissing("sourc\u{e9}".into());
    assert_eq!(got, Err(want));
}

#[test]
fn imf_fixdate_only() {
    let epoch = signed_at().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(epoch.as_secs(), 784_887_151);
    let good = [
        SIGNED_AT,
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
    ];
    for date in good {
        assert!(parse_imf_fixdate(date.as_bytes()).is_some(), "{date}");
    }
    let bad = [
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "sun, 06 nov 1994 08:49:37 gmt",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun,\t06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Mon, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 G\u{e9}",
        "",
    ];
    for date in bad {
        assert_eq!(parse_imf_fixdate(date.as_bytes()), None, "{date:?}");
    }
}

#[rustfmt::skip]
#[test]
fn messages() {
    let cases = [
        (HmacError::Missing, "HMAC authorization header is missing"),
        (HmacError::Malformed("missing id"), "HMAC authorization header is malformed: missing id"),
        (HmacError::UnsupportedAlgorithm("hmac-md5".into()), "HMAC algorithm is not supported: hmac-md5"),
        (HmacError::TooManySignedHeaders, "HMAC signature covers more than 32 headers"),
        (HmacError::IdNotFound, "HMAC id not found"),
        (HmacError::IdNotAllowed, "HMAC id is not allowed to call this service"),
        (HmacError::DateNotSigned, "HMAC signature must cover the x-date or date header"),
        (HmacError::BadDate, "HMAC date is not an IMF-fixdate"),
        (HmacError::TimeSkew, "Time skew exceeded"),
        (HmacError::SignedHeaderMissing("source".into()), "HMAC signed header source is missing from the request"),
        (HmacError::SignatureMismatch, "HMAC signature does not match"),
    ];
    for (err, want) in cases {
        assert_eq!(err.message(), want);
    }
}

#[test]
fn algorithm_names_round_trip() {
    for alg in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
    }
    assert_eq!(Algorithm::from_name("hmac-sha224"), None);
    assert_eq!(MAX_SIGNATURE_LEN, 88);
}
