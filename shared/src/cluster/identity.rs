//! The signed identity of the internal channel: who a request forwarded by a data plane to the
//! control plane's internal listener comes from, bound to that one request.
//!
//! Format `v2.<base64url(json)>.<base64url(hmac-sha256(secret, "v2." + payload))>`, where the
//! JSON is an [`Identity`]: tenant, key, user, request id, method, path, the raw query string
//! (exactly the bytes after `?` as forwarded, not decoded or reordered; empty when none), a
//! random single-use nonce (128 bits) and the signing time. The body is not signed: it is
//! streamed, so no digest exists when the header is sent (its integrity rests on the
//! transport; see `docs/cluster.md`). Replay is prevented by the nonce, which the control
//! plane records in Redis (one use across all its replicas).
//!
//! Versions: the number before the first dot. This release signs and accepts only
//! [`IDENTITY_FORMAT`]; an older header (`v1.`, signed by a data plane of an earlier release,
//! which bound neither the query nor a nonce) is refused with [`IdentityError::OutdatedFormat`]
//! and a newer one with [`IdentityError::NewerFormat`], each naming which plane to upgrade.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// The identity format this release signs and accepts.
pub const IDENTITY_FORMAT: u32 = 2;

/// Bytes of randomness in a nonce (128 bits), written as twice as many hex digits.
const NONCE_BYTES: usize = 16;

/// The plane an identity is addressed to. Both directions share `cluster.internal_secret`;
/// the audience keeps an identity signed for one plane from being accepted by the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// A data plane forwarding `/v1/files*` or `/v1/batches*` to the control plane's
    /// internal listener (the default: identities of earlier releases carry no audience).
    #[default]
    Controlplane,
    /// The control plane's batch worker sending one batch line to a data plane's `/v1`
    /// listener as the batch's key.
    Dataplane,
}

/// Who a request on the internal channel comes from and the one request it is valid for:
/// either a data plane forwarding an authenticated caller to the control plane, or the
/// control plane's batch worker sending a line to a data plane as the batch's key
/// ([`Audience`]). Signed into [`IDENTITY_HEADER`](super::IDENTITY_HEADER) with
/// `cluster.internal_secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The plane that may accept it.
    #[serde(default)]
    pub audience: Audience,
    /// The key's tenant.
    pub tenant_id: Uuid,
    /// The key.
    pub key_id: Uuid,
    /// The portal user behind the key, when known.
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// The request id the data plane assigned (or honoured).
    pub request_id: String,
    /// HTTP method the signature is valid for.
    pub method: String,
    /// Path (without query) the signature is valid for.
    pub path: String,
    /// The raw query string the signature is valid for: the bytes after `?` exactly as
    /// forwarded (not decoded, not reordered); empty when there is none.
    pub query: String,
    /// 128 random bits as 32 lowercase hex digits ([`new_nonce`]); the control plane accepts
    /// each nonce once.
    pub nonce: String,
    /// When it was signed, Unix seconds.
    pub issued_at: i64,
    /// The batch a line belongs to (audience `dataplane`): stamped on its usage record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// SHA-256 of the exact body bytes, lowercase hex, when the signer had the whole body
    /// before sending (the batch worker always does; a data plane forwarding a streamed
    /// upload does not). A verifier that receives one must compare it with the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// One batch line as the control plane's batch worker sends it to a data plane's `/v1`
/// listener: as the batch's key, for one exact body.
#[derive(Debug, Clone, Copy)]
pub struct BatchLine<'a> {
    /// The batch's tenant.
    pub tenant_id: Uuid,
    /// The batch's key (the line runs as this key).
    pub key_id: Uuid,
    /// The key's owner, when known.
    pub user_id: Option<Uuid>,
    /// The batch (`batch_…`), stamped on the line's usage record.
    pub batch_id: &'a str,
    /// The request id the line is sent with (`x-request-id`).
    pub request_id: &'a str,
    /// `POST`.
    pub method: &'a str,
    /// The line's `url`, e.g. `/v1/chat/completions` (batch lines carry no query string).
    pub path: &'a str,
    /// The exact body bytes that will be sent.
    pub body: &'a [u8],
}

impl Identity {
    /// The identity of one batch line, addressed to the data plane, with the body's digest
    /// and a fresh nonce, signed at `now_secs`; sign it with [`sign_identity`] into
    /// [`IDENTITY_HEADER`](super::IDENTITY_HEADER). Each send (a re-send too) needs a new
    /// one: a data plane accepts each nonce once. `None` only when the system's random
    /// source fails.
    pub fn for_batch_line(line: &BatchLine<'_>, now_secs: i64) -> Option<Self> {
        Some(Self {
            audience: Audience::Dataplane,
            tenant_id: line.tenant_id,
            key_id: line.key_id,
            user_id: line.user_id,
            request_id: line.request_id.to_owned(),
            method: line.method.to_owned(),
            path: line.path.to_owned(),
            query: String::new(),
            nonce: new_nonce()?,
            issued_at: now_secs,
            batch_id: Some(line.batch_id.to_owned()),
            body_sha256: Some(body_digest(line.body)),
        })
    }
}

/// The request an identity header arrived with, as the verifier sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// The raw query string (after `?`; empty when none).
    pub query: &'a str,
    /// The plane verifying.
    pub audience: Audience,
}

