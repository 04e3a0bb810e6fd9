//! Tests of the sealed format: known answers computed independently (Python `cryptography`),
//! round trips over sizes and splits, and every way a sealed file can be damaged.

use std::convert::Infallible;

use futures_util::stream;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;

const KEY: [u8; 32] = [7; 32];
const OTHER_KEY: [u8; 32] = [8; 32];

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Seals `plain` pushed in pieces of `piece` bytes.
fn seal(key: &[u8; 32], plain: &[u8], piece: usize) -> Vec<u8> {
    let mut sealer = Sealer::new(key).unwrap();
    let mut out = Vec::new();
    for part in plain.chunks(piece.max(1)) {
        sealer
            .push(part)
            .iter()
            .for_each(|b| out.extend_from_slice(b));
    }
    out.extend_from_slice(&sealer.finish());
    out
}

/// Opens `sealed` pushed in pieces cut at `cuts`.
fn open_split(key: &[u8; 32], sealed: &[u8], cuts: &[usize]) -> Result<Vec<u8>, SealError> {
    let mut opener = Opener::new(key);
    let mut plain = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([&sealed.len()]) {
        let cut = cut.clamp(at, sealed.len());
        opener
            .push(&sealed[at..cut])?
            .iter()
            .for_each(|b| plain.extend_from_slice(b));
        at = cut;
    }
    plain.extend_from_slice(&opener.finish()?);
    Ok(plain)
}

fn open(key: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    open_split(key, sealed, &[])
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

async fn collect<S: Stream<Item = Result<Bytes, SealError>>>(s: S) -> Result<Vec<u8>, SealError> {
    let mut s = Box::pin(s);
    let mut out = Vec::new();
    while let Some(piece) = s.next().await {
        let piece = piece?;
        assert!(!piece.is_empty(), "streams hand out no empty pieces");
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// The output of a sealer with a fixed prefix (tests only).
fn seal_with_prefix(key: &[u8; 32], prefix: [u8; 7], plain: &[u8]) -> Vec<u8> {
    let mut sealer = Sealer::with_prefix(key, prefix).unwrap();
    let mut out: Vec<u8> = sealer.push(plain).concat();
    out.extend_from_slice(&sealer.finish());
    out
}

#[test]
fn the_format_matches_an_independent_implementation() {
    // Computed with Python `cryptography`'s AESGCM from the format in the module doc.
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let prefix = [1, 2, 3, 4, 5, 6, 7];
    assert_eq!(
        hex::encode(seal_with_prefix(&key, prefix, b"hello, sealed world")),
        "4f4d475345414c310102030405060710ac3868a5d17faced86542ace04ed18bbca286ebc2ba5375b953215f387ec45951749"
    );
    assert_eq!(
        hex::encode(seal_with_prefix(&key, prefix, b"")),
        "4f4d475345414c3101020304050607acb561bd0c34ee15e82973476a85df02"
    );
    let two_and_a_bit = seal_with_prefix(&key, prefix, &plaintext(2 * CHUNK + 3));
    assert_eq!(two_and_a_bit.len(), 131_138);
    assert_eq!(
        hex::encode(Sha256::digest(&two_and_a_bit)),
        "0709e120e3494b06cdf8f68d20186b6294ab773c2b400b56934dbc91db6fa547"
    );
    assert_eq!(
        open(&key, &two_and_a_bit).unwrap(),
        plaintext(2 * CHUNK + 3)
    );
}

#[test]
fn sizes_round_trip_and_match_sealed_len() {
    for len in [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        2 * CHUNK,
        3 * CHUNK,
        3 * CHUNK + 17,
    ] {
        let plain = plaintext(len);
        for piece in [len.max(1), 1000, CHUNK, CHUNK + 1] {
            let sealed = seal(&KEY, &plain, piece);
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "{len}");
            assert_eq!(plain_len(sealed.len() as u64), Some(len as u64), "{len}");
            assert_eq!(open(&KEY, &sealed).unwrap(), plain, "{len} in {piece}");
            let cuts: Vec<usize> = (0..sealed.len()).step_by(4099).collect();
            assert_eq!(open_split(&KEY, &sealed, &cuts).unwrap(), plain);
        }
    }
}

#[test]
fn sealed_len_counts_one_tag_per_chunk() {
    let c = CHUNK as u64;
    assert_eq!(sealed_len(0), 15 + 16);
    assert_eq!(sealed_len(1), 15 + 1 + 16);
    assert_eq!(sealed_len(c), 15 + c + 16);
    assert_eq!(sealed_len(c + 1), 15 + c + 1 + 32);
    assert_eq!(sealed_len(3 * c), 15 + 3 * c + 48);
    assert_eq!(sealed_len(u64::MAX), u64::MAX);
    if let Some(plain) = plain_len(u64::MAX) {
        assert_eq!(exact_sealed_len(plain), Some(u64::MAX));
    }
    let big = u64::MAX / 2;
    assert_eq!(plain_len(sealed_len(big)), Some(big));
    for impossible in [0, 14, 15, 30, 15 + c + 17, 15 + c + 16 + 16] {
        assert_eq!(plain_len(impossible), None, "{impossible}");
    }
}

#[test]
fn each_file_draws_its_own_prefix() {
    let a = seal(&KEY, b"same", 4);
    let b = seal(&KEY, b"same", 4);
    assert_eq!(&a[..8], MAGIC);
    assert_ne!(a[8..15], b[8..15]);
    assert_ne!(a, b);
}

#[test]
fn the_sealer_holds_a_full_chunk_until_it_knows_it_is_not_the_last() {
    let mut sealer = Sealer::new(&KEY).unwrap();
    let out = sealer.push(&plaintext(CHUNK));
    assert_eq!(out.len(), 1, "only the header");
    assert_eq!(out[0].len(), HEADER_LEN);
    let out = sealer.push(b"x");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), SEALED_CHUNK);
    assert_eq!(sealer.finish().len(), 1 + TAG_LEN);
    assert!(sealer_pending_is_bounded());
}

