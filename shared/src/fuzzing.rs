//! Fuzz entry points of the shared crate: the bytes a client or an operator hands it.
//!
//! Each function takes arbitrary bytes, must never panic on its own, and asserts the
//! invariants it can check; a failed assertion is a finding. The fuzz targets
//! (`fuzz/fuzz_targets/`, cargo-fuzz) are one-line calls of these, and this crate's tests
//! replay every committed corpus file (`fuzz/corpus/<target>/`) through them, so a crash
//! found once stays a test. Compiled only for tests and with the `fuzzing` feature.

#![allow(clippy::panic)]

use crate::config::{load_layered, GatewayConfig, Mode};
use crate::keys::{format_key, valid_prefix, KeyHasher, ParsedKey, KEY_SCHEME};
use crate::snapshot::Snapshot;

/// Virtual key parsing: a key that parses re-formats to the same string, its prefix is
/// valid, its `Debug` form never shows the secret, and its digest is stable.
pub fn keys(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(key) = ParsedKey::parse(text) else {
        return;
    };
    let prefix = key.prefix();
    assert!(valid_prefix(prefix), "accepted prefix {prefix:?}");
    assert_eq!(key.full(), text);
    let secret = text
        .get(KEY_SCHEME.len() + prefix.len() + 1..)
        .unwrap_or_default();
    assert!(!secret.is_empty(), "accepted an empty secret");
    assert_eq!(format_key(prefix, secret), text, "does not re-format");
    assert_eq!(
        format!("{key:?}"),
        format!("ParsedKey(sk-{prefix}.[REDACTED])")
    );
    let hasher = KeyHasher::new(b"fuzz-pepper");
    assert!(hasher.digest(key.full()).ct_eq(&hasher.digest(text)));
}

/// The config loader: YAML text (with `${NAME}` references) → validated config, with both
/// planes' rules, then the standalone snapshot built from it. Lines `#!ROUTER_<KEY>=<value>`
/// (YAML comments) of the input are applied as `ROUTER_*` overrides; `${NAME}` resolves for
/// names starting with `SET` and is unset otherwise. A snapshot that builds must survive its
/// JSON round trip (the bus and the disk cache carry it so).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("#!"))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let env = |name: &str| name.starts_with("SET").then(|| format!("value-of-{name}"));
    for mode in [Mode::Dataplane, Mode::Controlplane] {
        if let Ok(config) = load_layered(text, &env, &overrides, mode) {
            snapshot_round_trip(&config);
        }
    }
}

fn snapshot_round_trip(config: &GatewayConfig) {
    let hasher = KeyHasher::new(b"fuzz-pepper");
    let Ok(snapshot) = Snapshot::from_config(config, &hasher, 1, 0) else {
        return;
    };
    let bytes = match serde_json::to_vec(&snapshot) {
        Ok(bytes) => bytes,
        Err(error) => panic!("the snapshot does not serialize: {error}"),
    };
    match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(back) => assert!(
            back == snapshot,
            "the snapshot changed in its JSON round trip"
        ),
        Err(error) => panic!("the snapshot does not parse back: {error}"),
    }
}

#[cfg(test)]
pub(crate) mod replay {
    //! Replays committed corpora (`fuzz/corpus/<target>/`) through the entry points.

    /// Runs `entry` on every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`;
    /// the number of files.
    pub(crate) fn corpus(target: &str, entry: fn(&[u8])) -> usize {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
        let mut files: Vec<_> = ["corpus", "regressions"]
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(format!("{root}/{dir}/{target}"))
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_else(|_| Vec::new())
            })
            .collect();
        files.sort();
        for path in &files {
            let bytes = std::fs::read(path).unwrap_or_default();
            let outcome = std::panic::catch_unwind(|| entry(&bytes));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
        files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::replay::corpus;

    #[test]
    fn the_keys_corpus_replays() {
        assert!(corpus("keys", super::keys) > 0, "no corpus");
    }

    #[test]
    fn the_config_corpus_replays() {
        assert!(corpus("config", super::config) > 0, "no corpus");
    }
}
