//! Google OAuth access tokens for Vertex AI, minted from service-account keys with
//! `yup-oauth2` (the JWT-bearer grant against the key's `token_uri`) and renewed in the
//! background.
//!
//! One refresher per distinct key (by [`ServiceAccountKey::fingerprint`]), process-wide: a
//! snapshot rebuilt on reload asks [`GoogleTokens::cell`] again and gets the same cell, so
//! its refresher is reused, not restarted. A refresher is a task on one dedicated thread (its
//! own small tokio runtime, independent of Pingora's); it mints a token at once, then again
//! about five minutes before expiry (at half the lifetime for short-lived tokens), keeps the
//! old token served while it renews, and retries failures with exponential backoff (1 s to
//! 60 s), logging them without secrets. Being the only writer of its cell, it is single-flight
//! by construction; requests never wait for it. It stops once no snapshot holds its cell.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use super::{
    refresher_runtime, renew_after, sanitize, AccessToken, TokenCell, ASSUMED_LIFETIME,
    MAX_BACKOFF, MIN_BACKOFF, REQUEST_TIMEOUT,
};
use omg_shared::secret::Secret;
use omg_shared::vertex::{ServiceAccountKey, CLOUD_PLATFORM_SCOPE};

/// The process-wide registry of service-account token cells and their refreshers.
#[derive(Default)]
pub struct GoogleTokens {
    cells: Mutex<HashMap<String, Weak<TokenCell>>>,
}

impl GoogleTokens {
    /// The process-wide registry.
    pub fn global() -> &'static GoogleTokens {
        static TOKENS: OnceLock<GoogleTokens> = OnceLock::new();
        TOKENS.get_or_init(GoogleTokens::default)
    }

    /// The token cell of a service account, starting its refresher on first sight (or when
    /// the previous one stopped). `Err` only if the refresher thread cannot be started.
    pub fn cell(&self, key: &ServiceAccountKey) -> Result<Arc<TokenCell>, String> {
        let fingerprint = key.fingerprint();
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        cells.retain(|_, cell| cell.strong_count() > 0);
        if let Some(cell) = cells.get(&fingerprint).and_then(Weak::upgrade) {
            return Ok(cell);
        }
        let handle = refresher_runtime()?;
        let cell = Arc::new(TokenCell::new(key.client_email.clone()));
        crate::tasks::spawn_named_on(
            &handle,
            "google token refresh",
            refresh(key.clone(), Arc::downgrade(&cell)),
        );
        cells.insert(fingerprint, Arc::downgrade(&cell));
        Ok(cell)
    }
}

/// The refresher of one key: mints, stores, sleeps, repeats while its cell is alive.
async fn refresh(key: ServiceAccountKey, cell: Weak<TokenCell>) {
    let account = key.client_email.clone();
    let token_uri = key.token_uri.clone();
    let mut backoff = MIN_BACKOFF;
    let authenticator = loop {
        if cell.strong_count() == 0 {
            return;
        }
        // The default client: rustls (ring) with the system's roots, `https_or_http`, so a
        // test token endpoint on plain http works too. Tokens are kept in memory only.
        let built = yup_oauth2::ServiceAccountAuthenticator::builder(yup_key(&key))
            .with_timeout(REQUEST_TIMEOUT)
            .build()
            .await;
        match built {
            Ok(authenticator) => break authenticator,
            Err(error) => {
                tracing::error!(%account, %error, retry_in_s = backoff.as_secs(), "cannot set up the service account's token client");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    drop(key);
    backoff = MIN_BACKOFF;
    loop {
        if cell.strong_count() == 0 {
            tracing::debug!(%account, "service account no longer used; its token refresher stops");
            return;
        }
        let minted = tokio::time::timeout(
            REQUEST_TIMEOUT,
            authenticator.force_refreshed_token(&[CLOUD_PLATFORM_SCOPE]),
        )
        .await;
        let wait = match minted {
            Ok(Ok(token)) => match token.token() {
                Some(value) if !value.is_empty() => {
                    let lifetime = token
                        .expiration_time()
                        .and_then(|at| {
                            let now = SystemTime::now()
                                .duration_since(SystemTime::UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs());
                            let now = i64::try_from(now).unwrap_or(i64::MAX);
                            u64::try_from(at.unix_timestamp().saturating_sub(now)).ok()
                        })
                        .map_or(ASSUMED_LIFETIME, Duration::from_secs);
                    let Some(cell) = cell.upgrade() else { return };
                    cell.store(AccessToken {
                        value: Secret::new(value),
                        expires_at: Some(SystemTime::now() + lifetime),
                    });
                    drop(cell);
                    tracing::info!(%account, expires_in_s = lifetime.as_secs(), "minted a Vertex AI access token");
                    backoff = MIN_BACKOFF;
                    renew_after(lifetime)
                }
                _ => failed(
                    &account,
                    &token_uri,
                    "the answer has no access token",
                    &mut backoff,
                ),
            },
            Ok(Err(error)) => failed(&account, &token_uri, &error.to_string(), &mut backoff),
            Err(_) => failed(
                &account,
                &token_uri,
                "the token endpoint did not answer in time",
                &mut backoff,
            ),
        };
        tokio::time::sleep(wait).await;
    }
}

/// yup-oauth2's copy of the key.
fn yup_key(key: &ServiceAccountKey) -> yup_oauth2::ServiceAccountKey {
    yup_oauth2::ServiceAccountKey {
        key_type: Some("service_account".to_owned()),
        project_id: key.project_id.clone(),
        private_key_id: key.private_key_id.clone(),
        private_key: key.private_key.expose().to_owned(),
        client_email: key.client_email.clone(),
        client_id: None,
        auth_uri: None,
        token_uri: key.token_uri.clone(),
        auth_provider_x509_cert_url: None,
        client_x509_cert_url: None,
    }
}

/// Logs a failed attempt (the account and endpoint, never the key or a token) and returns
/// the delay before the next one.
fn failed(account: &str, token_uri: &str, error: &str, backoff: &mut Duration) -> Duration {
    let wait = *backoff;
    tracing::error!(%account, %token_uri, error = %sanitize(error), retry_in_s = wait.as_secs(), "could not mint a Vertex AI access token; the previous token (if any) is served until it expires");
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    wait
}
