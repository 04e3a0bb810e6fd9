//! Versioned AES-256-GCM sealing: provider credentials at rest (control plane) and the
//! snapshot on the bus and on the data plane's disk (both planes). Keys come from
//! `security.encryption_keys`; a sealed value names its key version, so rotation is adding a
//! key, making it active, and keeping the old one until nothing sealed with it remains.

use std::collections::BTreeMap;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

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

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl Vault {
    /// The vault of `security.encryption_keys` (active: `security.active_encryption_key`,
    /// else the highest version). Fails, saying what to set, when no key is configured.
    pub fn from_config(security: &crate::config::SecurityConfig) -> Result<Self, String> {
        let keys = security.decoded_encryption_keys()?;
        let active = security.active_key_version().ok_or_else(|| {
            "security.encryption_keys is empty: add a key (`openssl rand -base64 32`)".to_owned()
        })?;
        Self::new(&keys, active).map_err(|e| e.to_string())
    }

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
        SystemRandom::new()
            .fill(&mut nonce_bytes)
            .map_err(|_| VaultError::Config("the system random source failed".to_owned()))?;
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
}
