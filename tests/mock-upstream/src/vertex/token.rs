//! `POST /token`: the OAuth JWT-bearer grant of service accounts, and the tokens it mints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::handler::{self, Reply};
use crate::Shared;

/// The token endpoint's path.
pub(crate) const TOKEN_PATH: &str = "/token";
/// The test service account's email (the JWT's `iss`).
pub const TEST_CLIENT_EMAIL: &str = "omg-test@omg-test-project.iam.gserviceaccount.com";
/// The test service account's JSON key, with `token_uri` pointing nowhere: use
/// [`test_service_account`].
pub const TEST_SERVICE_ACCOUNT: &str =
    include_str!("../../../fixtures/vertex/test-service-account.json");
/// The test account's public key as a JWK (`n`, `e`).
const TEST_PUBLIC_JWK: &str =
    include_str!("../../../fixtures/vertex/test-service-account.pub.jwk.json");
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The test service account's JSON key with `token_uri` = `{origin}/token` (one line).
pub fn test_service_account(origin: &str) -> String {
    let mut key: Value = serde_json::from_str(TEST_SERVICE_ACCOUNT).unwrap_or(Value::Null);
    key["token_uri"] = Value::String(format!("{origin}{TOKEN_PATH}"));
    key.to_string()
}

/// Tokens minted, with their expiry.
pub(crate) struct TokenState {
    lifetime_s: AtomicU64,
    minted: Mutex<HashMap<String, Instant>>,
    count: AtomicU64,
}

impl Default for TokenState {
    fn default() -> Self {
        Self {
            lifetime_s: AtomicU64::new(3599),
            minted: Mutex::new(HashMap::new()),
            count: AtomicU64::new(0),
        }
    }
}

impl TokenState {
    pub(crate) fn set_lifetime(&self, lifetime: Duration) {
        self.lifetime_s
            .store(lifetime.as_secs().max(1), Ordering::Relaxed);
    }

    pub(crate) fn mint(&self) -> (String, u64) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let lifetime = self.lifetime_s.load(Ordering::Relaxed);
        let token = format!("ya29.mock-token-{n}");
        let mut minted = self
            .minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        minted.insert(
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        );
        (token, lifetime)
    }

    pub(crate) fn valid(&self, token: &str) -> bool {
        let minted = self
            .minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        minted
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }
}

/// `POST /token`: the JWT-bearer grant.
pub(super) fn token(shared: &Shared, parts: &Parts, body: &[u8]) -> Reply {
    let invalid = |description: &str| {
        Reply::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": description}).to_string(),
        )
    };
    if parts.method != Method::POST {
        return Reply::json(StatusCode::METHOD_NOT_ALLOWED, "{}".to_owned());
    }
    let form = String::from_utf8_lossy(body);
    let field = |name: &str| {
        form.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| percent_decode(value))
    };
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Reply::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
                .to_string(),
        );
    }
    let Some(assertion) = field("assertion") else {
        return invalid("Missing required parameter: assertion");
    };
    let host = handler::header(parts, "host").unwrap_or("");
    let audience = format!("http://{host}{TOKEN_PATH}");
    // Google takes base64url with or without padding (yup-oauth2 pads); jsonwebtoken not.
    let assertion: Vec<&str> = assertion
        .split('.')
        .map(|s| s.trim_end_matches('='))
        .collect();
    match verify(&assertion.join("."), &audience) {
        Ok(()) => {
            let (access_token, expires_in) = shared.google_tokens.mint();
            Reply::ok(
                json!({"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"})
                    .to_string(),
            )
        }
        Err(description) => invalid(&description),
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    scope: String,
    iat: u64,
    exp: u64,
}

/// Checks the assertion's signature (the test account's key), `iss`, `aud`, `scope`, `exp`.
fn verify(assertion: &str, audience: &str) -> Result<(), String> {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let jwk: Value = serde_json::from_str(TEST_PUBLIC_JWK).unwrap_or(Value::Null);
    let (Some(n), Some(e)) = (jwk["n"].as_str(), jwk["e"].as_str()) else {
        return Err("the mock's test key is unreadable".to_owned());
    };
    let key = DecodingKey::from_rsa_components(n, e)
        .map_err(|_| "the mock's test key is unreadable".to_owned())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[TEST_CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let data = decode::<Claims>(assertion, &key, &validation).map_err(|error| match error.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => "Invalid JWT Signature.".to_owned(),
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".to_owned(),
        jsonwebtoken::errors::ErrorKind::InvalidAudience => format!("Invalid JWT: the audience must be {audience}."),
        jsonwebtoken::errors::ErrorKind::InvalidIssuer => "Invalid JWT: unknown issuer.".to_owned(),
        _ => format!("Invalid JWT ({error})."),
    })?;
    let claims = data.claims;
    if !claims.scope.split(' ').any(|scope| scope == SCOPE) {
        return Err("Invalid OAuth scope or ID token audience provided.".to_owned());
    }
    if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".to_owned());
    }
    Ok(())
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertions_must_be_signed_by_the_test_account() {
        let unsigned = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ4In0.c2ln";
        assert!(verify(unsigned, "http://127.0.0.1:1/token").is_err());
        assert!(verify("not-a-jwt", "http://127.0.0.1:1/token").is_err());
        let key: Value =
            serde_json::from_str(&test_service_account("http://h:1")).unwrap_or_default();
        assert_eq!(key["token_uri"], "http://h:1/token");
        assert_eq!(key["client_email"], TEST_CLIENT_EMAIL);
    }

    #[test]
    fn form_values_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c%3d"), "a+b c=");
    }
}
