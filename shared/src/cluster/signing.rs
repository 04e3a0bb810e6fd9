//! Ed25519 keys of the snapshot bus: the control plane signs every sealed snapshot with its
//! private key (`cluster.snapshot_signing_key`), data planes verify with the public keys they
//! are given (`cluster.snapshot_public_keys`) — so holding the encryption keys (every data
//! plane does) is not enough to make a snapshot data planes accept.
//!
//! Formats: the private key is the base64 of its PKCS#8 v2 document (what
//! `omg-controlplane keys generate-signing` prints); a public key is the base64 of its 32
//! raw bytes. A key's id is the first 8 bytes of the SHA-256 of its public key, carried in
//! each envelope so a refusal can name the key that signed it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Length of an Ed25519 public key.
const PUBLIC_KEY_LEN: usize = 32;

/// Why a signing or public key could not be read. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64.
    #[error("is not valid base64")]
    Base64,
    /// Base64, but not an Ed25519 PKCS#8 document.
    #[error(
        "is not an Ed25519 private key in PKCS#8 (generate one with \
         `omg-controlplane keys generate-signing`)"
    )]
    Pkcs8,
    /// Base64, but not 32 bytes.
    #[error("decodes to {0} bytes; an Ed25519 public key is 32")]
    PublicLength(usize),
    /// The system random source failed while generating a key.
    #[error("the system random source failed")]
    Random,
}

fn decode(text: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| KeyError::Base64)
}

/// The id of a public key: the first 8 bytes of its SHA-256.
pub fn key_id(public_key: &[u8]) -> [u8; KEY_ID_LEN] {
    let digest = Sha256::digest(public_key);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

/// A key id as shown to operators (16 hex digits).
pub fn key_id_hex(id: &[u8; KEY_ID_LEN]) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The control plane's signing key.
pub struct SnapshotSigner {
    pair: Ed25519KeyPair,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for SnapshotSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSigner")
            .field("key_id", &key_id_hex(&self.id))
            .finish_non_exhaustive()
    }
}

impl SnapshotSigner {
    /// From the base64 of a PKCS#8 document.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let der = decode(text)?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| KeyError::Pkcs8)?;
        let id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, id })
    }

    /// This key's id.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }

    /// The public key as configured on data planes (base64 of 32 bytes).
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.pair.public_key().as_ref())
    }

    /// The verifier of this key alone.
    pub fn verifier(&self) -> SnapshotVerifier {
        SnapshotVerifier {
            keys: vec![(self.id, self.pair.public_key().as_ref().to_vec())],
        }
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// A new signing key: `(private key as base64 PKCS#8, public key as base64)`.
pub fn generate_signing_key() -> Result<(String, String), KeyError> {
    let document =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
    let signer = SnapshotSigner::from_base64(&STANDARD.encode(document.as_ref()))?;
    Ok((
        STANDARD.encode(document.as_ref()),
        signer.public_key_base64(),
    ))
}

/// The public keys a data plane accepts snapshots from (rotation: every listed key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotVerifier {
    keys: Vec<([u8; KEY_ID_LEN], Vec<u8>)>,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Signed by a key that is not configured.
    #[error(
        "signed by key {0}, which is not in `cluster.snapshot_public_keys` (not made by the \
         control plane, or its signing key was rotated without adding the new public key)"
    )]
    UnknownKey(String),
    /// The signature does not match the bytes.
    #[error("the signature does not verify (altered, or forged)")]
    Invalid,
}

impl SnapshotVerifier {
    /// From base64 public keys (`cluster.snapshot_public_keys`, comma or whitespace
    /// separated). `Err` names the position (from 1) of the first bad key.
    pub fn from_list(text: &str) -> Result<Self, (usize, KeyError)> {
        let mut keys = Vec::new();
        for (index, item) in split_list(text).enumerate() {
            let bytes = decode(item).map_err(|e| (index + 1, e))?;
            if bytes.len() != PUBLIC_KEY_LEN {
                return Err((index + 1, KeyError::PublicLength(bytes.len())));
            }
            keys.push((key_id(&bytes), bytes));
        }
        Ok(Self { keys })
    }

    /// No key: nothing verifies.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ids of the accepted keys, as hex.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| key_id_hex(id)).collect()
    }

    /// Adds the keys of `other` not listed yet.
    pub fn extend(&mut self, other: &SnapshotVerifier) {
        for key in &other.keys {
            if !self.keys.iter().any(|(id, _)| *id == key.0) {
                self.keys.push(key.clone());
            }
        }
    }

    /// Checks `signature` over `message` by the key `id`.
    pub fn verify(
        &self,
        id: &[u8; KEY_ID_LEN],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let (_, public) = self
            .keys
            .iter()
            .find(|(known, _)| known == id)
            .ok_or_else(|| SignatureError::UnknownKey(key_id_hex(id)))?;
        UnparsedPublicKey::new(&ED25519, public)
            .verify(message, signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// The items of a comma- or whitespace-separated list.
pub fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
}
