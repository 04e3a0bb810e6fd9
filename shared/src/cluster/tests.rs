//! Envelope and identity tests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

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

fn signer() -> SnapshotSigner {
    let (private, _) = generate_signing_key().unwrap();
    SnapshotSigner::from_base64(&private).unwrap()
}

#[test]
fn snapshot_round_trips_across_key_rotation() {
    let signer = signer();
    let sealed = seal_snapshot(&vault(1), &signer, &snapshot(42)).unwrap();
    assert_eq!(sealed_version(&sealed).unwrap(), 42);
    let opened = open_snapshot(&vault(2), &signer.verifier(), &sealed).unwrap();
    assert_eq!(opened, snapshot(42));
}

#[test]
fn relabelled_or_altered_snapshots_are_refused() {
    let signer = signer();
    let verifier = signer.verifier();
    let sealed = seal_snapshot(&vault(1), &signer, &snapshot(7)).unwrap();
    // An old snapshot presented as a newer one: the header is signed.
    let mut relabelled = sealed.clone();
    relabelled[15] = 99;
    assert!(matches!(
        open_snapshot(&vault(1), &verifier, &relabelled),
        Err(EnvelopeError::Signature(SignatureError::Invalid))
    ));
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(matches!(
        open_snapshot(&vault(1), &verifier, &flipped),
        Err(EnvelopeError::Signature(SignatureError::Invalid))
    ));
    assert!(matches!(
        open_snapshot(&vault(1), &verifier, b"OMGSNAP"),
        Err(EnvelopeError::Format)
    ));
    assert!(matches!(
        open_snapshot(&vault(1), &verifier, b"{\"version\": 1, \"tenants\": []}"),
        Err(EnvelopeError::Format)
    ));
    let stranger = Vault::new(&[(1, [1u8; 32])], 1).unwrap();
    assert!(matches!(
        open_snapshot(&stranger, &verifier, &sealed),
        Err(EnvelopeError::Vault(_))
    ));
}

/// Finding 9: a holder of the encryption keys (any data plane) can seal a snapshot, but not
/// sign one with the control plane's key; the unsigned format of earlier versions is refused.
#[test]
fn snapshots_not_signed_by_a_listed_key_are_refused_before_decryption() {
    let control_plane = signer();
    let verifier = control_plane.verifier();
    let forged = seal_snapshot(&vault(1), &signer(), &snapshot(u64::MAX)).unwrap();
    assert!(matches!(
        open_snapshot(&vault(1), &verifier, &forged),
        Err(EnvelopeError::Signature(SignatureError::UnknownKey(_)))
    ));
    // The forger's key id on the control plane's key: the signature does not verify.
    let mut borrowed = forged.clone();
    borrowed[16..24].copy_from_slice(&control_plane.key_id());
    assert!(matches!(
        open_snapshot(&vault(1), &verifier, &borrowed),
        Err(EnvelopeError::Signature(SignatureError::Invalid))
    ));
    // The version-1 envelope: magic, version, vault-sealed JSON, no signature.
    let json = serde_json::to_vec(&snapshot(9)).unwrap();
    let mut header = UNSIGNED_SNAPSHOT_MAGIC.to_vec();
    header.extend_from_slice(&9u64.to_be_bytes());
    let mut unsigned = header.clone();
    unsigned.extend_from_slice(&vault(1).seal(&json, &header).unwrap());
    assert!(matches!(
        open_snapshot(&vault(1), &verifier, &unsigned),
        Err(EnvelopeError::Unsigned)
    ));
    assert!(matches!(
        sealed_version(&unsigned),
        Err(EnvelopeError::Unsigned)
    ));
}

#[test]
fn every_listed_public_key_verifies_during_a_rotation() {
    let (old, new) = (signer(), signer());
    let list = format!("{}, {}", old.public_key_base64(), new.public_key_base64());
    let both = SnapshotVerifier::from_list(&list).unwrap();
    assert_eq!(both.key_ids().len(), 2);
    for signer in [&old, &new] {
        let sealed = seal_snapshot(&vault(1), signer, &snapshot(3)).unwrap();
        assert!(open_snapshot(&vault(1), &both, &sealed).is_ok());
    }
    let only_new = SnapshotVerifier::from_list(&new.public_key_base64()).unwrap();
    let by_old = seal_snapshot(&vault(1), &old, &snapshot(4)).unwrap();
    assert!(open_snapshot(&vault(1), &only_new, &by_old).is_err());
    assert_eq!(
        SnapshotVerifier::from_list("AAAA, not base64!").unwrap_err(),
        (1, KeyError::PublicLength(3))
    );
    assert_eq!(
        SnapshotVerifier::from_list(&format!("{} ???", new.public_key_base64())).unwrap_err(),
        (2, KeyError::Base64)
    );
    assert!(matches!(
        SnapshotSigner::from_base64(&new.public_key_base64()),
        Err(KeyError::Pkcs8)
    ));
}

