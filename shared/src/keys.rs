//! Virtual API keys `sk-<prefix>.<secret>`: strict parsing and the keyed hash.
//!
//! The prefix is public (it indexes the key in the snapshot and shows in listings); the
//! secret never leaves the client and the issuing response. Stored and published is only
//! `HMAC-SHA256(pepper, full key)`, compared in constant time. Keys are high-entropy, so a
//! slow password hash (argon2) would only add latency to every request and an easy DoS.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The scheme marker every virtual key starts with.
pub const KEY_SCHEME: &str = "sk-";
/// Longest accepted prefix.
pub const MAX_PREFIX_LEN: usize = 32;
/// Longest accepted secret.
pub const MAX_SECRET_LEN: usize = 256;

/// Why a presented key was rejected before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The value does not start with `sk-`.
    #[error("API keys start with `sk-`")]
    MissingScheme,
    /// No `.` separates prefix and secret.
    #[error("API keys have the form `sk-<prefix>.<secret>`")]
    MissingSeparator,
    /// The prefix is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    #[error("the key prefix must be 1-32 characters of A-Z, a-z, 0-9, `_` or `-`")]
    BadPrefix,
    /// The secret is empty, too long or has characters outside visible ASCII.
    #[error("the key secret must be 1-256 visible ASCII characters")]
    BadSecret,
}

/// A syntactically valid key, borrowed from the request header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    full: &'a str,
    prefix: &'a str,
}

impl<'a> ParsedKey<'a> {
    /// Parses `sk-<prefix>.<secret>` strictly; nothing is looked up for invalid input.
    pub fn parse(value: &'a str) -> Result<Self, KeyParseError> {
        let rest = value
            .strip_prefix(KEY_SCHEME)
            .ok_or(KeyParseError::MissingScheme)?;
        let (prefix, secret) = rest
            .split_once('.')
            .ok_or(KeyParseError::MissingSeparator)?;
        if !valid_prefix(prefix) {
            return Err(KeyParseError::BadPrefix);
        }
        if secret.is_empty()
            || secret.len() > MAX_SECRET_LEN
            || !secret.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(KeyParseError::BadSecret);
        }
        Ok(Self {
            full: value,
            prefix,
        })
    }

    /// The public prefix that indexes the key.
    pub fn prefix(&self) -> &'a str {
        self.prefix
    }

    /// The whole key, for hashing only.
    pub fn full(&self) -> &'a str {
        self.full
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedKey(sk-{}.[REDACTED])", self.prefix)
    }
}

/// Whether `prefix` is a valid key prefix (`[A-Za-z0-9_-]{1,32}`).
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Builds the full key string from its parts (bootstrap config gives prefix and secret).
pub fn format_key(prefix: &str, secret: &str) -> String {
    format!("{KEY_SCHEME}{prefix}.{secret}")
}

/// The 32-byte keyed hash of a full key. Serialized as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// Constant-time equality.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({}…)", hex::encode(&self.0[..4]))
    }
}

impl Serialize for KeyDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for KeyDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut bytes)
            .map_err(|_| serde::de::Error::custom("key digest must be 64 hex characters"))?;
        Ok(KeyDigest(bytes))
    }
}

/// HMAC-SHA256 keyed by the server pepper.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    /// A hasher for the given pepper. Both planes must use the same pepper in cluster mode.
    pub fn new(pepper: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty-keyed
        // MAC only to satisfy the type (never reached).
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper)
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        Self { mac }
    }

    /// The digest of a full key string.
    pub fn digest(&self, full_key: &str) -> KeyDigest {
        let mut mac = self.mac.clone();
        mac.update(full_key.as_bytes());
        KeyDigest(mac.finalize().into_bytes().into())
    }

    /// A value that proves which pepper this hasher uses without revealing it: the hex of
    /// the digest of a fixed label. The control plane puts it in the snapshot; a data plane
    /// with another pepper refuses the snapshot instead of refusing every key.
    pub fn check_value(&self) -> String {
        hex::encode(self.digest("omg-pepper-check-v1").0)
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_demo_key() {
        let key = ParsedKey::parse("sk-demo.my-secret").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(key.prefix(), "demo");
        assert_eq!(key.full(), "sk-demo.my-secret");
        assert_eq!(format!("{key:?}"), "ParsedKey(sk-demo.[REDACTED])");
    }

    #[test]
    fn rejects_malformed_keys() {
        assert_eq!(
            ParsedKey::parse("demo.secret"),
            Err(KeyParseError::MissingScheme)
        );
        assert_eq!(
            ParsedKey::parse("sk-demo"),
            Err(KeyParseError::MissingSeparator)
        );
        assert_eq!(
            ParsedKey::parse("sk-.secret"),
            Err(KeyParseError::BadPrefix)
        );
        assert_eq!(
            ParsedKey::parse("sk-de mo.secret"),
            Err(KeyParseError::BadPrefix)
        );
        assert_eq!(ParsedKey::parse("sk-demo."), Err(KeyParseError::BadSecret));
        assert_eq!(
            ParsedKey::parse("sk-demo.sec ret"),
            Err(KeyParseError::BadSecret)
        );
        assert_eq!(
            ParsedKey::parse("sk-demo.sécret"),
            Err(KeyParseError::BadSecret)
        );
        let long_prefix = format!("sk-{}.s", "a".repeat(33));
        assert_eq!(
            ParsedKey::parse(&long_prefix),
            Err(KeyParseError::BadPrefix)
        );
        let long_secret = format!("sk-a.{}", "s".repeat(257));
        assert_eq!(
            ParsedKey::parse(&long_secret),
            Err(KeyParseError::BadSecret)
        );
        // The secret may itself contain dots: only the first dot separates.
        assert!(ParsedKey::parse("sk-a.b.c").is_ok());
    }

    #[test]
    fn digest_depends_on_pepper_and_whole_key() {
        let hasher = KeyHasher::new(b"pepper-1");
        let digest = hasher.digest("sk-demo.my-secret");
        assert!(digest.ct_eq(&hasher.digest("sk-demo.my-secret")));
        assert!(!digest.ct_eq(&hasher.digest("sk-demo.my-secreT")));
        assert!(!digest.ct_eq(&hasher.digest("sk-demx.my-secret")));
        assert!(!digest.ct_eq(&KeyHasher::new(b"pepper-2").digest("sk-demo.my-secret")));
        let json = serde_json::to_string(&digest).unwrap_or_default();
        let back: KeyDigest = serde_json::from_str(&json).unwrap_or(KeyDigest([0; 32]));
        assert_eq!(back, digest);
        assert!(serde_json::from_str::<KeyDigest>("\"zz\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(input in ".{0,80}") {
            let _ = ParsedKey::parse(&input);
        }

        #[test]
        fn formatted_keys_parse(prefix in "[A-Za-z0-9_-]{1,32}", secret in "[!-~]{1,64}") {
            let full = format_key(&prefix, &secret);
            let parsed = ParsedKey::parse(&full);
            prop_assert!(parsed.is_ok());
            if let Ok(parsed) = parsed {
                prop_assert_eq!(parsed.prefix(), prefix.as_str());
            }
        }
    }
}
