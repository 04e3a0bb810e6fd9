//! Unit tests: the local store, fingerprints, key rules, the capture and the service in
//! standalone mode.

use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::local::{LocalFound, LocalStore, Slot};
use super::*;

fn slot(n: u8) -> Slot {
    Slot {
        tenant: Uuid::from_u128(1),
        digest: [n; 32],
    }
}

fn fp(body: &str) -> Fingerprint {
    Fingerprint::of("POST", "/v1/chat/completions", body.as_bytes())
}

fn stored(body: &str) -> Stored {
    Stored {
        status: 200,
        content_type: "application/json".to_owned(),
        body: Bytes::from(body.to_owned()),
    }
}

fn claimed(found: LocalFound) -> u64 {
    match found {
        LocalFound::Claimed(token) => token,
        _ => panic!("expected a claim"),
    }
}

#[test]
fn a_completed_key_replays_and_refuses_another_body() {
    let store = LocalStore::default();
    let now = Instant::now();
    let token = claimed(store.claim(slot(1), fp("a"), now));
    assert!(store.complete(
        slot(1),
        token,
        stored("answer"),
        now + Duration::from_secs(60)
    ));
    match store.claim(slot(1), fp("a"), now) {
        LocalFound::Done(answer) => assert_eq!(answer.body.as_ref(), b"answer"),
        _ => panic!("expected the stored answer"),
    }
    assert!(matches!(
        store.claim(slot(1), fp("b"), now),
        LocalFound::Mismatch
    ));
    // Another key, or another tenant with the same key, is independent.
    claimed(store.claim(slot(2), fp("a"), now));
    let other_tenant = Slot {
        tenant: Uuid::from_u128(2),
        ..slot(1)
    };
    claimed(store.claim(other_tenant, fp("a"), now));
}

#[test]
fn a_pending_key_makes_duplicates_wait_and_other_bodies_mismatch() {
    let store = LocalStore::default();
    let now = Instant::now();
    let token = claimed(store.claim(slot(1), fp("a"), now));
    let LocalFound::Pending(signal) = store.claim(slot(1), fp("a"), now) else {
        panic!("expected pending");
    };
    assert!(matches!(
        store.claim(slot(1), fp("b"), now),
        LocalFound::Mismatch
    ));
    assert!(!signal.has_changed().unwrap_or(true), "not signalled yet");
    store.complete(slot(1), token, stored("x"), now + Duration::from_secs(60));
    // The sender is gone: waiters wake.
    assert!(signal.has_changed().is_err());
}

#[test]
fn a_released_key_runs_again_and_stale_tokens_do_nothing() {
    let store = LocalStore::default();
    let now = Instant::now();
    let first = claimed(store.claim(slot(1), fp("a"), now));
    let LocalFound::Pending(signal) = store.claim(slot(1), fp("a"), now) else {
        panic!("expected pending");
    };
    store.release(slot(1), first);
    assert!(signal.has_changed().is_err(), "waiters wake on release");
    assert_eq!(store.len(), 0);
    // Even another body may now use the key.
    let second = claimed(store.claim(slot(1), fp("b"), now));
    assert_ne!(first, second);
    // The first claim's token no longer completes or releases anything.
    assert!(!store.complete(slot(1), first, stored("x"), now + Duration::from_secs(60)));
    store.release(slot(1), first);
    assert!(matches!(
        store.claim(slot(1), fp("b"), now),
        LocalFound::Pending(_)
    ));
}

#[test]
fn stored_answers_expire() {
    let store = LocalStore::default();
    let now = Instant::now();
    let token = claimed(store.claim(slot(1), fp("a"), now));
    store.complete(slot(1), token, stored("x"), now + Duration::from_secs(10));
    assert!(matches!(
        store.claim(slot(1), fp("a"), now + Duration::from_secs(9)),
        LocalFound::Done(_)
    ));
    // Expired: the key is free again, for any body.
    claimed(store.claim(slot(1), fp("b"), now + Duration::from_secs(10)));
}