const NONCE: &str = "00112233445566778899aabbccddeeff";

fn identity(issued_at: i64) -> Identity {
    Identity {
        tenant_id: Uuid::from_u128(1),
        key_id: Uuid::from_u128(2),
        user_id: None,
        request_id: "req-1".to_owned(),
        method: "POST".to_owned(),
        path: "/v1/files".to_owned(),
        query: "purpose=batch&limit=2".to_owned(),
        nonce: NONCE.to_owned(),
        issued_at,
        audience: Audience::Controlplane,
        batch_id: None,
        body_sha256: None,
    }
}

const FILES: RequestLine<'static> = RequestLine {
    method: "POST",
    path: "/v1/files",
    query: "purpose=batch&limit=2",
    audience: Audience::Controlplane,
};

#[test]
fn identity_verifies_only_as_signed() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let header = sign_identity(secret, &identity(1_000));
    assert!(header.starts_with("v2."), "{header}");
    let ok = verify_identity(secret, Some(&header), FILES, 1_010, 30);
    assert_eq!(ok, Ok(identity(1_000)));

    assert_eq!(
        verify_identity(secret, None, FILES, 1_000, 30),
        Err(IdentityError::Missing)
    );
    assert_eq!(
        verify_identity(b"another secret", Some(&header), FILES, 1_000, 30),
        Err(IdentityError::BadSignature)
    );
    assert_eq!(
        verify_identity(secret, Some(&header), FILES, 1_031, 30),
        Err(IdentityError::Expired)
    );
    let delete = RequestLine {
        method: "DELETE",
        ..FILES
    };
    assert_eq!(
        verify_identity(secret, Some(&header), delete, 1_000, 30),
        Err(IdentityError::WrongRequest)
    );
    assert_eq!(
        verify_identity(secret, Some("v2.abc"), FILES, 1_000, 30),
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
            FILES,
            1_000,
            30
        ),
        Err(IdentityError::BadSignature)
    );
}

#[test]
fn identity_binds_the_raw_query_string() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let header = sign_identity(secret, &identity(1_000));
    // Altered, dropped, reordered or re-encoded: each is another query.
    for query in [
        "purpose=batch&limit=3",
        "",
        "limit=2&purpose=batch",
        "purpose=batch&limit=%32",
        "purpose=batch&limit=2&",
    ] {
        let request = RequestLine { query, ..FILES };
        assert_eq!(
            verify_identity(secret, Some(&header), request, 1_000, 30),
            Err(IdentityError::WrongQuery),
            "{query:?}"
        );
    }
    // No query signed: only an empty query verifies.
    let bare = sign_identity(
        secret,
        &Identity {
            query: String::new(),
            ..identity(1_000)
        },
    );
    let empty = RequestLine { query: "", ..FILES };
    assert!(verify_identity(secret, Some(&bare), empty, 1_000, 30).is_ok());
    assert_eq!(
        verify_identity(secret, Some(&bare), FILES, 1_000, 30),
        Err(IdentityError::WrongQuery)
    );
}

