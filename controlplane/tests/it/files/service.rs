//! `FileService` against real Postgres and the local store: create, get, open, list
//! (keyset pagination both ways, purpose filter), delete, tenant isolation, caps, sealing,
//! the sweeper.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use omg_controlplane::files::service::{FileError, FileOwner, ListQuery, Order};

use crate::harness::*;

fn owner(tenant_id: uuid::Uuid) -> FileOwner {
    FileOwner {
        tenant_id,
        key_id: Some(uuid::Uuid::now_v7()),
        user_id: None,
    }
}

/// `data` as a body stream of `piece`-byte chunks.
fn body(
    data: &[u8],
    piece: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, FileError>> + Unpin {
    let chunks: Vec<Result<Bytes, FileError>> = data
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks)
}

async fn read_all(
    mut s: futures_util::stream::BoxStream<'static, Result<Bytes, FileError>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn random(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// The blob files under the test's files directory (recursively).
fn blobs(cp: &Cp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&files_dir(&cp.db.url), &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_round_trips_and_is_the_tenants_alone() {
    let cp = Cp::start("").await;
    let (a, b) = (cp.tenant("a").await, cp.tenant("b").await);
    let files = &cp.state.files;
    let data = random(300_000);
    let file = files
        .create(
            &owner(a.id),
            "batch",
            "../../etc/passwd\u{7}",
            None,
            body(&data, 7777),
        )
        .await
        .unwrap();
    assert!(
        file.id.starts_with("file-") && file.id.len() == 29,
        "{}",
        file.id
    );
    assert_eq!(
        (file.object.as_str(), file.status.as_str()),
        ("file", "processed")
    );
    assert_eq!(file.bytes, 300_000);
    assert_eq!(
        file.filename, "../../etc/passwd",
        "control characters dropped, name kept as metadata"
    );
    // `batch` files expire after 30 days by default.
    let expires = file.expires_at.unwrap() - file.created_at;
    assert_eq!(expires, 30 * 86_400);
    assert_eq!(files.get(a.id, &file.id).await.unwrap(), file);
    let (_, content) = files.open(a.id, &file.id).await.unwrap();
    assert_eq!(read_all(content).await, data);
    // The blob sits under the generated key, never under the client's name.
    let stored = blobs(&cp);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored[0].ends_with(format!("{}/{}", a.id, file.id)),
        "{stored:?}"
    );
    // Another tenant sees nothing.
    assert!(matches!(
        files.get(b.id, &file.id).await,
        Err(FileError::NotFound)
    ));
    assert!(matches!(
        files.open(b.id, &file.id).await,
        Err(FileError::NotFound)
    ));
    assert!(matches!(
        files.delete(b.id, &file.id).await,
        Err(FileError::NotFound)
    ));
    assert!(files
        .list(b.id, &ListQuery::default())
        .await
        .unwrap()
        .data
        .is_empty());
    // Delete: gone for reads, the blob removed, a second delete is NotFound.
    let deleted = files.delete(a.id, &file.id).await.unwrap();
    assert!(deleted.deleted && deleted.id == file.id);
    assert!(matches!(
        files.get(a.id, &file.id).await,
        Err(FileError::NotFound)
    ));
    assert!(matches!(
        files.delete(a.id, &file.id).await,
        Err(FileError::NotFound)
    ));
    assert!(blobs(&cp).is_empty());
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_by_creation_time_both_ways_and_filters_by_purpose() {
    let cp = Cp::start("").await;
    let t = cp.tenant("t").await;
    let files = &cp.state.files;
    let mut ids = Vec::new();
    for i in 0..5 {
        let purpose = if i % 2 == 0 { "batch" } else { "assistants" };
        let f = files
            .create(
                &owner(t.id),
                purpose,
                &format!("f{i}.jsonl"),
                None,
                body(b"{}\n", 2),
            )
            .await
            .unwrap();
        ids.push(f.id);
    }
    for order in [Order::Desc, Order::Asc] {
        let mut expected = ids.clone();
        if order == Order::Desc {
            expected.reverse();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let q = ListQuery {
                after: after.clone(),
                limit: 2,
                order,
                ..ListQuery::default()
            };
            let page = files.list(t.id, &q).await.unwrap();
            assert!(page.data.len() <= 2);
            assert_eq!(page.first_id, page.data.first().map(|f| f.id.clone()));
            seen.extend(page.data.iter().map(|f| f.id.clone()));
            if !page.has_more {
                break;
            }
            after = page.last_id;
        }
        assert_eq!(seen, expected, "{order:?}");
    }
    let q = ListQuery {
        purpose: Some("batch".to_owned()),
        ..ListQuery::default()
    };
    let batch = files.list(t.id, &q).await.unwrap();
    assert_eq!(batch.data.len(), 3);
    assert!(batch.data.iter().all(|f| f.purpose == "batch"));
    // An unknown cursor is the client's mistake.
    let q = ListQuery {
        after: Some("file-nope".to_owned()),
        ..ListQuery::default()
    };
    assert!(matches!(
        files.list(t.id, &q).await,
        Err(FileError::InvalidParameter { param: "after", .. })
    ));
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purposes_expiries_and_caps_are_enforced_and_a_refused_upload_leaves_no_blob() {
    let db = TestDb::create().await;
    let files_yaml = format!(
        "files:\n  local_dir: \"{}\"\n  max_size_mb: 4\n  purpose_max_size_mb: {{batch: 1}}\n",
        files_dir(&db.url).display()
    );
    let cp = Cp::start_on(db, &files_yaml).await;
    let t = cp.tenant("t").await;
    let files = &cp.state.files;
    let o = owner(t.id);
    assert!(matches!(
        files.create(&o, "nope", "x", None, body(b"x", 1)).await,
        Err(FileError::InvalidPurpose)
    ));
    let past = chrono::Utc::now() - chrono::Duration::seconds(5);
    assert!(matches!(
        files
            .create(&o, "vision", "x", Some(past), body(b"x", 1))
            .await,
        Err(FileError::InvalidExpiry)
    ));
    let big = random(1024 * 1024 + 1);
    match files
        .create(&o, "batch", "big", None, body(&big, 65_536))
        .await
    {
        Err(FileError::TooLarge { limit }) => assert_eq!(limit, 1024 * 1024),
        other => panic!("{other:?}"),
    }
    // The same bytes fit another purpose's (global) cap.
    let f = files
        .create(&o, "vision", "big", None, body(&big, 65_536))
        .await
        .unwrap();
    assert_eq!(f.bytes, big.len() as i64);
    assert_eq!(f.expires_at, None);
    // A body that fails mid-way: the row is `error`, not listed as readable.
    let failing = stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(FileError::Body("client went away".to_owned())),
    ]);
    assert!(matches!(
        files.create(&o, "vision", "broken", None, failing).await,
        Err(FileError::Body(_))
    ));
    let all = ListQuery {
        status: Some("error".to_owned()),
        ..ListQuery::default()
    };
    let errors = files.list(t.id, &all).await.unwrap();
    assert_eq!(errors.data.len(), 2, "the too-large and the broken upload");
    assert!(errors.data.iter().all(|f| f.status_details.is_some()));
    for f in &errors.data {
        assert!(matches!(
            files.open(t.id, &f.id).await,
            Err(FileError::NotProcessed(_))
        ));
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_files_are_not_plaintext_at_rest_and_open_identical() {
    let key = "ERERERERERERERERERERERERERERERERERERERERERE=";
    let db = TestDb::create().await;
    let dir = files_dir(&db.url);
    let yaml = config_yaml(
        &db.url,
        &format!(
            "files:\n  local_dir: \"{}\"\n  encryption_key: \"{key}\"\n",
            dir.display()
        ),
    );
    let cp = Cp::start_with(db, &yaml).await;
    let t = cp.tenant("t").await;
    let files = &cp.state.files;
    for size in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let f = files
            .create(
                &owner(t.id),
                "assistants",
                "s.bin",
                None,
                body(&data, 10_000),
            )
            .await
            .unwrap();
        assert_eq!(f.bytes, size as i64);
        let path = dir.join(t.id.to_string()).join(&f.id);
        let at_rest = std::fs::read(&path).unwrap();
        assert!(at_rest.starts_with(b"OMGSEAL1"), "sealed format");
        assert!(
            size < 64 || !at_rest.windows(64).any(|w| w == &data[..64]),
            "no plaintext at rest"
        );
        let (_, content) = files.open(t.id, &f.id).await.unwrap();
        assert_eq!(read_all(content).await, data, "size {size}");
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deletes_expired_files_and_their_blobs() {
    let cp = Cp::start("").await;
    let t = cp.tenant("t").await;
    let files = &cp.state.files;
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let expiring = files
        .create(&owner(t.id), "vision", "e", Some(soon), body(b"bye", 3))
        .await
        .unwrap();
    let kept = files
        .create(&owner(t.id), "vision", "k", None, body(b"stay", 4))
        .await
        .unwrap();
    assert_eq!(
        files.sweep_once(10).await.unwrap(),
        0,
        "nothing expired yet"
    );
    // Wait for the expiry itself (a condition, not a guess).
    while chrono::Utc::now() <= soon {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(files.sweep_once(10).await.unwrap(), 1);
    assert!(matches!(
        files.get(t.id, &expiring.id).await,
        Err(FileError::NotFound)
    ));
    assert!(files.get(t.id, &kept.id).await.is_ok());
    let left = blobs(&cp);
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with(&kept.id));
    assert_eq!(files.sweep_once(10).await.unwrap(), 0);

    // A failed upload (or one cut by a crash) is swept a day after it started.
    let failing = stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(FileError::Body("client went away".to_owned())),
    ]);
    assert!(files
        .create(&owner(t.id), "vision", "cut", None, failing)
        .await
        .is_err());
    let q = ListQuery {
        status: Some("error".to_owned()),
        ..ListQuery::default()
    };
    let failed = files.list(t.id, &q).await.unwrap().data.remove(0);
    let deadline = failed.expires_at.unwrap() - failed.created_at;
    assert_eq!(deadline, 86_400);
    assert!(files
        .list(t.id, &ListQuery::default())
        .await
        .unwrap()
        .data
        .iter()
        .all(|f| f.status == "processed"));
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE files SET expires_at = now() - interval '1 second' WHERE id = '{}'",
            failed.id
        )),
        &mut *cp.conn().await,
    )
    .await
    .unwrap();
    assert_eq!(files.sweep_once(10).await.unwrap(), 1);
    assert!(files.list(t.id, &q).await.unwrap().data.is_empty());
    cp.stop().await;
}
