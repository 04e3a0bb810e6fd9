//! Provider credentials that need I/O to obtain (environment, files, token endpoints), kept
//! off the request path: [`aws`] finds AWS credentials when a snapshot is built; a
//! [`TokenCell`] holds the current access token of one credential; adapters only read it
//! (a lock-free load). The [`google`] refresher mints and renews Google OAuth tokens from a
//! service-account key in the background and stores them there.

pub mod aws;
pub mod google;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use omg_shared::secret::Secret;

/// An access token and when it stops being valid.
#[derive(Debug)]
pub struct AccessToken {
    /// The token (redacted in `Debug`).
    pub value: Secret,
    /// When it expires (`None`: the issuer did not say).
    pub expires_at: Option<SystemTime>,
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

    use std::time::Duration;

    use super::*;

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
