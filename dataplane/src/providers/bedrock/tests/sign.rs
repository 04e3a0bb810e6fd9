//! SigV4: the canonical URI of a model id with `:` is double-encoded (a known vector,
//! computed independently of `aws-sigv4`), the session token is signed, and the signature
//! covers the body.

use std::time::{Duration, SystemTime};

use omg_shared::bedrock::AwsKeys;
use omg_shared::secret::Secret;

use crate::providers::bedrock::sign::{SigV4, Signable};

/// 2015-08-30T12:36:00Z, the AWS SigV4 test suite's time.
fn test_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

fn keys(token: Option<&str>) -> AwsKeys {
    AwsKeys {
        access_key_id: "AKIDEXAMPLE".to_owned(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token: token.map(Secret::new),
    }
}

const BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#;
const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";
const PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";

fn sign(keys: &AwsKeys, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    SigV4::new(keys, "us-east-1")
        .sign(
            &Signable {
                method: "POST",
                scheme: "https",
                host: HOST,
                path,
                body,
            },
            test_time(),
        )
        .unwrap()
}

fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                headers.iter().map(|h| h.0).collect::<Vec<_>>()
            )
        })
}

#[test]
fn model_ids_with_colons_are_signed_double_encoded() {
    let headers = sign(&keys(None), PATH, BODY);
    assert_eq!(header(&headers, "x-amz-date"), "20150830T123600Z");
    // Computed from the canonical request whose path is
    // `/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse` (signed headers
    // `host;x-amz-date`, the body's SHA-256), with Python's hmac/hashlib.
    assert_eq!(
        header(&headers, "authorization"),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=2716492d7ccda285a1f4d326902d9459928ad71ae642fc37233ec0537921362a"
    );
    // The single-encoded canonical path would have given another signature (what
    // Bedrock refuses with "signature does not match").
    assert!(!header(&headers, "authorization")
        .contains("2bd12dd6edce62cfff860bf6d8a3b52d7e17837ec1681766df9f702a33fc1095"));
}

#[test]
fn session_tokens_are_signed_and_bodies_covered() {
    let headers = sign(&keys(Some("session-token")), PATH, BODY);
    assert_eq!(header(&headers, "x-amz-security-token"), "session-token");
    assert!(header(&headers, "authorization")
        .contains("SignedHeaders=host;x-amz-date;x-amz-security-token"));
    let other = sign(&keys(Some("session-token")), PATH, b"{}");
    assert_ne!(
        header(&headers, "authorization"),
        header(&other, "authorization")
    );
}

#[test]
fn debug_output_holds_no_secret() {
    let signer = SigV4::new(&keys(Some("session-token")), "us-east-1");
    let text = format!("{signer:?}");
    assert!(
        !text.contains("wJalr") && !text.contains("session-token"),
        "{text}"
    );
}