#[test]
fn the_store_is_bounded_by_entries_and_bytes() {
    let store = LocalStore::with_bounds(3, 1000);
    let now = Instant::now();
    let expires = now + Duration::from_secs(3600);
    for n in 0..5 {
        let token = claimed(store.claim(slot(n), fp("a"), now));
        store.complete(slot(n), token, stored("x"), expires);
    }
    assert_eq!(store.len(), 3, "the two oldest were evicted");
    claimed(store.claim(slot(0), fp("a"), now));
    assert!(matches!(
        store.claim(slot(4), fp("a"), now),
        LocalFound::Done(_)
    ));

    let store = LocalStore::with_bounds(100, 1000);
    for n in 0..3 {
        let token = claimed(store.claim(slot(n), fp("a"), now));
        store.complete(slot(n), token, stored(&"y".repeat(400)), expires);
    }
    // 1200 bytes > 1000: the oldest went.
    assert_eq!(store.len(), 2);
    claimed(store.claim(slot(0), fp("a"), now));
    // A single answer above the byte bound is still kept (it is the newest).
    let store = LocalStore::with_bounds(100, 10);
    let token = claimed(store.claim(slot(9), fp("a"), now));
    store.complete(slot(9), token, stored(&"z".repeat(50)), expires);
    assert!(matches!(
        store.claim(slot(9), fp("a"), now),
        LocalFound::Done(_)
    ));
}

#[test]
fn fingerprints_cover_route_and_exact_body() {
    let base = Fingerprint::of("POST", "/v1/chat/completions", b"{\"a\":1}");
    assert_eq!(
        base,
        Fingerprint::of("POST", "/v1/chat/completions", b"{\"a\":1}")
    );
    assert_ne!(
        base,
        Fingerprint::of("POST", "/v1/completions", b"{\"a\":1}")
    );
    assert_ne!(
        base,
        Fingerprint::of("POST", "/v1/chat/completions", b"{\"a\": 1}")
    );
    assert_ne!(
        base,
        Fingerprint::of("GET", "/v1/chat/completions", b"{\"a\":1}")
    );
    // The separator keeps the parts apart.
    assert_ne!(
        Fingerprint::of("POST", "/v1/x", b"y"),
        Fingerprint::of("POST", "/v1/xy", b"")
    );
    assert_eq!(base.hex().len(), 64);
}

#[test]
fn keys_are_one_to_255_visible_ascii_characters() {
    assert_eq!(parse_key(b"order-42:retry_1"), Some("order-42:retry_1"));
    assert!(parse_key(&[b'k'; 255]).is_some());
    for bad in [
        &b""[..],
        &[b'k'; 256][..],
        b"has space",
        b"tab\there",
        b"new\nline",
        "caf\u{e9}".as_bytes(),
        b"\x7f",
    ] {
        assert_eq!(parse_key(bad), None, "{bad:?}");
    }
}

#[test]
fn the_capture_keeps_complete_2xx_answers_within_the_limit() {
    let mut capture = Capture::new(10);
    capture.start(200, "text/event-stream");
    capture.push(&Bytes::from_static(b"data: 1\n\n"));
    capture.push(&Bytes::from_static(b"x"));
    let answer = capture.finish().unwrap();
    assert_eq!(answer.body.as_ref(), b"data: 1\n\nx");
    assert_eq!(answer.content_type, "text/event-stream");

    let mut capture = Capture::new(10);
    capture.start(200, "application/json");
    capture.push(&Bytes::from_static(b"0123456789"));
    assert_eq!(capture.finish().unwrap().body.as_ref(), b"0123456789");

    let mut capture = Capture::new(10);
    capture.start(200, "application/json");
    capture.push(&Bytes::from_static(b"0123456789A"));
    assert!(capture.finish().is_none(), "over the limit");

    let mut capture = Capture::new(10);
    capture.start(400, "application/json");
    capture.push(&Bytes::from_static(b"{}"));
    assert!(capture.finish().is_none(), "not a 2xx");

    assert!(Capture::new(10).finish().is_none(), "nothing was sent");
}

