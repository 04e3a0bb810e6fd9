//! The admin and user file views, the audited admin delete, and the start-up check of the
//! store.

use bytes::Bytes;
use omg_controlplane::files::service::FileOwner;
use reqwest::Method;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_download_and_delete_a_tenants_files_with_an_audit_entry() {
    let cp = Cp::start("").await;
    let t = cp.tenant("acme").await;
    let other = cp.tenant("other").await;
    let admin = cp.user("a@x.test", false).await;
    cp.member(&t, &admin, "admin").await;
    let token = cp.token(admin.id);
    let owner = FileOwner {
        tenant_id: t.id,
        key_id: None,
        user_id: None,
    };
    let mut ids = Vec::new();
    for i in 0..3u8 {
        let body = futures_util::stream::iter([Ok(Bytes::from(vec![i; 10 + usize::from(i)]))]);
        let f = cp
            .state
            .files
            .create(&owner, "vision", "f.png", None, body)
            .await
            .unwrap();
        ids.push(f.id);
    }
    let base = format!("/admin/tenants/{}/files", t.id);
    let (status, page) = cp
        .call(
            Method::GET,
            &format!("{base}?limit=2&order=asc"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], ids[0].as_str());
    let after = page["last_id"].as_str().unwrap();
    let (_, rest) = cp
        .call(
            Method::GET,
            &format!("{base}?limit=2&order=asc&after={after}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(rest["data"][0]["id"], ids[2].as_str());
    assert_eq!(rest["has_more"], false);
    let (status, bad) = cp
        .call(
            Method::GET,
            &format!("{base}?limit=500"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let (status, one) = cp
        .call(
            Method::GET,
            &format!("{base}/{}", ids[1]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, one["bytes"].as_i64()), (200, Some(11)));
    let content = cp
        .http
        .get(cp.url(&format!("{base}/{}/content", ids[1])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap().to_vec(), vec![1u8; 11]);
    // Another tenant's path does not reach this tenant's files.
    let foreign = format!("/admin/tenants/{}/files/{}", other.id, ids[1]);
    assert_eq!(
        cp.call(Method::GET, &foreign, Some(&token), None).await.0,
        404
    );
    // Delete: audited with the file as it was.
    let (status, deleted) = cp
        .call(
            Method::DELETE,
            &format!("{base}/{}", ids[1]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], true);
    let (_, audit) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}/audit?limit=50", t.id),
            Some(&token),
            None,
        )
        .await;
    let entry = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "file.delete")
        .unwrap_or_else(|| panic!("no file.delete entry: {audit}"));
    assert_eq!(entry["target_type"], "file");
    assert_eq!(entry["target_id"], ids[1].as_str());
    assert_eq!(entry["before"]["filename"], "f.png");
    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!("{base}/{}", ids[1]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, deleted_list) = cp
        .call(
            Method::GET,
            &format!("{base}?status=deleted"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted_list["data"][0]["id"], ids[1].as_str());
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_writes_stops_the_start_naming_the_keys() {
    let db = TestDb::create().await;
    // A file where the directory should be: it cannot be created.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let dir = blocker.path().join("files");
    let yaml = config_yaml(
        &db.url,
        &format!("files:\n  local_dir: \"{}\"\n", dir.display()),
    );
    let error = omg_controlplane::app::start(parse_config(&yaml))
        .await
        .err()
        .unwrap();
    assert!(error.contains("files.local_dir"), "{error}");
    // An S3 endpoint nobody listens on: refused within the check's bound.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s3 = format!(
        "files:\n  storage: s3\n  s3:\n    bucket: b\n    endpoint: \"http://127.0.0.1:{port}\"\n    \
         allow_http: true\n    force_path_style: true\n    access_key_id: x\n    secret_access_key: y\n"
    );
    let started = std::time::Instant::now();
    let error = omg_controlplane::app::start(parse_config(&config_yaml(&db.url, &s3)))
        .await
        .err()
        .unwrap();
    assert!(
        error.contains("files.s3.bucket") && error.contains("files store (s3)"),
        "{error}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
