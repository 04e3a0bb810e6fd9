//! The bus between the planes in cluster mode: Redis key names, the sealed and signed snapshot
//! envelope (keys in [`signing`]), the usage stream entry, and the signed identity header of
//! the internal channel.
//!
//! Everything here is pure (no Redis client, no clock): callers pass bytes and times in; the
//! only randomness is [`new_nonce`].

use crate::snapshot::Snapshot;
use crate::vault::{Vault, VaultError};

mod identity;
mod signing;

pub use identity::{
    body_digest, body_matches, new_nonce, sign_identity, verify_identity, Audience, BatchLine,
    Identity, IdentityError, RequestLine, IDENTITY_FORMAT,
};

pub use signing::{
    generate_signing_key, key_id_hex, split_list, KeyError, SignatureError, SnapshotSigner,
    SnapshotVerifier, KEY_ID_LEN, SIGNATURE_LEN,
};

/// The consumer group the control planes read the usage stream with.
pub const USAGE_GROUP: &str = "omg-controlplane";
/// The stream entry field holding one [`UsageEvent`](crate::usage::UsageEvent) as JSON.
pub const USAGE_FIELD: &str = "event";
/// The header carrying the signed [`Identity`] on the internal channel (format and checks:
/// [`sign_identity`], [`verify_identity`]).
pub const IDENTITY_HEADER: &str = "x-omg-identity";

/// Redis names derived from `cluster.snapshot_key` and `cluster.usage_stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusKeys {
    /// The sealed snapshot envelope (a string value).
    pub snapshot: String,
    /// Its version as a decimal string, written with it (cheap polling, ordering guard).
    pub snapshot_version: String,
    /// Pub/sub channel on which each new version number is published.
    pub snapshot_channel: String,
    /// The usage stream.
    pub usage_stream: String,
}

impl BusKeys {
    /// Names for a snapshot key and a usage stream.
    pub fn new(snapshot_key: &str, usage_stream: &str) -> Self {
        Self {
            snapshot: snapshot_key.to_owned(),
            snapshot_version: format!("{snapshot_key}:version"),
            snapshot_channel: format!("{snapshot_key}:published"),
            usage_stream: usage_stream.to_owned(),
        }
    }
}

/// First bytes of every sealed and signed snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"OMGSNAP2";
/// First bytes of the unsigned envelope of earlier versions, refused since.
pub const UNSIGNED_SNAPSHOT_MAGIC: &[u8; 8] = b"OMGSNAP1";
const HEADER_LEN: usize = 16;
const SIGNED_LEN: usize = HEADER_LEN + KEY_ID_LEN;
const PREFIX_LEN: usize = SIGNED_LEN + SIGNATURE_LEN;

/// Why a sealed snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not a sealed snapshot at all.
    #[error("not a sealed snapshot (bad magic or truncated)")]
    Format,
    /// The unsigned envelope of earlier versions (`OMGSNAP1`).
    #[error(
        "unsigned snapshot (published by a control plane older than the signed snapshot \
         format, or forged by a holder of the encryption keys); upgrade the control plane \
         and give it `cluster.snapshot_signing_key`"
    )]
    Unsigned,
    /// The signature is not from a configured key, or does not match.
    #[error("snapshot signature refused: {0}")]
    Signature(#[from] SignatureError),
    /// Decryption failed: wrong key, or the bytes (header included) were altered.
    #[error("sealed snapshot refused: {0}")]
    Vault(#[from] VaultError),
    /// Decrypted, but not a snapshot this build understands.
    #[error("sealed snapshot does not parse: {0}")]
    Json(String),
    /// The header's version and the payload's disagree.
    #[error("sealed snapshot header says version {header} but the payload is version {payload}")]
    VersionMismatch {
        /// From the header.
        header: u64,
        /// From the payload.
        payload: u64,
    },
}

/// Seals and signs a snapshot:
/// `magic || version (u64 BE) || key id (8) || signature (64) || vault.seal(json, aad)`,
/// where `aad = magic || version || key id` and the Ed25519 signature covers
/// `magic || version || key id || sealed`. The version sits in clear so readers can skip old
/// values cheaply; it is signed and authenticated, so relabelling fails.
pub fn seal_snapshot(
    vault: &Vault,
    signer: &SnapshotSigner,
    snapshot: &Snapshot,
) -> Result<Vec<u8>, EnvelopeError> {
    let json = serde_json::to_vec(snapshot).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    let mut signed = Vec::with_capacity(SIGNED_LEN + json.len() + 64);
    signed.extend_from_slice(SNAPSHOT_MAGIC);
    signed.extend_from_slice(&snapshot.version.to_be_bytes());
    signed.extend_from_slice(&signer.key_id());
    let sealed = vault.seal(&json, &signed)?;
    signed.extend_from_slice(&sealed);
    let signature = signer.sign(&signed);
    let mut out = Vec::with_capacity(PREFIX_LEN + sealed.len());
    out.extend_from_slice(&signed[..SIGNED_LEN]);
    out.extend_from_slice(&signature);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The version in a sealed snapshot's header. Unauthenticated: use it only to skip values
/// that are not newer; [`open_snapshot`] authenticates it.
pub fn sealed_version(bytes: &[u8]) -> Result<u64, EnvelopeError> {
    let header = bytes.get(..HEADER_LEN).ok_or(EnvelopeError::Format)?;
    if &header[..8] == UNSIGNED_SNAPSHOT_MAGIC {
        return Err(EnvelopeError::Unsigned);
    }
    if &header[..8] != SNAPSHOT_MAGIC || bytes.len() < PREFIX_LEN {
        return Err(EnvelopeError::Format);
    }
    let mut version = [0u8; 8];
    version.copy_from_slice(&header[8..]);
    Ok(u64::from_be_bytes(version))
}

/// Checks a sealed snapshot's signature against `verifier` (nothing is decrypted or parsed
/// before), and returns its version.
pub fn verify_snapshot(verifier: &SnapshotVerifier, bytes: &[u8]) -> Result<u64, EnvelopeError> {
    let version = sealed_version(bytes)?;
    let (prefix, sealed) = bytes.split_at(PREFIX_LEN);
    let (signed_head, signature) = prefix.split_at(SIGNED_LEN);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&signed_head[HEADER_LEN..]);
    let mut message = Vec::with_capacity(SIGNED_LEN + sealed.len());
    message.extend_from_slice(signed_head);
    message.extend_from_slice(sealed);
    verifier.verify(&id, &message, signature)?;
    Ok(version)
}

/// Opens a sealed snapshot: its signature first ([`verify_snapshot`]), then its
/// decryption, then that header and payload agree.
pub fn open_snapshot(
    vault: &Vault,
    verifier: &SnapshotVerifier,
    bytes: &[u8],
) -> Result<Snapshot, EnvelopeError> {
    let version = verify_snapshot(verifier, bytes)?;
    let (prefix, sealed) = bytes.split_at(PREFIX_LEN);
    let json = vault.open(sealed, &prefix[..SIGNED_LEN])?;
    let snapshot: Snapshot =
        serde_json::from_slice(&json).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    if snapshot.version != version {
        return Err(EnvelopeError::VersionMismatch {
            header: version,
            payload: snapshot.version,
        });
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests;