fn sealer_pending_is_bounded() -> bool {
    let mut sealer = Sealer::new(&KEY).unwrap();
    let out = sealer.push(&plaintext(5 * CHUNK + 3));
    out.len() == 6 && sealer.pending.len() == 3 && sealer.pending.capacity() <= CHUNK + TAG_LEN
}

#[test]
fn a_flipped_bit_anywhere_is_detected() {
    for len in [0, 100, CHUNK, 2 * CHUNK + 5] {
        let sealed = seal(&KEY, &plaintext(len), CHUNK);
        let step = if sealed.len() < 300 { 1 } else { 997 };
        for at in (0..sealed.len()).step_by(step).chain([sealed.len() - 1]) {
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            let expected = if at < MAGIC.len() {
                SealError::NotSealed
            } else {
                SealError::Tampered
            };
            assert_eq!(open(&KEY, &bad).unwrap_err(), expected, "{len} at {at}");
        }
    }
}

#[test]
fn a_dropped_last_chunk_is_truncation() {
    for len in [CHUNK + 5, 3 * CHUNK] {
        let sealed = seal(&KEY, &plaintext(len), 777);
        let last = (sealed.len() - HEADER_LEN) % SEALED_CHUNK;
        let last = if last == 0 { SEALED_CHUNK } else { last };
        let cut = &sealed[..sealed.len() - last];
        assert_eq!(open(&KEY, cut).unwrap_err(), SealError::Truncated, "{len}");
    }
    for cut in [0, 3, 8, HEADER_LEN, HEADER_LEN + TAG_LEN - 1] {
        let sealed = seal(&KEY, b"", 1);
        assert_eq!(
            open(&KEY, &sealed[..cut]).unwrap_err(),
            SealError::Truncated
        );
    }
    // Cut inside a chunk: indistinguishable from a changed short chunk.
    let sealed = seal(&KEY, &plaintext(CHUNK + 5), 777);
    assert_eq!(
        open(&KEY, &sealed[..HEADER_LEN + 100]).unwrap_err(),
        SealError::Tampered
    );
}

