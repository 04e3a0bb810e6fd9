//! Provider credentials that need I/O to obtain (environment, files, token endpoints), kept
//! off the request path and resolved per deployment when a snapshot is built
//! ([`for_deployment`], handed to the adapter as a [`Credential`]): [`aws`] finds AWS
//! credentials; a [`TokenCell`] holds the current access token of one credential; adapters
//! only read it (a lock-free load, through [`TokenSource`]). The [`google`] refresher mints and renews Google OAuth tokens from a
//! service-account key in the background and stores them there; the [`entra`] refresher does
//! the same for Microsoft Entra ID app registrations (Azure OpenAI). Both run on one
//! dedicated thread ([`refresher_runtime`]).

pub mod aws;
pub mod entra;
pub mod google;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use omg_shared::azure::{valid_api_version, AzureAuth, EntraClient};
use omg_shared::provider::ProviderKind;
use omg_shared::secret::Secret;
use omg_shared::snapshot::Deployment;
use omg_shared::vertex::{ServiceAccountKey, VertexApi, PROJECT_METADATA_KEY};
use tokio::runtime::Handle;

use crate::providers::{Credential, TokenSource};

/// How long before expiry a token is renewed.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// First retry delay after a failure; doubled up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// When the token endpoint gives no lifetime.
pub(crate) const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);
/// Time allowed to one token request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The refreshers' runtime: a small tokio runtime on a thread of its own, independent of
/// Pingora's (started once, on first use).
pub(crate) fn refresher_runtime() -> Result<Handle, String> {
    static RUNTIME: OnceLock<Result<Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("omg-tokens")
                .build()
                .map_err(|e| format!("cannot start the token refresher runtime: {e}"))?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("omg-tokens".to_owned())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| format!("cannot start the token refresher thread: {e}"))?;
            Ok(handle)
        })
        .clone()
}

/// When to renew a token that lives `lifetime`: [`REFRESH_MARGIN`] before it expires, or at
/// half its life when that comes later (short-lived tokens), at least a second from now.
pub(crate) fn renew_after(lifetime: Duration) -> Duration {
    lifetime
        .saturating_sub(REFRESH_MARGIN)
        .max(lifetime / 2)
        .max(Duration::from_secs(1))
}

/// One line, bounded: a token endpoint's error text, for the log.
pub(crate) fn sanitize(error: &str) -> String {
    error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// Where token cells come from: the process's registries ([`Global`]), or cells holding a
/// token already (tests, fuzzing).
pub trait Credentials {
    /// The token cell of a Google service account (its refresher started on first sight,
    /// shared by every snapshot that names the same key).
    fn google(&self, key: &ServiceAccountKey) -> Result<Arc<TokenCell>, String>;

    /// The token cell of a Microsoft Entra ID app registration (Azure OpenAI with
    /// `azure_auth: entra`), its refresher started on first sight.
    fn entra(&self, client: &EntraClient) -> Result<Arc<TokenCell>, String>;
}

/// The process's credential registries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl Credentials for Global {
    fn google(&self, key: &ServiceAccountKey) -> Result<Arc<TokenCell>, String> {
        google::GoogleTokens::global().cell(key)
    }

    fn entra(&self, client: &EntraClient) -> Result<Arc<TokenCell>, String> {
        entra::EntraTokens::global().cell(client)
    }
}

/// The credential of one deployment, resolved when its snapshot is built: the token cell of
/// a Vertex AI service account or of an Azure Entra ID app registration (from `registries`),
/// the AWS credentials of a Bedrock deployment ([`aws::for_deployment`]), else none. A token
/// cell (and its refresher) is only asked for when the settings its adapter reads before it
/// are good; bad ones get [`Credential::None`] and the adapter names what is wrong.
pub fn for_deployment(
    deployment: &Deployment,
    registries: &dyn Credentials,
) -> Result<Credential, String> {
    Ok(match deployment.provider {
        ProviderKind::Azure => match entra_client(deployment) {
            Some(client) => Credential::Token(registries.entra(&client)?),
            None => Credential::None,
        },
        ProviderKind::Vertex => match service_account_key(deployment) {
            Some(key) => Credential::Token(registries.google(&key)?),
            None => Credential::None,
        },
        ProviderKind::Bedrock => Credential::Aws(aws::for_deployment(deployment)?),
        _ => Credential::None,
    })
}

