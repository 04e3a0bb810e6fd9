//! [`BedrockAdapter`]: Converse, ConverseStream and Titan embeddings behind the
//! [`ProviderAdapter`] trait, with the deployment's credential (a Bedrock API key, or SigV4
//! over the exact request).

use std::fmt;
use std::time::SystemTime;

use omg_shared::bedrock::BedrockSettings;
use omg_shared::error::ErrorCode;
use omg_shared::provider::ProviderKind;
use omg_shared::secret::Secret;
use omg_shared::snapshot::Deployment;

use super::sign::{SigV4, Signable};
use super::{
    build_converse, build_titan, map_error, translate_response, translate_titan, BedrockCredential,
    ConverseStream, EVENT_STREAM,
};
use crate::error::ApiError;
use crate::providers::adapter::{
    endpoint_path, join, Answer, Call, ClientError, ProbeRequest, ProviderAdapter,
    StreamTranslator, UpstreamRequest,
};
use crate::request::Route;

/// How requests are authenticated.
enum Auth {
    /// `Authorization: Bearer <Bedrock API key>`.
    Bearer(Secret),
    /// SigV4.
    SigV4(SigV4),
}

/// One Bedrock deployment's adapter; paths and the signer are built once, with the snapshot.
pub struct BedrockAdapter {
    settings: BedrockSettings,
    auth: Auth,
    /// `<endpoint path>/model/<model id, percent-encoded once>`.
    model_path: String,
    /// `<endpoint path>/async-invoke?maxResults=1` (the health probe).
    probe_path: String,
    scheme: &'static str,
    /// Exactly the `host` header the glue sends.
    host: String,
}

impl fmt::Debug for BedrockAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Bearer(_) => "bedrock_api_key",
            Auth::SigV4(_) => "sigv4",
        };
        f.debug_struct("BedrockAdapter")
            .field("model_path", &self.model_path)
            .field("host", &self.host)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

impl BedrockAdapter {
    /// The adapter of `deployment` with its resolved credential; `Err` names the bad
    /// setting.
    pub fn new(deployment: &Deployment, credential: BedrockCredential) -> Result<Self, String> {
        let settings = BedrockSettings::from_metadata(&deployment.metadata)
            .map_err(|(key, message)| format!("metadata `{key}`: {message}"))?;
        let endpoint = deployment
            .endpoint
            .as_ref()
            .ok_or_else(|| "no endpoint".to_owned())?;
        let region = deployment.region.as_deref().ok_or_else(|| {
            "`region` is missing (set it on the entry or `providers.aws_region`)".to_owned()
        })?;
        if deployment.provider_model.is_empty() {
            return Err("`provider_model` (the Bedrock model id) is empty".to_owned());
        }
        let prefix = endpoint_path(deployment);
        let auth = match credential {
            BedrockCredential::ApiKey(key) => Auth::Bearer(key),
            BedrockCredential::Keys(keys) => Auth::SigV4(SigV4::new(&keys, region)),
        };
        Ok(Self {
            settings,
            auth,
            model_path: join(
                prefix,
                &format!("/model/{}", encode_segment(&deployment.provider_model)),
            ),
            probe_path: join(prefix, "/async-invoke?maxResults=1"),
            scheme: if endpoint.tls { "https" } else { "http" },
            host: endpoint.host_header(),
        })
    }

    /// The credential headers of one request (signed over `body` at `now`).
    fn credential(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<(&'static str, String)>, ApiError> {
        match &self.auth {
            Auth::Bearer(key) => Ok(vec![("authorization", format!("Bearer {}", key.expose()))]),
            Auth::SigV4(signer) => signer
                .sign(
                    &Signable {
                        method,
                        scheme: self.scheme,
                        host: &self.host,
                        path,
                        body,
                    },
                    now,
                )
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InternalError,
                        "The gateway failed to sign the upstream request.",
                    )
                }),
        }
    }
}

/// Percent-encodes a path segment once: everything but RFC 3986's unreserved characters
/// (`:` → `%3A`, `/` → `%2F`), and the dots of `.` and `..`.
pub(super) fn encode_segment(text: &str) -> String {
    let dots_only = text.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'~')
            || (byte == b'.' && !dots_only);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl ProviderAdapter for BedrockAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Bedrock
    }

    fn request(
        &self,
        call: &Call<'_>,
        deployment: &Deployment,
    ) -> Result<UpstreamRequest, ApiError> {
        let (operation, body) = match call.route {
            Route::Chat => (
                if call.body.stream {
                    "/converse-stream"
                } else {
                    "/converse"
                },
                build_converse(call.raw, &self.settings)?,
            ),
            Route::Embeddings => ("/invoke", build_titan(call.raw, &self.settings)?),
            Route::ImagesGenerations => (
                "/invoke",
                super::image::build_image(
                    call.body,
                    &self.settings.image,
                    &deployment.provider_model,
                )?,
            ),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::OperationUnsupported,
                    "This endpoint is not supported for this model (Bedrock).",
                ))
            }
        };
        let path = format!("{}{operation}", self.model_path);
        let headers = self.credential("POST", &path, &body, call.now)?;
        Ok(UpstreamRequest {
            path,
            headers,
            body,
        })
    }

    fn response(&self, call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
        let (body, usage) = match call.route {
            Route::ImagesGenerations => {
                return super::image::translate_image(body, call.created, call.body.image_format)
            }
            Route::Embeddings => translate_titan(body, call.alias, call.body.base64_embeddings)?,
            _ => translate_response(body, call.alias, call.request_id, call.created)?,
        };
        Ok(Answer {
            body,
            usage: Some(usage),
        })
    }

    fn stream(&self, call: &Call<'_>) -> Box<dyn StreamTranslator> {
        Box::new(ConverseStream::new(
            call.alias,
            call.request_id,
            call.created,
            call.body.include_usage,
        ))
    }

    fn stream_accept(&self) -> &'static str {
        EVENT_STREAM
    }

    fn is_stream_content_type(&self, content_type: &str) -> bool {
        content_type.starts_with(EVENT_STREAM)
    }

    fn client_error(&self, status: u16, body: &[u8]) -> ClientError {
        map_error(status, body).into()
    }

    /// Without a clock a SigV4 probe cannot be valid (it is signed at the epoch); the glue
    /// calls [`probe_at`](ProviderAdapter::probe_at).
    fn probe(&self, deployment: &Deployment) -> ProbeRequest {
        self.probe_at(deployment, SystemTime::UNIX_EPOCH)
    }

    fn probe_at(&self, _deployment: &Deployment, now: SystemTime) -> ProbeRequest {
        ProbeRequest {
            path: self.probe_path.clone(),
            headers: self
                .credential("GET", &self.probe_path, b"", now)
                .unwrap_or_default(),
        }
    }
}