#[test]
fn chunks_spliced_between_files_or_reordered_are_tampering() {
    let a = seal(&KEY, &plaintext(3 * CHUNK), CHUNK);
    let b = seal(&KEY, &plaintext(3 * CHUNK), CHUNK);
    let chunk = |f: &[u8], i: usize| f[HEADER_LEN + i * SEALED_CHUNK..][..SEALED_CHUNK].to_vec();
    let header = |f: &[u8]| f[..HEADER_LEN].to_vec();

    let spliced = [header(&a), chunk(&a, 0), chunk(&b, 1), chunk(&a, 2)].concat();
    assert_eq!(open(&KEY, &spliced).unwrap_err(), SealError::Tampered);
    let other_header = [header(&b), chunk(&a, 0), chunk(&a, 1), chunk(&a, 2)].concat();
    assert_eq!(open(&KEY, &other_header).unwrap_err(), SealError::Tampered);
    let swapped = [header(&a), chunk(&a, 1), chunk(&a, 0), chunk(&a, 2)].concat();
    assert_eq!(open(&KEY, &swapped).unwrap_err(), SealError::Tampered);
    let repeated = [header(&a), chunk(&a, 0), chunk(&a, 0), chunk(&a, 2)].concat();
    assert_eq!(open(&KEY, &repeated).unwrap_err(), SealError::Tampered);
    let whole = [header(&a), chunk(&a, 0), chunk(&a, 1), chunk(&a, 2)].concat();
    assert_eq!(open(&KEY, &whole).unwrap(), plaintext(3 * CHUNK));
}

#[test]
fn a_wrong_key_is_tampering() {
    for len in [0, 10, CHUNK + 10] {
        let sealed = seal(&KEY, &plaintext(len), 1 << 20);
        assert_eq!(open(&OTHER_KEY, &sealed).unwrap_err(), SealError::Tampered);
    }
}

#[test]
fn bytes_after_the_last_chunk_are_refused() {
    let mut sealed = seal(&KEY, &plaintext(2 * CHUNK), CHUNK);
    sealed.push(0);
    assert_eq!(open(&KEY, &sealed).unwrap_err(), SealError::TrailingData);
    // After a short last chunk the boundary is unknown: the last chunk fails to open.
    let mut sealed = seal(&KEY, b"short", 5);
    sealed.extend_from_slice(b"more");
    assert_eq!(open(&KEY, &sealed).unwrap_err(), SealError::Tampered);
}

#[test]
fn plaintext_is_not_a_sealed_file() {
    let mut opener = Opener::new(&KEY);
    assert_eq!(
        opener.push(b"{\"custom_id\":").unwrap_err(),
        SealError::NotSealed
    );
    assert_eq!(
        opener.push(MAGIC).unwrap_err(),
        SealError::NotSealed,
        "errors are final"
    );
    assert_eq!(opener.finish().unwrap_err(), SealError::NotSealed);
    let mut opener = Opener::new(&KEY);
    assert!(opener.push(b"OMG").unwrap().is_empty());
    assert_eq!(opener.push(b"x").unwrap_err(), SealError::NotSealed);
}

#[test]
fn the_opener_keeps_at_most_one_sealed_chunk() {
    let sealed = seal(&KEY, &plaintext(5 * CHUNK + 1), CHUNK);
    let mut opener = Opener::new(&KEY);
    let out = opener.push(&sealed).unwrap();
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|b| b.len() == CHUNK));
    assert_eq!(opener.pending.len(), 1 + TAG_LEN);
    assert!(opener.pending.capacity() <= SEALED_CHUNK);
    assert_eq!(opener.finish().unwrap().len(), 1);
}

#[test]
fn a_spent_counter_stops_sealing_instead_of_reusing_a_nonce() {
    let mut sealer = Sealer::new(&KEY).unwrap();
    sealer.counter = Some(u32::MAX);
    let out = sealer.push(&plaintext(3 * CHUNK));
    assert_eq!(out.len(), 2, "the header and the chunk numbered u32::MAX");
    assert_eq!(sealer.counter, None);
    assert_eq!(sealer.feed(b"more").unwrap_err(), SealError::TooLarge);
    assert_eq!(Codec::end(sealer).unwrap_err(), SealError::TooLarge);

    let mut sealer = Sealer::new(&KEY).unwrap();
    sealer.counter = Some(u32::MAX);
    sealer.push(&plaintext(3 * CHUNK));
    assert!(
        sealer.finish().is_empty(),
        "no last chunk: the output opens as Truncated"
    );
}