/// The app registration of an Azure deployment with `azure_auth: entra` (and a good
/// `api_version`, which the adapter checks first).
fn entra_client(deployment: &Deployment) -> Option<EntraClient> {
    let version = deployment.api_version.as_deref()?;
    if !valid_api_version(version)
        || AzureAuth::from_metadata(&deployment.metadata).ok()? != AzureAuth::Entra
    {
        return None;
    }
    EntraClient::from_metadata(&deployment.metadata, deployment.api_key.as_ref()).ok()
}

/// The service-account key of a deployment in Vertex AI mode (with a GCP project, which the
/// adapter checks first).
fn service_account_key(deployment: &Deployment) -> Option<ServiceAccountKey> {
    if VertexApi::from_metadata(&deployment.metadata).ok()? != VertexApi::Vertex {
        return None;
    }
    let key = ServiceAccountKey::parse(deployment.api_key.as_ref()?.expose()).ok()?;
    deployment.metadata.get(PROJECT_METADATA_KEY)?;
    Some(key)
}

/// An access token and when it stops being valid.
#[derive(Debug)]
pub struct AccessToken {
    /// The token (redacted in `Debug`).
    pub value: Secret,
    /// When it expires (`None`: the issuer did not say).
    pub expires_at: Option<SystemTime>,
}

impl TokenSource for TokenCell {
    fn bearer(&self) -> Result<String, String> {
        self.current()
            .map(|token| format!("Bearer {}", token.value.expose()))
    }
}

/// The current token of one credential, written by its refresher, read per request.
#[derive(Default)]
pub struct TokenCell {
    /// Who the token is for (the service account's email), for messages.
    label: String,
    current: ArcSwapOption<AccessToken>,
}

impl fmt::Debug for TokenCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCell")
            .field("label", &self.label)
            .field("has_token", &self.current.load().is_some())
            .finish()
    }
}

impl TokenCell {
    /// An empty cell for the credential named `label` (no secret in it).
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            current: ArcSwapOption::empty(),
        }
    }

    /// A cell holding a token already (tests, static tokens).
    pub fn with_token(label: impl Into<String>, token: &str) -> Self {
        let cell = Self::new(label);
        cell.store(AccessToken {
            value: Secret::new(token),
            expires_at: None,
        });
        cell
    }

    /// The credential's name (no secret).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Replaces the token.
    pub fn store(&self, token: AccessToken) {
        self.current.store(Some(Arc::new(token)));
    }

    /// The current token if it has not expired; `Err` says why there is none, for the
    /// operator (no secret in it).
    pub fn current(&self) -> Result<Arc<AccessToken>, String> {
        match self.current.load_full() {
            None => Err(format!(
                "no access token yet for `{}` (the token endpoint has not answered; see the log)",
                self.label
            )),
            Some(token)
                if token
                    .expires_at
                    .is_some_and(|expiry| expiry <= SystemTime::now()) =>
            {
                Err(format!(
                    "the access token for `{}` expired and could not be refreshed (see the log)",
                    self.label
                ))
            }
            Some(token) => Ok(token),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_are_renewed_five_minutes_early_or_at_half_life() {
        assert_eq!(
            renew_after(Duration::from_secs(3599)),
            Duration::from_secs(3299)
        );
        assert_eq!(renew_after(Duration::from_secs(4)), Duration::from_secs(2));
        assert_eq!(renew_after(Duration::from_secs(0)), Duration::from_secs(1));
    }

    #[test]
    fn cells_serve_unexpired_tokens_and_never_print_them() {
        let cell = TokenCell::new("sa@example.iam.gserviceaccount.com");
        assert!(cell.current().unwrap_err().contains("no access token yet"));
        cell.store(AccessToken {
            value: Secret::new("ya29.secret"),
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
        });
        assert_eq!(cell.current().unwrap().value.expose(), "ya29.secret");
        assert!(!format!("{cell:?}").contains("ya29"));
        cell.store(AccessToken {
            value: Secret::new("ya29.old"),
            expires_at: Some(SystemTime::now() - Duration::from_secs(1)),
        });
        let error = cell.current().unwrap_err();
        assert!(
            error.contains("expired") && !error.contains("ya29"),
            "{error}"
        );
    }
}