#[test]
fn identity_formats_other_than_v2_are_refused_with_the_plane_to_upgrade() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let header = sign_identity(secret, &identity(1_000));
    let (_, rest) = header.split_once('.').unwrap();
    // What a data plane of the previous release sends: `v1.`, no query, no nonce, signed
    // over "v1." + payload.
    let old_payload = URL_SAFE_NO_PAD.encode(
        br#"{"tenant_id":"00000000-0000-0000-0000-000000000001","key_id":"00000000-0000-0000-0000-000000000002","request_id":"r","method":"POST","path":"/v1/files","issued_at":1000}"#,
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(b"v1.");
    mac.update(old_payload.as_bytes());
    let old = format!(
        "v1.{old_payload}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let refused = verify_identity(secret, Some(&old), FILES, 1_000, 30).unwrap_err();
    assert_eq!(refused, IdentityError::OutdatedFormat(1));
    assert!(
        refused.to_string().contains("upgrade the data planes"),
        "{refused}"
    );
    // The v2 payload and signature relabelled v1: still refused as outdated, never parsed.
    assert_eq!(
        verify_identity(secret, Some(&format!("v1.{rest}")), FILES, 1_000, 30),
        Err(IdentityError::OutdatedFormat(1))
    );
    let newer = verify_identity(secret, Some(&format!("v3.{rest}")), FILES, 1_000, 30).unwrap_err();
    assert_eq!(newer, IdentityError::NewerFormat(3));
    assert!(
        newer.to_string().contains("upgrade the control plane"),
        "{newer}"
    );
    for garbage in ["v.x.y", "x2.a.b", "2.a.b", "v99999999999.a.b", "nodots"] {
        assert_eq!(
            verify_identity(secret, Some(garbage), FILES, 1_000, 30),
            Err(IdentityError::Malformed),
            "{garbage}"
        );
    }
}

#[test]
fn nonces_are_128_random_bits_and_required() {
    let a = new_nonce().unwrap();
    let b = new_nonce().unwrap();
    assert_eq!(a.len(), 32);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, b);
    let secret = b"0123456789abcdef0123456789abcdef";
    for nonce in ["", "short", &NONCE.to_uppercase(), &format!("{NONCE}00")] {
        let header = sign_identity(
            secret,
            &Identity {
                nonce: nonce.to_owned(),
                ..identity(1_000)
            },
        );
        assert_eq!(
            verify_identity(secret, Some(&header), FILES, 1_000, 30),
            Err(IdentityError::Malformed),
            "{nonce:?}"
        );
    }
}

#[test]
fn bus_names_derive_from_the_configured_keys() {
    let keys = BusKeys::new("omg:snapshot", "omg:usage");
    assert_eq!(keys.snapshot_version, "omg:snapshot:version");
    assert_eq!(keys.snapshot_channel, "omg:snapshot:published");
}

#[test]
fn an_identity_is_accepted_only_by_the_plane_it_is_addressed_to() {
    let now = 1_000;
    let mut for_dataplane = identity(now);
    for_dataplane.audience = Audience::Dataplane;
    let header = sign_identity(b"s3cr3t", &for_dataplane);
    assert_eq!(
        verify_identity(b"s3cr3t", Some(&header), FILES, now, 60),
        Err(IdentityError::WrongAudience)
    );
    let at_dataplane = RequestLine {
        audience: Audience::Dataplane,
        ..FILES
    };
    assert!(verify_identity(b"s3cr3t", Some(&header), at_dataplane, now, 60).is_ok());
    // An identity of an earlier release carries no audience: it is for the control plane.
    let mut json = serde_json::to_value(identity(now)).unwrap();
    json.as_object_mut().unwrap().remove("audience");
    let legacy: Identity = serde_json::from_value(json).unwrap();
    assert_eq!(legacy.audience, Audience::Controlplane);
}

#[test]
fn a_signed_body_digest_must_match_the_body() {
    let mut signed = identity(1_000);
    assert_eq!(body_matches(&signed, b"anything", false), Ok(()));
    assert_eq!(
        body_matches(&signed, b"anything", true),
        Err(IdentityError::WrongBody)
    );
    signed.body_sha256 = Some(body_digest(b"{\"model\":\"m\"}"));
    assert_eq!(body_matches(&signed, b"{\"model\":\"m\"}", true), Ok(()));
    assert_eq!(
        body_matches(&signed, b"{\"model\":\"x\"}", false),
        Err(IdentityError::WrongBody)
    );
}

#[test]
fn a_batch_lines_identity_verifies_at_a_data_plane_for_its_body_only() {
    let body = br#"{"model":"m","messages":[]}"#;
    let line = BatchLine {
        tenant_id: Uuid::now_v7(),
        key_id: Uuid::now_v7(),
        user_id: None,
        batch_id: "batch_1",
        request_id: "batch_1-7",
        method: "POST",
        path: "/v1/chat/completions",
        body,
    };
    let identity = Identity::for_batch_line(&line, 1_000).unwrap();
    let header = sign_identity(b"s3cr3t", &identity);
    let at_dataplane = RequestLine {
        method: "POST",
        path: "/v1/chat/completions",
        query: "",
        audience: Audience::Dataplane,
    };
    let verified = verify_identity(b"s3cr3t", Some(&header), at_dataplane, 1_010, 60).unwrap();
    assert_eq!(verified.batch_id.as_deref(), Some("batch_1"));
    assert_eq!(verified.key_id, line.key_id);
    assert_eq!(body_matches(&verified, body, true), Ok(()));
    assert_eq!(
        body_matches(&verified, b"{}", true),
        Err(IdentityError::WrongBody)
    );
    // Each send is a new identity (a new nonce).
    assert_ne!(
        Identity::for_batch_line(&line, 1_000).unwrap().nonce,
        identity.nonce
    );
}