#[test]
fn streams_seal_and_open() {
    let plain = plaintext(3 * CHUNK + 999);
    let pieces: Vec<Result<Bytes, Infallible>> = plain
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let sealed = run(collect(seal_stream(KEY, stream::iter(pieces)))).unwrap();
    assert_eq!(sealed.len() as u64, sealed_len(plain.len() as u64));
    let back = stream::iter(
        sealed
            .chunks(3333)
            .map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    assert_eq!(run(collect(open_stream(KEY, back))).unwrap(), plain);

    let empty = run(collect(seal_stream(
        KEY,
        stream::empty::<Result<Bytes, Infallible>>(),
    )))
    .unwrap();
    assert_eq!(empty.len() as u64, sealed_len(0));
    let opened = open_stream(KEY, stream::iter([Ok::<_, Infallible>(Bytes::from(empty))]));
    assert_eq!(run(collect(opened)).unwrap(), b"");
}

#[test]
fn stream_errors_end_the_stream() {
    let failing = stream::iter([Ok(Bytes::from_static(b"abc")), Err("disk on fire")]);
    let mut sealing = Box::pin(seal_stream(KEY, failing));
    run(async {
        assert_eq!(sealing.next().await.unwrap().unwrap().len(), HEADER_LEN);
        assert_eq!(
            sealing.next().await.unwrap().unwrap_err(),
            SealError::Source("disk on fire".into())
        );
        assert!(sealing.next().await.is_none());
    });

    let mut sealed = seal(&KEY, &plaintext(2 * CHUNK + 1), CHUNK);
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let pieces = vec![Ok::<_, Infallible>(Bytes::from(sealed))];
    let mut opening = Box::pin(open_stream(OTHER_KEY, stream::iter(pieces.clone())));
    run(async {
        assert_eq!(
            opening.next().await.unwrap().unwrap_err(),
            SealError::Tampered
        );
        assert!(opening.next().await.is_none());
    });
    let mut opening = Box::pin(open_stream(KEY, stream::iter(pieces)));
    run(async {
        // Chunks that authenticate come out; the damaged last one ends the stream.
        assert_eq!(opening.next().await.unwrap().unwrap().len(), CHUNK);
        assert_eq!(opening.next().await.unwrap().unwrap().len(), CHUNK);
        assert_eq!(
            opening.next().await.unwrap().unwrap_err(),
            SealError::Tampered
        );
        assert!(opening.next().await.is_none());
    });
}

/// Cut points for a buffer of `len` bytes.
fn cuts_in(len: usize, cuts: &[prop::sample::Index]) -> Vec<usize> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
    at.sort_unstable();
    at
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_size_and_splits_round_trip(
        len in prop_oneof![0..300usize, (CHUNK - 300)..(CHUNK + 300), 0..(3 * CHUNK + 5)],
        seed in any::<u8>(),
        seal_cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        open_cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let plain: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let mut sealer = Sealer::new(&KEY).unwrap();
        let mut sealed = Vec::new();
        let mut at = 0;
        for cut in cuts_in(len, &seal_cuts).into_iter().chain([len]) {
            sealer.push(&plain[at..cut]).iter().for_each(|b| sealed.extend_from_slice(b));
            at = cut;
        }
        sealed.extend_from_slice(&sealer.finish());
        prop_assert_eq!(sealed.len() as u64, sealed_len(len as u64));
        prop_assert_eq!(plain_len(sealed.len() as u64), Some(len as u64));
        let opened = open_split(&KEY, &sealed, &cuts_in(sealed.len(), &open_cuts));
        prop_assert_eq!(opened, Ok(plain));
    }

    #[test]
    fn damage_is_always_detected(
        len in 0..(2 * CHUNK + 50),
        flip in any::<prop::sample::Index>(),
        bit in 0..8u8,
        cut in any::<prop::sample::Index>(),
    ) {
        let sealed = seal(&KEY, &plaintext(len), 5000);
        let mut flipped = sealed.clone();
        flipped[flip.index(sealed.len())] ^= 1 << bit;
        prop_assert!(open(&KEY, &flipped).is_err());
        let cut = cut.index(sealed.len());
        let result = open(&KEY, &sealed[..cut]);
        prop_assert!(matches!(result, Err(SealError::Truncated | SealError::Tampered)), "{:?}", result);
    }

    #[test]
    fn random_bytes_never_open_or_panic(
        mut noise in proptest::collection::vec(any::<u8>(), 0..400),
        magic in any::<bool>(),
    ) {
        if magic && noise.len() >= MAGIC.len() {
            noise[..MAGIC.len()].copy_from_slice(MAGIC);
        }
        prop_assert!(open(&KEY, &noise).is_err());
    }
}

#[test]
fn streams_are_send_when_their_source_is() {
    fn send<T: Send + 'static>(_: T) {}
    send(seal_stream(
        KEY,
        stream::empty::<Result<Bytes, std::io::Error>>(),
    ));
    send(open_stream(
        KEY,
        stream::empty::<Result<Bytes, std::io::Error>>(),
    ));
}