/// Why an identity header was refused. The messages are safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No header.
    #[error("missing identity header")]
    Missing,
    /// Not `v<n>.<payload>.<signature>`, or the payload is not an identity.
    #[error("malformed identity header")]
    Malformed,
    /// Signed in a format older than [`IDENTITY_FORMAT`] by a data plane of an earlier
    /// release.
    #[error(
        "identity header format v{0} is no longer accepted (this control plane needs v2, which \
         binds the query string and a single-use nonce): upgrade the data planes to the \
         control plane's release"
    )]
    OutdatedFormat(u32),
    /// Signed in a format newer than this release knows.
    #[error(
        "identity header format v{0} is newer than this control plane understands (v2): upgrade \
         the control plane to the data planes' release"
    )]
    NewerFormat(u32),
    /// The signature does not match (wrong secret or altered).
    #[error("identity signature does not verify")]
    BadSignature,
    /// Signed too long ago (or in the future beyond the allowed skew).
    #[error("identity header is outside the replay window")]
    Expired,
    /// Signed for another method or path.
    #[error("identity header was signed for another request")]
    WrongRequest,
    /// Signed for another query string (altered after signing).
    #[error("identity header was signed for another query string")]
    WrongQuery,
    /// Signed for the other plane.
    #[error("identity header was signed for the other plane")]
    WrongAudience,
    /// The body does not match the digest signed with it.
    #[error("the request body does not match the digest signed with it")]
    WrongBody,
    /// The nonce was already used (on this control plane or another replica).
    #[error(
        "identity header was already used once (replayed); each forwarded request is accepted once"
    )]
    Replayed,
}

impl IdentityError {
    /// A short stable name of the cause, for logs and error messages.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::OutdatedFormat(_) => "outdated_format",
            Self::NewerFormat(_) => "newer_format",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::WrongRequest => "wrong_request",
            Self::WrongQuery => "wrong_query",
            Self::WrongAudience => "wrong_audience",
            Self::WrongBody => "wrong_body",
            Self::Replayed => "replayed",
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; the fallback is unreachable.
    <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()))
}

/// A fresh nonce: 128 bits from the system's secure random source as 32 lowercase hex
/// digits; `None` only when that source fails.
pub fn new_nonce() -> Option<String> {
    let mut bytes = [0u8; NONCE_BYTES];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn nonce_ok(nonce: &str) -> bool {
    nonce.len() == NONCE_BYTES * 2
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The header value `v2.<base64url(json)>.<base64url(hmac-sha256(secret, "v2." + payload))>`.
pub fn sign_identity(secret: &[u8], identity: &Identity) -> String {
    let json = serde_json::to_vec(identity).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let prefix = format!("v{IDENTITY_FORMAT}.");
    let mut mac = mac(secret);
    mac.update(prefix.as_bytes());
    mac.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{prefix}{payload}.{signature}")
}

/// The format number of `header` and the rest after its dot; `Err` for another version.
fn split_version(header: &str) -> Result<(&str, &str), IdentityError> {
    let (version, rest) = header.split_once('.').ok_or(IdentityError::Malformed)?;
    let number = version
        .strip_prefix('v')
        .filter(|digits| !digits.is_empty() && digits.len() <= 9)
        .and_then(|digits| digits.parse::<u32>().ok())
        .ok_or(IdentityError::Malformed)?;
    match number.cmp(&IDENTITY_FORMAT) {
        std::cmp::Ordering::Less => Err(IdentityError::OutdatedFormat(number)),
        std::cmp::Ordering::Greater => Err(IdentityError::NewerFormat(number)),
        std::cmp::Ordering::Equal => Ok((&header[..=version.len()], rest)),
    }
}

/// Verifies a header made by [`sign_identity`] for this `request` (method, path and raw
/// query), signed within `window_secs` of `now_secs` (either side). The signature is checked
/// in constant time and before anything in the payload is trusted. Single use is the
/// caller's part: record [`Identity::nonce`] (the control plane does so in Redis).
pub fn verify_identity(
    secret: &[u8],
    header: Option<&str>,
    request: RequestLine<'_>,
    now_secs: i64,
    window_secs: i64,
) -> Result<Identity, IdentityError> {
    let header = header.ok_or(IdentityError::Missing)?;
    let (prefix, rest) = split_version(header)?;
    let (payload, signature) = rest.split_once('.').ok_or(IdentityError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| IdentityError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(prefix.as_bytes());
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| IdentityError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| IdentityError::Malformed)?;
    let identity: Identity = serde_json::from_slice(&json).map_err(|_| IdentityError::Malformed)?;
    if !nonce_ok(&identity.nonce) {
        return Err(IdentityError::Malformed);
    }
    if now_secs.saturating_sub(identity.issued_at).saturating_abs() > window_secs {
        return Err(IdentityError::Expired);
    }
    if !identity.method.eq_ignore_ascii_case(request.method) || identity.path != request.path {
        return Err(IdentityError::WrongRequest);
    }
    if identity.query != request.query {
        return Err(IdentityError::WrongQuery);
    }
    if identity.audience != request.audience {
        return Err(IdentityError::WrongAudience);
    }
    Ok(identity)
}

/// SHA-256 of `body` as lowercase hex, the form of [`Identity::body_sha256`].
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Whether `body` is what `identity` was signed for: equal digests when one was signed, else
/// `!required` (a verifier that insists on a digest passes `required = true`).
pub fn body_matches(identity: &Identity, body: &[u8], required: bool) -> Result<(), IdentityError> {
    match &identity.body_sha256 {
        Some(digest) if bool::from(digest.as_bytes().ct_eq(body_digest(body).as_bytes())) => Ok(()),
        Some(_) => Err(IdentityError::WrongBody),
        None if required => Err(IdentityError::WrongBody),
        None => Ok(()),
    }
}
