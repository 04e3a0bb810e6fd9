//! SigV4 signing of Bedrock requests (service `bedrock`), with `aws-sigv4`'s default
//! settings: the canonical URI is the wire path percent-encoded **again** (Bedrock, like every
//! non-S3 service, wants it double-encoded: the model id's `:` travels as `%3A` and is signed
//! as `%253A`), no payload hash header, the session token (if any) signed as
//! `x-amz-security-token`. The signed headers are `host` (exactly what the glue sends) and
//! `x-amz-date`; the body hash covers the exact bytes sent. Pure: the time is passed in.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use omg_shared::bedrock::AwsKeys;

/// The signing service name of Bedrock Runtime.
pub const SERVICE: &str = "bedrock";

/// A static key ready to sign with.
#[derive(Clone)]
pub struct SigV4 {
    credentials: Credentials,
    region: String,
}

impl fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What is needed to sign one request.
pub struct Signable<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The `host` header the glue sends (`Endpoint::host_header`).
    pub host: &'a str,
    /// Path and query as sent (percent-encoded once).
    pub path: &'a str,
    /// The exact body.
    pub body: &'a [u8],
}

impl SigV4 {
    /// Signs with `keys` for `region`.
    pub fn new(keys: &AwsKeys, region: &str) -> Self {
        Self {
            credentials: Credentials::new(
                keys.access_key_id.clone(),
                keys.secret_access_key.expose().to_owned(),
                keys.session_token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "omg-bedrock",
            ),
            region: region.to_owned(),
        }
    }

    /// The headers to add (`authorization`, `x-amz-date`, `x-amz-security-token`), or `None`
    /// if the request cannot be signed (a path `aws-sigv4` refuses to parse).
    pub fn sign(
        &self,
        request: &Signable<'_>,
        now: SystemTime,
    ) -> Option<Vec<(&'static str, String)>> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .ok()?
            .into();
        let url = format!("{}://{}{}", request.scheme, request.host, request.path);
        let signable = SignableRequest::new(
            request.method,
            url,
            [("host", request.host)].into_iter(),
            SignableBody::Bytes(request.body),
        )
        .ok()?;
        let (instructions, _signature) = sign(signable, &params).ok()?.into_parts();
        let (headers, _params) = instructions.into_parts();
        Some(
            headers
                .into_iter()
                .map(|header| (header.name(), header.value().to_owned()))
                .collect(),
        )
    }
}
