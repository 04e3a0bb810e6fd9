//! Microsoft Entra ID access tokens for Azure OpenAI (`azure_auth: entra`): the OAuth 2.0
//! client-credentials grant of an app registration (`client_id` + client secret) against
//! `<authority>/<tenant>/oauth2/v2.0/token`, scope [`COGNITIVE_SERVICES_SCOPE`], renewed in
//! the background.
//!
//! Like [`super::google`]: one refresher per distinct app registration (token endpoint,
//! client id and secret), process-wide, reused across snapshot reloads; it runs on the
//! refresher thread, gets a token at once and again five minutes before expiry, keeps the old
//! token served while renewing, retries with exponential backoff, logs failures with Entra's
//! error code and description (never the secret or a token), and stops once no snapshot holds
//! its cell. Requests never wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use omg_shared::azure::{EntraClient, COGNITIVE_SERVICES_SCOPE};
use omg_shared::secret::Secret;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    refresher_runtime, renew_after, sanitize, AccessToken, TokenCell, ASSUMED_LIFETIME,
    MAX_BACKOFF, MIN_BACKOFF, REQUEST_TIMEOUT,
};

/// Largest token endpoint answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The process-wide registry of Entra ID token cells and their refreshers.
#[derive(Default)]
pub struct EntraTokens {
    cells: Mutex<HashMap<String, Weak<TokenCell>>>,
}

impl EntraTokens {
    /// The process-wide registry.
    pub fn global() -> &'static EntraTokens {
        static TOKENS: OnceLock<EntraTokens> = OnceLock::new();
        TOKENS.get_or_init(EntraTokens::default)
    }

    /// The token cell of an app registration, starting its refresher on first sight (or
    /// when the previous one stopped). `Err` only if the refresher cannot be started.
    pub fn cell(&self, client: &EntraClient) -> Result<Arc<TokenCell>, String> {
        let fingerprint = fingerprint(client);
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        cells.retain(|_, cell| cell.strong_count() > 0);
        if let Some(cell) = cells.get(&fingerprint).and_then(Weak::upgrade) {
            return Ok(cell);
        }
        let handle = refresher_runtime()?;
        let http = https_client()?;
        let cell = Arc::new(TokenCell::new(format!("Entra ID app {}", client.client_id)));
        crate::tasks::spawn_named_on(
            &handle,
            "entra token refresh",
            refresh(client.clone(), http, Arc::downgrade(&cell)),
        );
        cells.insert(fingerprint, Arc::downgrade(&cell));
        Ok(cell)
    }
}

/// Names an app registration without its secret in clear.
fn fingerprint(client: &EntraClient) -> String {
    let mut hash = Sha256::new();
    for part in [
        client.token_url.as_str(),
        client.client_id.as_str(),
        client.client_secret.expose(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// rustls (the process's ring provider) with the system's roots; plain http too, for test
/// token endpoints and authority hosts behind a local proxy.
fn https_client() -> Result<HttpsClient, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// What the token endpoint answers.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The form body of the client-credentials grant.
pub(crate) fn grant_body(client: &EntraClient) -> String {
    format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
        form_encode(&client.client_id),
        form_encode(client.client_secret.expose()),
        form_encode(COGNITIVE_SERVICES_SCOPE)
    )
}

/// `application/x-www-form-urlencoded`: unreserved characters kept, the rest `%XX`.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One token request: the token and its lifetime, or what went wrong (no secret in it).
async fn request_token(
    http: &HttpsClient,
    client: &EntraClient,
) -> Result<(String, Duration), String> {
    let request = http::Request::post(&client.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(grant_body(client))))
        .map_err(|e| format!("invalid token request: {e}"))?;
    let response = http
        .request(request)
        .await
        .map_err(|e| format!("the token endpoint is unreachable: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("the token endpoint's answer could not be read: {e}"))?
        .to_bytes();
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|_| format!("the token endpoint answered HTTP {status} without a JSON body"))?;
    if let Some(error) = answer.error {
        return Err(format!(
            "HTTP {status} `{error}`: {}",
            answer.error_description.unwrap_or_default()
        ));
    }
    let token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| format!("HTTP {status}: the answer has no access_token"))?;
    // `expires_in` is seconds, as a number (v2.0) or a string (v1.0).
    let lifetime = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .map_or(ASSUMED_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}

/// The refresher of one app registration: gets, stores, sleeps, repeats while its cell is
/// alive.
async fn refresh(client: EntraClient, http: HttpsClient, cell: Weak<TokenCell>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if cell.strong_count() == 0 {
            tracing::debug!(client_id = %client.client_id, "Entra ID app no longer used; its token refresher stops");
            return;
        }
        let got = tokio::time::timeout(REQUEST_TIMEOUT, request_token(&http, &client))
            .await
            .unwrap_or_else(|_| Err("the token endpoint did not answer in time".to_owned()));
        let wait = match got {
            Ok((token, lifetime)) => {
                let Some(cell) = cell.upgrade() else { return };
                cell.store(AccessToken {
                    value: Secret::new(token),
                    expires_at: Some(SystemTime::now() + lifetime),
                });
                drop(cell);
                tracing::info!(client_id = %client.client_id, expires_in_s = lifetime.as_secs(), "got an Azure OpenAI access token from Entra ID");
                backoff = MIN_BACKOFF;
                renew_after(lifetime)
            }
            Err(error) => {
                let wait = backoff;
                tracing::error!(client_id = %client.client_id, token_url = %client.token_url, error = %sanitize(&error), retry_in_s = wait.as_secs(), "could not get an Azure OpenAI access token from Entra ID; the previous token (if any) is served until it expires");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(secret: &str) -> EntraClient {
        EntraClient {
            token_url: "https://login.microsoftonline.com/t/oauth2/v2.0/token".to_owned(),
            client_id: "app-1".to_owned(),
            client_secret: Secret::new(secret),
        }
    }

    #[test]
    fn the_grant_is_form_encoded() {
        assert_eq!(
            grant_body(&client("a+b/c=d&e")),
            "grant_type=client_credentials&client_id=app-1&client_secret=a%2Bb%2Fc%3Dd%26e&scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"
        );
    }

    #[test]
    fn fingerprints_tell_secrets_apart_without_showing_them() {
        let one = fingerprint(&client("first-secret"));
        assert_ne!(one, fingerprint(&client("second-secret")));
        assert!(!one.contains("first-secret"));
    }
}
