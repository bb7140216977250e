//! Tokens here come from other implementations: the RFC 7515 / RFC 7520 published
//! examples, and `tests/fixtures/jwt/fixtures.json`, made by
//! `tests/fixtures/jwt/make.py` with pyca/cryptography (OpenSSL).

use std::sync::LazyLock;

use super::*;

const FIXTURES: &str = include_str!("../../../tests/fixtures/jwt/fixtures.json");

static FX: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(FIXTURES).expect("fixtures.json is JSON"));

fn tok(name: &str) -> &'static str {
    FX["tokens"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no fixture token {name}"))
}

fn fx_u64(name: &str) -> u64 {
    FX[name].as_u64().expect("fixture time")
}

fn fx_jwk(name: &str) -> serde_json::Map<String, Value> {
    FX["keys"][name]
        .as_object()
        .unwrap_or_else(|| panic!("no fixture key {name}"))
        .clone()
}

fn fx_key(name: &str) -> JwtKey {
    JwtKey::from_jwk(&fx_jwk(name)).unwrap_or_else(|e| panic!("fixture key {name}: {e}"))
}

fn jwk(text: &str) -> serde_json::Map<String, Value> {
    serde_json::from_str(text).expect("test JWK is a JSON object")
}

fn key_of(text: &str) -> JwtKey {
    JwtKey::from_jwk(&jwk(text)).expect("test JWK compiles")
}

