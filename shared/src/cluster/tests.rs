//! Envelope and identity tests.

use super::*;

fn vault(active: u32) -> Vault {
    Vault::new(&[(1, [7u8; 32]), (2, [9u8; 32])], active).unwrap()
}

fn snapshot(version: u64) -> Snapshot {
    let mut snapshot: Snapshot =
        serde_json::from_str(include_str!("../../tests/fixtures/snapshot-v1.json")).unwrap();
    snapshot.version = version;
    snapshot
}

#[test]
fn snapshot_round_trips_across_key_rotation() {
    let sealed = seal_snapshot(&vault(1), &snapshot(42)).unwrap();
    assert_eq!(sealed_version(&sealed).unwrap(), 42);
    let opened = open_snapshot(&vault(2), &sealed).unwrap();
    assert_eq!(opened, snapshot(42));
}

#[test]
fn relabelled_or_altered_snapshots_are_refused() {
    let sealed = seal_snapshot(&vault(1), &snapshot(7)).unwrap();
    // An old snapshot presented as a newer one: the header is authenticated.
    let mut relabelled = sealed.clone();
    relabelled[15] = 99;
    assert!(matches!(
        open_snapshot(&vault(1), &relabelled),
        Err(EnvelopeError::Vault(VaultError::Authentication))
    ));
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(open_snapshot(&vault(1), &flipped).is_err());
    assert!(matches!(
        open_snapshot(&vault(1), b"OMGSNAP"),
        Err(EnvelopeError::Format)
    ));
    assert!(matches!(
        open_snapshot(&vault(1), b"{\"version\": 1, \"tenants\": []}"),
        Err(EnvelopeError::Format)
    ));
    let stranger = Vault::new(&[(1, [1u8; 32])], 1).unwrap();
    assert!(open_snapshot(&stranger, &sealed).is_err());
}

fn identity(issued_at: i64) -> Identity {
    Identity {
        tenant_id: Uuid::from_u128(1),
        key_id: Uuid::from_u128(2),
        user_id: None,
        request_id: "req-1".to_owned(),
        method: "POST".to_owned(),
        path: "/v1/files".to_owned(),
        issued_at,
    }
}

#[test]
fn identity_verifies_only_as_signed() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let header = sign_identity(secret, &identity(1_000));
    let ok = verify_identity(secret, Some(&header), "POST", "/v1/files", 1_010, 30);
    assert_eq!(ok, Ok(identity(1_000)));

    assert_eq!(
        verify_identity(secret, None, "POST", "/v1/files", 1_000, 30),
        Err(IdentityError::Missing)
    );
    assert_eq!(
        verify_identity(
            b"another secret",
            Some(&header),
            "POST",
            "/v1/files",
            1_000,
            30
        ),
        Err(IdentityError::BadSignature)
    );
    assert_eq!(
        verify_identity(secret, Some(&header), "POST", "/v1/files", 1_031, 30),
        Err(IdentityError::Expired)
    );
    assert_eq!(
        verify_identity(secret, Some(&header), "DELETE", "/v1/files", 1_000, 30),
        Err(IdentityError::WrongRequest)
    );
    assert_eq!(
        verify_identity(secret, Some("v1.abc"), "POST", "/v1/files", 1_000, 30),
        Err(IdentityError::Malformed)
    );
    // A payload swapped under the original signature.
    let other = sign_identity(
        secret,
        &Identity {
            tenant_id: Uuid::from_u128(9),
            ..identity(1_000)
        },
    );
    let (_, signature) = header.rsplit_once('.').unwrap();
    let (payload, _) = other.rsplit_once('.').unwrap();
    assert_eq!(
        verify_identity(
            secret,
            Some(&format!("{payload}.{signature}")),
            "POST",
            "/v1/files",
            1_000,
            30
        ),
        Err(IdentityError::BadSignature)
    );
}

#[test]
fn bus_names_derive_from_the_configured_keys() {
    let keys = BusKeys::new("omg:snapshot", "omg:usage");
    assert_eq!(keys.snapshot_version, "omg:snapshot:version");
    assert_eq!(keys.snapshot_channel, "omg:snapshot:published");
}