fn service() -> Idempotency {
    Idempotency::local(Settings {
        ttl: Duration::from_secs(60),
        max_response_bytes: 1024,
        redis_timeout: Duration::from_secs(1),
        counter_prefix: "unit".to_owned(),
    })
}

fn request(body: &str) -> Request {
    Request::new(Uuid::from_u128(7), Uuid::from_u128(8), "key-1", fp(body))
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn another_api_key_of_the_tenant_has_its_own_slot() {
    let service = service();
    let Begin::Execute(claim) = service.begin(&request("a"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    claim.complete(stored("answer")).await;
    // Same tenant, same header, same body, another API key: executes, never replays.
    let other = Request::new(Uuid::from_u128(7), Uuid::from_u128(9), "key-1", fp("a"));
    assert!(matches!(
        service.begin(&other, LONG, LONG).await,
        Begin::Execute(_)
    ));
}

#[tokio::test]
async fn the_service_executes_once_then_replays() {
    let service = service();
    let Begin::Execute(claim) = service.begin(&request("a"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    claim.complete(stored("answer")).await;
    match service.begin(&request("a"), LONG, LONG).await {
        Begin::Replay(answer) => assert_eq!(answer.body.as_ref(), b"answer"),
        _ => panic!("expected a replay"),
    }
    assert!(matches!(
        service.begin(&request("b"), LONG, LONG).await,
        Begin::Mismatch
    ));
}

#[tokio::test]
async fn a_concurrent_duplicate_waits_then_replays() {
    let service = service();
    let Begin::Execute(claim) = service.begin(&request("a"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    let waiter = tokio::spawn({
        let service = service.clone();
        async move { service.begin(&request("a"), LONG, LONG).await }
    });
    // The waiter is parked on the pending key (nothing else could end it).
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    claim.complete(stored("first")).await;
    match waiter.await.unwrap() {
        Begin::Replay(answer) => assert_eq!(answer.body.as_ref(), b"first"),
        _ => panic!("expected a replay"),
    }
}

#[tokio::test]
async fn a_waiter_runs_itself_when_the_first_fails() {
    let service = service();
    let Begin::Execute(claim) = service.begin(&request("a"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    let waiter = tokio::spawn({
        let service = service.clone();
        async move { service.begin(&request("a"), LONG, LONG).await }
    });
    tokio::task::yield_now().await;
    drop(claim);
    let Begin::Execute(second) = waiter.await.unwrap() else {
        panic!("expected the waiter to execute");
    };
    second.abandon();
    assert!(matches!(
        service.begin(&request("a"), LONG, LONG).await,
        Begin::Execute(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_at_its_deadline() {
    let service = service();
    let Begin::Execute(_claim) = service.begin(&request("a"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    let started = tokio::time::Instant::now();
    assert!(matches!(
        service
            .begin(&request("a"), LONG, Duration::from_secs(5))
            .await,
        Begin::InUse
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test]
async fn a_recorder_stores_only_clean_answers() {
    let service = service();
    let Begin::Execute(claim) = service.begin(&request("a"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    let mut recorder = Recorder::new(claim, service.max_response_bytes());
    recorder.capture.start(200, "application/json");
    recorder.capture.push(&Bytes::from_static(b"{\"ok\":1}"));
    // Not clean (e.g. the client left): released, the next one runs.
    recorder.finish(false).await;
    let Begin::Execute(claim) = service.begin(&request("a"), LONG, LONG).await else {
        panic!("expected to execute again");
    };
    let mut recorder = Recorder::new(claim, service.max_response_bytes());
    recorder.capture.start(200, "application/json");
    recorder.capture.push(&Bytes::from_static(b"{\"ok\":2}"));
    recorder.finish(true).await;
    match service.begin(&request("a"), LONG, LONG).await {
        Begin::Replay(answer) => assert_eq!(answer.body.as_ref(), b"{\"ok\":2}"),
        _ => panic!("expected a replay"),
    }
}