/// The expected outcome of one `verify` call.
#[derive(Debug)]
enum Want {
    Ok(Option<&'static str>),
    Err(JwtError),
}

fn check(case: &str, got: &Result<Verified, JwtError>, want: &Want) {
    match (got, want) {
        (Ok(v), Want::Ok(sub)) => assert_eq!(v.sub.as_deref(), *sub, "{case}: sub"),
        (Err(e), Want::Err(w)) => assert_eq!(e, w, "{case}"),
        _ => panic!("{case}: got {got:?}, want {want:?}"),
    }
}

// RFC 7515 Appendix A.2 (RS256): the JWK of Figure A.2.1 less its private members, and the
// compact serialization of A.2.1. The payload's exp is 1300819380.
const RFC7515_A2_JWK: &str = r#"{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}"#;
const RFC7515_A2_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
// RFC 7515 Appendix A.3 (ES256): the P-256 JWK of A.3.1 less `d`, and the token of A.3.1.
const RFC7515_A3_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
const RFC7515_A3_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const RFC7515_EXP: u64 = 1_300_819_380;
// RFC 7520 §3.3 Figure 3 ("bilbo.baggins@hobbiton.example"), public members only, and the
// compact results of §4.1 (RS256, Figure 20) and §4.2 (PS384, Figure 27). Their payload
// is prose (Figure 7), not a claims object: a correct verifier checks the signature and
// then refuses the payload, so `Payload` (not `Signature`) proves the signature verified.
const RFC7520_FIG3_JWK: &str = r#"{"kty":"RSA","kid":"bilbo.baggins@hobbiton.example","use":"sig","n":"n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw","e":"AQAB"}"#;
const RFC7520_PAYLOAD: &str = "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
const RFC7520_4_1_HEADER: &str =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
const RFC7520_4_1_SIG: &str = "MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg";
const RFC7520_4_2_HEADER: &str =
    "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
const RFC7520_4_2_SIG: &str = "cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw";

fn compact(header: &str, payload: &str, sig: &str) -> String {
    format!("{header}.{payload}.{sig}")
}

/// The last character of a base64url part swapped for another that keeps it canonical.
fn flip_last(part: &str) -> String {
    let mut s = part.to_string();
    let last = s.pop().expect("non-empty part");
    s.push(if last == 'A' { 'Q' } else { 'A' });
    s
}

#[test]
fn rfc_vectors() {
    let a2 = key_of(RFC7515_A2_JWK);
    let a3 = key_of(RFC7515_A3_JWK);
    let bilbo = key_of(RFC7520_FIG3_JWK);
    let t41 = compact(RFC7520_4_1_HEADER, RFC7520_PAYLOAD, RFC7520_4_1_SIG);
    let t42 = compact(RFC7520_4_2_HEADER, RFC7520_PAYLOAD, RFC7520_4_2_SIG);
    let t41_bad = compact(
        RFC7520_4_1_HEADER,
        RFC7520_PAYLOAD,
        &flip_last(RFC7520_4_1_SIG),
    );
    let (a2_h, a2_p, a2_s) = {
        let mut it = RFC7515_A2_TOKEN.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let a2_bad = compact(a2_h, a2_p, &flip_last(a2_s));
    let cases: &[(&str, &str, &JwtKey, u64, Want)] = &[
        (
            "A.2 at exp",
            RFC7515_A2_TOKEN,
            &a2,
            RFC7515_EXP,
            Want::Ok(None),
        ),
        ("A.2 at 0", RFC7515_A2_TOKEN, &a2, 0, Want::Ok(None)),
        (
            "A.2 at exp+60",
            RFC7515_A2_TOKEN,
            &a2,
            RFC7515_EXP + 60,
            Want::Ok(None),
        ),
        (
            "A.2 at exp+61",
            RFC7515_A2_TOKEN,
            &a2,
            RFC7515_EXP + 61,
            Want::Err(JwtError::Expired),
        ),
        (
            "A.2 tampered sig",
            &a2_bad,
            &a2,
            RFC7515_EXP,
            Want::Err(JwtError::Signature),
        ),
        (
            "A.2 vs EC key",
            RFC7515_A2_TOKEN,
            &a3,
            RFC7515_EXP,
            Want::Err(JwtError::AlgKeyMismatch),
        ),
        (
            "A.2 vs other RSA key",
            RFC7515_A2_TOKEN,
            &bilbo,
            RFC7515_EXP,
            Want::Err(JwtError::Signature),
        ),
        (
            "A.3 at exp",
            RFC7515_A3_TOKEN,
            &a3,
            RFC7515_EXP,
            Want::Ok(None),
        ),
        (
            "A.3 at exp+60",
            RFC7515_A3_TOKEN,
            &a3,
            RFC7515_EXP + 60,
            Want::Ok(None),
        ),
        (
            "A.3 at exp+61",
            RFC7515_A3_TOKEN,
            &a3,
            RFC7515_EXP + 61,
            Want::Err(JwtError::Expired),
        ),
        (
            "A.3 vs RSA key",
            RFC7515_A3_TOKEN,
            &a2,
            RFC7515_EXP,
            Want::Err(JwtError::AlgKeyMismatch),
        ),
        (
            "7520 4.1 RS256",
            &t41,
            &bilbo,
            0,
            Want::Err(JwtError::Payload),
        ),
        (
            "7520 4.1 tampered",
            &t41_bad,
            &bilbo,
            0,
            Want::Err(JwtError::Signature),
        ),
        (
            "7520 4.2 PS384",
            &t42,
            &bilbo,
            0,
            Want::Err(JwtError::Payload),
        ),
        (
            "7520 4.2 vs A.2 key",
            &t42,
            &a2,
            0,
            Want::Err(JwtError::Signature),
        ),
    ];
    for (case, token, key, now, want) in cases {
        check(case, &verify(token.as_bytes(), key, *now), want);
    }
    let v = verify(RFC7515_A2_TOKEN.as_bytes(), &a2, RFC7515_EXP).unwrap();
    assert_eq!(
        v,
        Verified {
            sub: None,
            exp: Some(RFC7515_EXP),
            nbf: None
        }
    );
}

#[test]
fn generated_tokens() {
    let keys: HashMap<&str, JwtKey> = ["rsa", "rsa_other", "p256", "p256_other", "p384"]
        .into_iter()
        .map(|k| (k, fx_key(k)))
        .collect();
    let now = fx_u64("now");
    let exp_edge = fx_u64("exp_edge");
    let nbf_edge = fx_u64("nbf_edge");
    use JwtError as E;
    let cases: &[(&str, &str, u64, Want)] = &[
        // One per algorithm.
        ("rs256", "rsa", now, Want::Ok(Some("alice"))),
        ("rs384", "rsa", now, Want::Ok(Some("alice"))),
        ("rs512", "rsa", now, Want::Ok(Some("alice"))),
        ("ps256", "rsa", now, Want::Ok(Some("alice"))),
        ("ps384", "rsa", now, Want::Ok(Some("alice"))),
        ("ps512", "rsa", now, Want::Ok(Some("alice"))),
        ("es256", "p256", now, Want::Ok(Some("alice"))),
        ("es384", "p384", now, Want::Ok(Some("alice"))),
        // The standard claims' own window (nbf 2000-01-01, exp 2100-01-01).
        (
            "rs256",
            "rsa",
            fx_u64("far_past") - 60,
            Want::Ok(Some("alice")),
        ),
        (
            "rs256",
            "rsa",
            fx_u64("far_past") - 61,
            Want::Err(E::NotYetValid),
        ),
        (
            "es256",
            "p256",
            fx_u64("far_future") + 60,
            Want::Ok(Some("alice")),
        ),
        (
            "es256",
            "p256",
            fx_u64("far_future") + 61,
            Want::Err(E::Expired),
        ),
        // Header.
        ("rs256_typ_kid", "rsa", now, Want::Ok(Some("alice"))),
        ("rs256_crit", "rsa", now, Want::Err(E::Crit)),
        (
            "rs256_alg_lowercase",
            "rsa",
            now,
            Want::Err(E::UnsupportedAlg),
        ),
        ("rs256_alg_number", "rsa", now, Want::Err(E::Header)),
        ("rs256_no_alg", "rsa", now, Want::Err(E::Header)),
        ("rs256_header_array", "rsa", now, Want::Err(E::Header)),
        ("rs256_header_dup_alg", "rsa", now, Want::Err(E::Header)),
        ("rs256_header_not_json", "rsa", now, Want::Err(E::Header)),
        ("rs256_header_bad_utf8", "rsa", now, Want::Err(E::Header)),
        // alg none and HMAC, whatever the key.
        ("none_empty_sig", "rsa", now, Want::Err(E::UnsupportedAlg)),
        ("none_empty_sig", "p256", now, Want::Err(E::UnsupportedAlg)),
        ("none_with_sig", "rsa", now, Want::Err(E::UnsupportedAlg)),
        ("none_uppercase", "rsa", now, Want::Err(E::UnsupportedAlg)),
        ("hs256_n", "rsa", now, Want::Err(E::UnsupportedAlg)),
        ("hs256_pem", "rsa", now, Want::Err(E::UnsupportedAlg)),
        ("hs256_jwk", "rsa", now, Want::Err(E::UnsupportedAlg)),
        ("hs256_n", "p256", now, Want::Err(E::UnsupportedAlg)),
        // alg against the key's type and curve.
        ("rs256", "p256", now, Want::Err(E::AlgKeyMismatch)),
        ("ps256", "p384", now, Want::Err(E::AlgKeyMismatch)),
        ("es256", "rsa", now, Want::Err(E::AlgKeyMismatch)),
        ("es256", "p384", now, Want::Err(E::AlgKeyMismatch)),
        ("es384", "p256", now, Want::Err(E::AlgKeyMismatch)),
        // Forgery.
        ("rs256", "rsa_other", now, Want::Err(E::Signature)),
        ("rs256_other_key", "rsa", now, Want::Err(E::Signature)),
        ("es256", "p256_other", now, Want::Err(E::Signature)),
        ("es256_other_key", "p256", now, Want::Err(E::Signature)),
        (
            "rs256_tampered_payload",
            "rsa",
            now,
            Want::Err(E::Signature),
        ),
        (
            "rs256_header_ps256_sig",
            "rsa",
            now,
            Want::Err(E::Signature),
        ),
        (
            "ps256_header_rs256_sig",
            "rsa",
            now,
            Want::Err(E::Signature),
        ),
        ("es256_der_sig", "p256", now, Want::Err(E::Signature)),
        // Time edges: exp = now - 60 passes, now - 61 fails; nbf = now + 60 passes, now + 61 fails.
        ("rs256_exp_edge", "rsa", 0, Want::Ok(Some("edge"))),
        ("rs256_exp_edge", "rsa", exp_edge, Want::Ok(Some("edge"))),
        (
            "rs256_exp_edge",
            "rsa",
            exp_edge + 60,
            Want::Ok(Some("edge")),
        ),
        (
            "rs256_exp_edge",
            "rsa",
            exp_edge + 61,
            Want::Err(E::Expired),
        ),
        ("rs256_exp_edge", "rsa", u64::MAX, Want::Err(E::Expired)),
        ("rs256_nbf_edge", "rsa", 0, Want::Err(E::NotYetValid)),
        (
            "rs256_nbf_edge",
            "rsa",
            nbf_edge - 61,
            Want::Err(E::NotYetValid),
        ),
        (
            "rs256_nbf_edge",
            "rsa",
            nbf_edge - 60,
            Want::Ok(Some("edge")),
        ),
        ("rs256_nbf_edge", "rsa", nbf_edge, Want::Ok(Some("edge"))),
        ("rs256_nbf_edge", "rsa", u64::MAX, Want::Ok(Some("edge"))),
        // exp 1000000000.5 and nbf 2999999999.5: the same edges on the exact value.
        ("es256_exp_float", "p256", 1_000_000_060, Want::Ok(None)),
        (
            "es256_exp_float",
            "p256",
            1_000_000_061,
            Want::Err(E::Expired),
        ),
        ("es256_nbf_float", "p256", 2_999_999_940, Want::Ok(None)),
        (
            "es256_nbf_float",
            "p256",
            2_999_999_939,
            Want::Err(E::NotYetValid),
        ),
        // Claim types and shapes (all validly signed).
        ("rs256_no_claims", "rsa", now, Want::Ok(None)),
        ("rs256_sub_only", "rsa", now, Want::Ok(Some("bob"))),
        ("rs256_exp_string", "rsa", now, Want::Err(E::Claim("exp"))),
        ("rs256_exp_null", "rsa", now, Want::Err(E::Claim("exp"))),
        ("rs256_nbf_bool", "rsa", now, Want::Err(E::Claim("nbf"))),
        ("rs256_sub_number", "rsa", now, Want::Err(E::Claim("sub"))),
        ("rs256_sub_null", "rsa", now, Want::Err(E::Claim("sub"))),
        ("rs256_exp_negative", "rsa", 59, Want::Ok(None)),
        ("rs256_exp_negative", "rsa", 60, Want::Err(E::Expired)),
        ("rs256_exp_huge_float", "rsa", u64::MAX, Want::Ok(None)),
        ("rs256_exp_huge_int", "rsa", u64::MAX, Want::Ok(None)),
        ("rs256_exp_out_of_range", "rsa", now, Want::Err(E::Payload)),
        ("rs256_exp_duplicate", "rsa", now, Want::Err(E::Payload)),
        ("rs256_payload_array", "rsa", now, Want::Err(E::Payload)),
        ("rs256_payload_string", "rsa", now, Want::Err(E::Payload)),
        ("rs256_payload_not_json", "rsa", now, Want::Err(E::Payload)),
        ("rs256_payload_bad_utf8", "rsa", now, Want::Err(E::Payload)),
        ("rs256_payload_trailing", "rsa", now, Want::Err(E::Payload)),
        // Deep nesting: skipped without recursion in an ignored claim, refused (serde_json's
        // recursion limit, 128) in a claim or header member that is read.
        ("rs256_payload_deep", "rsa", now, Want::Ok(Some("deep"))),
        ("rs256_exp_deep", "rsa", now, Want::Err(E::Payload)),
        ("rs256_crit_deep", "rsa", now, Want::Err(E::Header)),
        // `"\u0065xp":1` is `exp`: expired at now, fine at exp + 60.
        (
            "rs256_payload_escaped_keys",
            "rsa",
            now,
            Want::Err(E::Expired),
        ),
        (
            "rs256_payload_escaped_keys",
            "rsa",
            61,
            Want::Ok(Some("esc")),
        ),
    ];
    for (name, key, now, want) in cases {
        let case = format!("{name} with {key} at {now}");
        check(&case, &verify(tok(name).as_bytes(), &keys[key], *now), want);
    }

    let cases: &[(&str, &str, u64, Verified)] = &[
        (
            "rs256",
            "rsa",
            now,
            Verified {
                sub: Some("alice".into()),
                exp: Some(fx_u64("far_future")),
                nbf: Some(fx_u64("far_past")),
            },
        ),
        (
            "es256_exp_float",
            "p256",
            0,
            Verified {
                sub: None,
                exp: Some(1_000_000_000),
                nbf: None,
            },
        ),
        (
            "es256_nbf_float",
            "p256",
            u64::MAX,
            Verified {
                sub: None,
                exp: None,
                nbf: Some(3_000_000_000),
            },
        ),
        (
            "rs256_exp_negative",
            "rsa",
            0,
            Verified {
                sub: None,
                exp: Some(0),
                nbf: None,
            },
        ),
        (
            "rs256_exp_huge_float",
            "rsa",
            0,
            Verified {
                sub: None,
                exp: Some(u64::MAX),
                nbf: None,
            },
        ),
    ];
    for (name, key, now, want) in cases {
        assert_eq!(
            verify(tok(name).as_bytes(), &keys[key], *now).as_ref(),
            Ok(want),
            "{name}"
        );
    }
}

#[test]
fn structure() {
    let key = fx_key("rsa");
    let now = fx_u64("now");
    let t = tok("rs256");
    let mut it = t.split('.');
    let (h, p, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let over = "A".repeat(MAX_TOKEN_BYTES + 1 - t.len());
    let at_limit = "A".repeat(MAX_TOKEN_BYTES - t.len());
    assert_eq!(format!("{h}.{p}{at_limit}.{s}").len(), MAX_TOKEN_BYTES);
    let cases: Vec<(&str, Vec<u8>, JwtError)> = vec![
        ("empty", b"".to_vec(), JwtError::Malformed),
        ("one part", h.into(), JwtError::Malformed),
        ("two parts", format!("{h}.{p}").into(), JwtError::Malformed),
        ("four parts", format!("{t}.{s}").into(), JwtError::Malformed),
        ("trailing dot", format!("{t}.").into(), JwtError::Malformed),
        ("dots only", b"..".to_vec(), JwtError::Header),
        ("empty header", format!(".{p}.{s}").into(), JwtError::Header),
        (
            "empty payload",
            format!("{h}..{s}").into(),
            JwtError::Signature,
        ),
        (
            "empty signature",
            format!("{h}.{p}.").into(),
            JwtError::Signature,
        ),
        (
            "padded header",
            format!("{h}=.{p}.{s}").into(),
            JwtError::Base64,
        ),
        (
            "padded signature",
            format!("{h}.{p}.{s}=").into(),
            JwtError::Base64,
        ),
        (
            "padded payload",
            format!("{h}.{p}=.{s}").into(),
            JwtError::Signature,
        ),
        (
            "std alphabet",
            format!("{h}.{p}.{}", s.replace(['-', '_'], "+")).into(),
            JwtError::Base64,
        ),
        (
            "flipped sig",
            format!("{h}.{p}.{}", flip_last(s)).into(),
            JwtError::Signature,
        ),
        ("space before", format!(" {t}").into(), JwtError::Base64),
        ("space after", format!("{t} ").into(), JwtError::Base64),
        (
            "bearer prefix",
            format!("Bearer {t}").into(),
            JwtError::Base64,
        ),
        (
            "non-UTF-8",
            [t.as_bytes(), b"\xff"].concat(),
            JwtError::Base64,
        ),
        ("NUL", [t.as_bytes(), b"\0"].concat(), JwtError::Base64),
        (
            "one byte over",
            format!("{t}{over}").into(),
            JwtError::TooLong,
        ),
        ("huge", vec![b'.'; 1 << 20], JwtError::TooLong),
        (
            "at the limit",
            format!("{h}.{p}{at_limit}.{s}").into(),
            JwtError::Signature,
        ),
    ];
    assert!(
        s.contains(['-', '_']),
        "the fixture signature has a base64url-only character"
    );
    for (case, token, want) in cases {
        assert_eq!(verify(&token, &key, now), Err(want), "{case}");
    }
}

/// Every one-byte change and every truncation of valid tokens is refused, without panic.
#[test]
fn mutations_never_verify() {
    let now = fx_u64("now");
    for (name, key) in [
        ("rs256", fx_key("rsa")),
        ("es256", fx_key("p256")),
        ("es384", fx_key("p384")),
    ] {
        let t = tok(name).as_bytes();
        assert!(verify(t, &key, now).is_ok(), "{name} verifies");
        for i in 0..t.len() {
            assert!(verify(&t[..i], &key, now).is_err(), "{name} cut at {i}");
            for b in [b'A', b'Q', b'_', b'.', b'=', b' ', 0xff] {
                if t[i] != b {
                    let mut m = t.to_vec();
                    m[i] = b;
                    assert!(verify(&m, &key, now).is_err(), "{name}[{i}] = {b}");
                }
            }
        }
    }
}

/// Random bytes over the token alphabet, through every entry point: no panic.
#[test]
fn garbage_never_panics() {
    let keys = [fx_key("rsa"), fx_key("p256"), fx_key("p384")];
    let alphabet = b"AQgw_-.=eyJ{}\"%\\\xff\0 ;";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let mut cache = TokenCache::new(4);
    for _ in 0..3000 {
        let len = next() % 200;
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[next() % alphabet.len()])
            .collect();
        for key in &keys {
            assert!(verify(&input, key, next() as u64).is_err());
        }
        let _ = bearer(&input);
        let _ = cookie(&input, "id_token");
        assert!(cache.get(&input, 0).is_none());
    }
}

#[test]
fn from_jwk_cases() {
    let rsa = fx_jwk("rsa");
    let n = rsa["n"].as_str().unwrap().to_string();
    let n_bytes = URL_SAFE_NO_PAD.decode(&n).unwrap();
    let n_zero = URL_SAFE_NO_PAD.encode([&[0u8][..], &n_bytes].concat());
    let mut even = n_bytes.clone();
    *even.last_mut().unwrap() &= 0xfe;
    let n_even = URL_SAFE_NO_PAD.encode(&even);
    let p256 = fx_jwk("p256");
    let (x, y) = (p256["x"].as_str().unwrap(), p256["y"].as_str().unwrap());
    let x31 = URL_SAFE_NO_PAD.encode(&URL_SAFE_NO_PAD.decode(x).unwrap()[1..]);
    let one = URL_SAFE_NO_PAD.encode([&[0u8; 31][..], &[1]].concat());
    let rsa1024 = serde_json::to_string(&fx_jwk("rsa_1024")).unwrap();
    let rsa_with = |extra: &str| format!(r#"{{"kty":"RSA","n":"{n}","e":"AQAB"{extra}}}"#);
    let ec_with =
        |extra: &str| format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"{extra}}}"#);
    // (case, JWK text, Ok or a piece of the error)
    let cases: Vec<(&str, String, Result<(), &str>)> = vec![
        ("rsa", rsa_with(""), Ok(())),
        ("rsa use sig", rsa_with(r#","use":"sig","kid":"k""#), Ok(())),
        ("rsa alg RS256", rsa_with(r#","alg":"RS256""#), Ok(())),
        ("rsa alg PS512", rsa_with(r#","alg":"PS512""#), Ok(())),
        (
            "rsa key_ops verify",
            rsa_with(r#","key_ops":["verify"]"#),
            Ok(()),
        ),
        (
            "rsa e=3",
            format!(r#"{{"kty":"RSA","n":"{n}","e":"Aw"}}"#),
            Ok(()),
        ),
        (
            "rsa n leading zero",
            format!(r#"{{"kty":"RSA","n":"{n_zero}","e":"AQAB"}}"#),
            Ok(()),
        ),
        (
            "rsa e leading zero",
            format!(r#"{{"kty":"RSA","n":"{n}","e":"AAEAAQ"}}"#),
            Ok(()),
        ),
        ("ec", ec_with(""), Ok(())),
        ("ec alg ES256", ec_with(r#","alg":"ES256""#), Ok(())),
        ("rsa d", rsa_with(r#","d":"AQAB""#), Err("private")),
        ("ec d", ec_with(r#","d":"AQAB""#), Err("private")),
        ("use enc", rsa_with(r#","use":"enc""#), Err("use")),
        ("use number", rsa_with(r#","use":1"#), Err("use")),
        (
            "key_ops sign",
            rsa_with(r#","key_ops":["sign"]"#),
            Err("key_ops"),
        ),
        (
            "key_ops string",
            rsa_with(r#","key_ops":"verify""#),
            Err("key_ops"),
        ),
        (
            "alg HS256",
            rsa_with(r#","alg":"HS256""#),
            Err("not supported"),
        ),
        (
            "alg none",
            rsa_with(r#","alg":"none""#),
            Err("not supported"),
        ),
        ("alg number", rsa_with(r#","alg":256"#), Err("not a string")),
        (
            "rsa alg ES256",
            rsa_with(r#","alg":"ES256""#),
            Err("does not fit"),
        ),
        (
            "ec alg ES384",
            ec_with(r#","alg":"ES384""#),
            Err("does not fit"),
        ),
        (
            "ec alg RS256",
            ec_with(r#","alg":"RS256""#),
            Err("does not fit"),
        ),
        ("rsa 1024", rsa1024, Err("1024 bits")),
        (
            "rsa n even",
            format!(r#"{{"kty":"RSA","n":"{n_even}","e":"AQAB"}}"#),
            Err("even"),
        ),
        (
            "rsa e=1",
            format!(r#"{{"kty":"RSA","n":"{n}","e":"AQ"}}"#),
            Err("exponent"),
        ),
        (
            "rsa e=2",
            format!(r#"{{"kty":"RSA","n":"{n}","e":"Ag"}}"#),
            Err("exponent"),
        ),
        (
            "rsa e=2^33+1",
            format!(r#"{{"kty":"RSA","n":"{n}","e":"AgAAAAE"}}"#),
            Err("exponent"),
        ),
        (
            "rsa e 6 bytes",
            format!(r#"{{"kty":"RSA","n":"{n}","e":"AQAAAAAB"}}"#),
            Err("exponent"),
        ),
        (
            "rsa e zero",
            format!(r#"{{"kty":"RSA","n":"{n}","e":"AA"}}"#),
            Err("exponent"),
        ),
        (
            "rsa no n",
            r#"{"kty":"RSA","e":"AQAB"}"#.into(),
            Err("\"n\""),
        ),
        (
            "rsa n padded",
            format!(r#"{{"kty":"RSA","n":"{n}=","e":"AQAB"}}"#),
            Err("\"n\""),
        ),
        (
            "rsa n std b64",
            format!(
                r#"{{"kty":"RSA","n":"{}","e":"AQAB"}}"#,
                n.replace(['-', '_'], "+")
            ),
            Err("\"n\""),
        ),
        (
            "rsa n number",
            r#"{"kty":"RSA","n":5,"e":"AQAB"}"#.into(),
            Err("\"n\""),
        ),
        (
            "ec x short",
            format!(r#"{{"kty":"EC","crv":"P-256","x":"{x31}","y":"{y}"}}"#),
            Err("32 bytes"),
        ),
        (
            "ec P-256 as P-384",
            format!(r#"{{"kty":"EC","crv":"P-384","x":"{x}","y":"{y}"}}"#),
            Err("48 bytes"),
        ),
        (
            "ec off curve",
            format!(r#"{{"kty":"EC","crv":"P-256","x":"{one}","y":"{one}"}}"#),
            Err("not a point"),
        ),
        (
            "ec P-521",
            format!(r#"{{"kty":"EC","crv":"P-521","x":"{x}","y":"{y}"}}"#),
            Err("curve"),
        ),
        (
            "ec no crv",
            format!(r#"{{"kty":"EC","x":"{x}","y":"{y}"}}"#),
            Err("curve"),
        ),
        ("kty oct", r#"{"kty":"oct","k":"AQAB"}"#.into(), Err("kty")),
        (
            "kty OKP",
            r#"{"kty":"OKP","crv":"Ed25519","x":"AQAB"}"#.into(),
            Err("kty"),
        ),
        ("no kty", r#"{"n":"AQAB","e":"AQAB"}"#.into(), Err("kty")),
        (
            "kty lowercase",
            rsa_with("").replace("\"RSA\"", "\"rsa\""),
            Err("kty"),
        ),
    ];
    for (case, text, want) in cases {
        match (JwtKey::from_jwk(&jwk(&text)), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(piece)) => assert!(e.contains(piece), "{case}: {e:?} lacks {piece:?}"),
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
    // The stripped key verifies the same tokens.
    let stripped = key_of(&format!(r#"{{"kty":"RSA","n":"{n_zero}","e":"AAEAAQ"}}"#));
    assert!(verify(tok("rs256").as_bytes(), &stripped, fx_u64("now")).is_ok());
}

/// A JWK `alg` pins the token's `alg`.
#[test]
fn jwk_alg_pins_token_alg() {
    let now = fx_u64("now");
    let mut map = fx_jwk("rsa");
    map.insert("alg".into(), Value::String("RS256".into()));
    let pinned = JwtKey::from_jwk(&map).unwrap();
    let cases: &[(&str, Want)] = &[
        ("rs256", Want::Ok(Some("alice"))),
        ("rs384", Want::Err(JwtError::AlgKeyMismatch)),
        ("ps256", Want::Err(JwtError::AlgKeyMismatch)),
        ("es256", Want::Err(JwtError::AlgKeyMismatch)),
        ("none_empty_sig", Want::Err(JwtError::UnsupportedAlg)),
    ];
    for (name, want) in cases {
        check(name, &verify(tok(name).as_bytes(), &pinned, now), want);
    }
}

#[test]
fn bearer_table() {
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"Bearer abc", Some(b"abc")),
        (b"bearer abc", Some(b"abc")),
        (b"BEARER abc", Some(b"abc")),
        (b"BeArEr   abc  ", Some(b"abc")),
        (b"\t Bearer\tabc\t", Some(b"abc")),
        (b"Bearer a.b.c", Some(b"a.b.c")),
        (b"Bearer a b", Some(b"a b")),
        (b"Bearer \xff\xfe", Some(b"\xff\xfe")),
        (b"Bearer", None),
        (b"Bearer ", None),
        (b"Bearer \t  ", None),
        (b"Bearerabc", None),
        (b"Bearer=abc", None),
        (b"Bearer,abc", None),
        (b"Basic abc", None),
        (b"Bear abc", None),
        (b"Bearer\xc3 abc", None),
        (b"abc", None),
        (b"", None),
        (b"\xff\xff\xff\xff\xff\xff abc", None),
    ];
    for (value, want) in cases {
        assert_eq!(bearer(value), *want, "{:?}", String::from_utf8_lossy(value));
    }
}

#[test]
fn cookie_table() {
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"id_token=abc", Some(b"abc")),
        (b"a=b; id_token=abc; c=d", Some(b"abc")),
        (b"a=b;id_token=abc", Some(b"abc")),
        (b"  id_token = abc ;", Some(b"abc")),
        (b"id_token=\"abc\"", Some(b"abc")),
        (b"id_token=a=b", Some(b"a=b")),
        (b"id_token=first; id_token=second", Some(b"first")),
        (b"id_token=; id_token=second", Some(b"second")),
        (b"id_token=\"\"; id_token=second", Some(b"second")),
        (b"id_token=\"", Some(b"\"")),
        (b"id_token=\xff", Some(b"\xff")),
        (b"id_token=", None),
        (b"id_token", None),
        (b"ID_TOKEN=abc", None),
        (b"xid_token=abc", None),
        (b"id_token_x=abc", None),
        (b"a=b; c=d", None),
        (b";;;", None),
        (b"", None),
    ];
    for (value, want) in cases {
        assert_eq!(
            cookie(value, "id_token"),
            *want,
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

fn v(sub: &str, exp: Option<u64>, nbf: Option<u64>) -> Verified {
    Verified {
        sub: Some(sub.into()),
        exp,
        nbf,
    }
}

/// The cache's index and slots agree, and it holds at most `capacity` tokens.
fn assert_consistent(c: &TokenCache) {
    assert!(c.len() <= c.capacity);
    assert!(c.slots.len() <= c.capacity);
    assert_eq!(c.slots.iter().flatten().count(), c.len());
    for (token, &idx) in &c.index {
        assert_eq!(c.slots[idx].as_ref().map(|e| &*e.token), Some(&**token));
    }
}

#[test]
fn cache_hit_and_expiry() {
    let mut c = TokenCache::new(8);
    assert!(c.get(b"t", 0).is_none());
    c.insert(b"t", v("a", Some(1000), None), 900);
    assert_eq!(c.get(b"t", 900), Some(&v("a", Some(1000), None)));
    assert!(c.get(b"u", 900).is_none());
    assert_eq!(c.get(b"t", 1060).map(|v| v.sub.as_deref()), Some(Some("a")));
    assert!(c.get(b"t", 1061).is_none(), "exp + 61 is expired");
    assert!(c.is_empty(), "an expired entry is dropped");
    // Too late to insert at all.
    c.insert(b"t", v("a", Some(1000), None), 1061);
    assert!(c.is_empty());
    // No exp: cached until evicted.
    c.insert(b"forever", v("f", None, None), 0);
    assert!(c.get(b"forever", u64::MAX).is_some());
    // exp near u64::MAX does not overflow.
    c.insert(b"huge", v("h", Some(u64::MAX), None), u64::MAX);
    assert!(c.get(b"huge", u64::MAX).is_some());
    assert_consistent(&c);
}

#[test]
fn cache_nbf_in_future_not_cached() {
    let mut c = TokenCache::new(8);
    // verify() accepts it at 1940 (leeway), but it is not valid yet: not cached.
    c.insert(b"t", v("a", None, Some(2000)), 1940);
    c.insert(b"t", v("a", None, Some(2000)), 1999);
    assert!(c.get(b"t", 2000).is_none());
    c.insert(b"t", v("a", None, Some(2000)), 2000);
    assert!(c.get(b"t", 2000).is_some());
}

#[test]
fn cache_bound_and_clock() {
    let mut c = TokenCache::new(0);
    c.insert(b"t", v("a", None, None), 0);
    assert!(c.get(b"t", 0).is_none(), "capacity 0 caches nothing");
    let mut c = TokenCache::new(usize::MAX);
    c.insert(b"t", v("a", None, None), 0);
    assert!(
        c.get(b"t", 0).is_some(),
        "a huge capacity allocates on demand"
    );

    let mut c = TokenCache::new(4);
    for i in 0..4u8 {
        c.insert(&[i], v("x", None, None), 0);
    }
    assert_eq!(c.len(), 4);
    // Token 0 is used: it survives the next insert, token 1 (unused, oldest) goes.
    assert!(c.get(&[0], 0).is_some());
    c.insert(&[4], v("x", None, None), 0);
    assert_eq!(c.len(), 4);
    assert!(c.get(&[0], 0).is_some());
    assert!(c.get(&[1], 0).is_none());
    assert!(c.get(&[4], 0).is_some());
    // Re-inserting updates in place.
    c.insert(&[4], v("y", None, None), 0);
    assert_eq!(c.len(), 4);
    assert_eq!(c.get(&[4], 0).and_then(|v| v.sub.as_deref()), Some("y"));
    // An expired entry is the first victim, whatever its bit.
    c.insert(&[5], v("short", Some(10), None), 0);
    assert!(c.get(&[5], 0).is_some());
    c.insert(&[6], v("x", None, None), 100);
    assert!(c.get(&[6], 100).is_some());
    assert_consistent(&c);

    // Churn with hits: always bounded and consistent.
    let mut c = TokenCache::new(8);
    for i in 0..2000u32 {
        let t = i.to_le_bytes();
        c.insert(&t, v("x", Some(u64::from(i % 50)), None), u64::from(i % 40));
        let _ = c.get(&(i / 2).to_le_bytes(), u64::from(i % 40));
        assert!(c.len() <= 8);
    }
    assert_consistent(&c);
}

#[test]
fn cache_with_verify() {
    let key = fx_key("p256");
    let now = fx_u64("now");
    let token = tok("es256").as_bytes();
    let mut c = TokenCache::new(TOKEN_CACHE_CAPACITY);
    assert!(c.get(token, now).is_none());
    let verified = verify(token, &key, now).unwrap();
    c.insert(token, verified.clone(), now);
    assert_eq!(c.get(token, now), Some(&verified));
    let far_future = fx_u64("far_future");
    assert!(c.get(token, far_future + 60).is_some());
    assert!(c.get(token, far_future + 61).is_none());
}

#[test]
fn messages_and_reasons() {
    assert_eq!(MSG_MISSING, "Oauth miss Oauth id_token");
    assert_eq!(MSG_INVALID, "Oauth id_token verify error");
    assert_eq!(JwtError::Claim("nbf").to_string(), "nbf is not a number");
    assert_eq!(JwtError::Claim("sub").reason(), "sub is not a string");
}
