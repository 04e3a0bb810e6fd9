//! `security.encryption_keys`: decoding the configured AES-256-GCM keys. Messages never
//! include key material.

use std::collections::BTreeSet;

use super::SecurityConfig;
use crate::secret::Secret;

/// Length of an AES-256 key in bytes.
pub(super) const KEY_LEN: usize = 32;

impl SecurityConfig {
    /// The configured encryption keys as `(version, key)`, sorted by version. Fails, naming
    /// every offending entry, when a version is 0 or listed twice or a key is not the base64
    /// of exactly 32 bytes. An empty list is `Ok(vec![])` (the control plane's validation
    /// requires at least one key).
    pub fn decoded_encryption_keys(&self) -> Result<Vec<(u32, [u8; KEY_LEN])>, String> {
        let mut problems = Vec::new();
        let mut keys = Vec::with_capacity(self.encryption_keys.len());
        let mut seen = BTreeSet::new();
        for (index, entry) in self.encryption_keys.iter().enumerate() {
            let path = format!("security.encryption_keys[{index}]");
            if entry.version == 0 {
                problems.push(format!("`{path}.version`: must be at least 1"));
            } else if !seen.insert(entry.version) {
                problems.push(format!(
                    "`{path}.version`: version {} is listed twice",
                    entry.version
                ));
            }
            match decode_key(&entry.key) {
                Ok(key) => keys.push((entry.version, key)),
                Err(message) => problems.push(format!("`{path}.key`: {message}")),
            }
        }
        if problems.is_empty() {
            keys.sort_by_key(|(version, _)| *version);
            Ok(keys)
        } else {
            Err(problems.join("; "))
        }
    }

    /// The version new values are encrypted with: `active_encryption_key`, else the highest
    /// version listed; `None` when no key is configured. Validation guarantees it names a
    /// listed key.
    pub fn active_key_version(&self) -> Option<u32> {
        self.active_encryption_key
            .or_else(|| self.encryption_keys.iter().map(|entry| entry.version).max())
    }
}

/// Decodes one configured key; the message says how to make a good one.
pub(super) fn decode_key(key: &Secret) -> Result<[u8; KEY_LEN], String> {
    let bytes = decode_base64(key.expose().trim()).ok_or_else(|| {
        "is not valid base64; generate a key with `openssl rand -base64 32`".to_owned()
    })?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "decodes to {} bytes; AES-256-GCM needs exactly {KEY_LEN} (generate a key with `openssl rand -base64 32`)",
            bytes.len()
        )
    })
}

/// Decodes base64 in the standard (`+/`) or URL-safe (`-_`) alphabet, with or without `=`
/// padding. `None` for anything else, including non-zero trailing bits.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    let padding = text.len() - unpadded.len();
    if padding > 2 || (padding > 0 && text.len() % 4 != 0) || unpadded.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(unpadded.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for byte in unpadded.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding, or the text is not canonical base64.
    (buffer == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        for (text, expected) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
            ("Zm9vYg", "foob"),
        ] {
            assert_eq!(
                decode_base64(text).as_deref(),
                Some(expected.as_bytes()),
                "{text}"
            );
        }
        assert_eq!(decode_base64("+/-_"), Some(vec![0xfb, 0xff, 0xbf]));
        for bad in ["Z", "Zg=", "Zg===", "Zh==", "Zm9v!", "Zm 9v", "=Zm9"] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_decode_sorted_and_problems_are_named() {
        let key = |version: u32, key: &str| super::super::EncryptionKeyConfig {
            version,
            key: Secret::new(key),
        };
        let good = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let mut security = SecurityConfig {
            encryption_keys: vec![key(2, good), key(1, good)],
            ..SecurityConfig::default()
        };
        let keys = security
            .decoded_encryption_keys()
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].0, 1);
        assert_eq!(keys[0].1[31], 31);
        assert_eq!(security.active_key_version(), Some(2));
        security.active_encryption_key = Some(1);
        assert_eq!(security.active_key_version(), Some(1));

        security.encryption_keys = vec![key(0, "c2hvcnQ="), key(3, good), key(3, "%%")];
        let message = security.decoded_encryption_keys().err().unwrap_or_default();
        assert!(
            message.contains("`security.encryption_keys[0].version`: must be at least 1"),
            "{message}"
        );
        assert!(
            message.contains("`security.encryption_keys[0].key`: decodes to 5 bytes"),
            "{message}"
        );
        assert!(
            message.contains("`security.encryption_keys[2].version`: version 3 is listed twice"),
            "{message}"
        );
        assert!(
            message.contains("`security.encryption_keys[2].key`: is not valid base64"),
            "{message}"
        );
        assert!(SecurityConfig::default().active_key_version().is_none());
    }
}
