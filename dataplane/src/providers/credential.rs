//! What an adapter is handed besides its deployment: the credential the snapshot builder
//! resolved for it (`crate::credentials`, with I/O, off the request path). Adapters only read
//! it; nothing here knows where a credential comes from.

use std::fmt;
use std::sync::Arc;

use super::bedrock::BedrockCredential;

/// An access token minted and renewed outside the adapter (a Google service account's, an
/// Entra ID app registration's), read per request.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// `Bearer <token>`, the current token as an `authorization` value; `Err` says why there
    /// is none, for the operator (no secret in it).
    fn bearer(&self) -> Result<String, String>;
}

/// The credential resolved for one deployment when the snapshot is built.
#[derive(Debug, Clone, Default)]
pub enum Credential {
    /// Nothing beyond what the deployment carries (its `api_key`, if any).
    #[default]
    None,
    /// A token source: Vertex AI with a service-account key, Azure with `azure_auth: entra`.
    Token(Arc<dyn TokenSource>),
    /// AWS credentials: Bedrock.
    Aws(BedrockCredential),
}
