//! Secrets at rest and in sessions: AES-256-GCM with versioned keys (provider credentials),
//! argon2id (passwords), random opaque tokens and their SHA-256 (refresh tokens).

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::{Digest, Sha256};

/// Versioned AES-256-GCM keys. A sealed value is `version (u32 BE) || nonce || ciphertext+tag`,
/// so old values stay readable after a new key becomes active (rotation by version).
pub struct Vault {
    keys: BTreeMap<u32, LessSafeKey>,
    active: u32,
}

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The value is shorter than its header or was made with a key version not configured.
    #[error("sealed value uses key version {0}, which is not in security.encryption_keys")]
    UnknownVersion(u32),
    /// Truncated input.
    #[error("sealed value is truncated")]
    Truncated,
    /// Wrong key, wrong associated data, or tampered bytes.
    #[error("sealed value failed authentication (wrong key or tampered)")]
    Authentication,
    /// No usable key.
    #[error("invalid encryption key configuration: {0}")]
    Config(String),
}

impl Vault {
    /// Builds the vault from `(version, key bytes)` and the active version.
    pub fn new(keys: &[(u32, [u8; 32])], active: u32) -> Result<Self, VaultError> {
        let mut map = BTreeMap::new();
        for (version, bytes) in keys {
            let key = UnboundKey::new(&AES_256_GCM, bytes)
                .map_err(|_| VaultError::Config(format!("key version {version} is unusable")))?;
            map.insert(*version, LessSafeKey::new(key));
        }
        if !map.contains_key(&active) {
            return Err(VaultError::Config(format!(
                "active key version {active} is not configured"
            )));
        }
        Ok(Self { keys: map, active })
    }

    /// The version new values are sealed with.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// Encrypts `plaintext`, binding it to `context` (e.g. the row id) as associated data.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, VaultError> {
        let key = self
            .keys
            .get(&self.active)
            .ok_or(VaultError::UnknownVersion(self.active))?;
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce_bytes);
        let mut buffer = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(context),
            &mut buffer,
        )
        .map_err(|_| VaultError::Authentication)?;
        let mut out = Vec::with_capacity(4 + NONCE_LEN + buffer.len());
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buffer);
        Ok(out)
    }

    /// Decrypts a value made by [`Vault::seal`] with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, VaultError> {
        if sealed.len() < 4 + NONCE_LEN {
            return Err(VaultError::Truncated);
        }
        let (version, rest) = sealed.split_at(4);
        let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
        let key = self
            .keys
            .get(&version)
            .ok_or(VaultError::UnknownVersion(version))?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Truncated)?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| VaultError::Authentication)?;
        Ok(plain.to_vec())
    }

    /// The key version a sealed value was made with.
    pub fn version_of(sealed: &[u8]) -> Option<u32> {
        let head = sealed.get(..4)?;
        Some(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    }
}

/// Hashes a password with argon2id (default parameters: 19 MiB, 2 passes). CPU-heavy: call
/// from `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Checks a password against a PHC string. CPU-heavy: call from `spawn_blocking`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A PHC string of a random password, verified against when the account does not exist so
/// that unknown emails take as long as wrong passwords.
pub fn decoy_hash() -> String {
    hash_password(&random_token()).unwrap_or_default()
}

/// 256 random bits, base64url without padding (refresh tokens, generated key secrets).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a token (what is stored instead of the token).
pub fn sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(active: u32) -> Vault {
        Vault::new(&[(1, [7u8; 32]), (2, [9u8; 32])], active).unwrap()
    }

    #[test]
    fn seals_and_opens_across_rotation() {
        let old = vault(1);
        let sealed = old.seal(b"sk-provider-secret", b"row-1").unwrap();
        assert_eq!(Vault::version_of(&sealed), Some(1));
        let rotated = vault(2);
        assert_eq!(
            rotated.open(&sealed, b"row-1").unwrap(),
            b"sk-provider-secret"
        );
        let resealed = rotated.seal(b"sk-provider-secret", b"row-1").unwrap();
        assert_eq!(Vault::version_of(&resealed), Some(2));
    }

    #[test]
    fn refuses_other_context_tampering_and_unknown_versions() {
        let v = vault(1);
        let mut sealed = v.seal(b"secret", b"row-1").unwrap();
        assert!(matches!(
            v.open(&sealed, b"row-2"),
            Err(VaultError::Authentication)
        ));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            v.open(&sealed, b"row-1"),
            Err(VaultError::Authentication)
        ));
        let only_two = Vault::new(&[(2, [9u8; 32])], 2).unwrap();
        let sealed = v.seal(b"secret", b"row-1").unwrap();
        assert!(matches!(
            only_two.open(&sealed, b"row-1"),
            Err(VaultError::UnknownVersion(1))
        ));
        assert!(matches!(v.open(b"abc", b""), Err(VaultError::Truncated)));
    }

    #[test]
    fn passwords_round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a phc string"));
    }
}
