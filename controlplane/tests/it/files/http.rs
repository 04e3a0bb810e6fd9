//! `/v1/files` through the internal listener, each request with a signed identity as a
//! data plane sends it: the OpenAI shapes, pagination, tenant isolation and every hostile
//! upload answered 4xx quickly without buffering.

use std::time::Duration;

use omg_shared::cluster::{new_nonce, sign_identity, Audience, Identity, IDENTITY_HEADER};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::harness::*;
use crate::internal::{channel_yaml, listen, test_prefix, SECRET};
use crate::snapshot::redis_url;

const BOUNDARY: &str = "----omgtestboundary7MA4YWxkTrZu0gW";

/// Signs requests as the data plane does, for one tenant.
struct Api {
    base: String,
    tenant: Uuid,
    http: reqwest::Client,
}

impl Api {
    fn header(&self, method: &str, path: &str, query: &str) -> String {
        let identity = Identity {
            tenant_id: self.tenant,
            key_id: Uuid::from_u128(8),
            user_id: None,
            request_id: format!("req-{}", Uuid::now_v7()),
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            nonce: new_nonce().unwrap(),
            issued_at: chrono::Utc::now().timestamp(),
            audience: Audience::Controlplane,
            batch_id: None,
            body_sha256: None,
        };
        sign_identity(SECRET.as_bytes(), &identity)
    }

    async fn call(&self, method: &str, path: &str, query: &str) -> (u16, Value) {
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let res = self
            .http
            .request(method.parse().unwrap(), url)
            .header(IDENTITY_HEADER, self.header(method, path, query))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn upload_raw(&self, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/v1/files", self.base))
            .header(IDENTITY_HEADER, self.header("POST", "/v1/files", ""))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn upload(&self, parts: &[(&str, Option<&str>, &[u8])]) -> (u16, Value) {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        self.upload_raw(&content_type, multipart(parts)).await
    }

    async fn content(&self, id: &str) -> (u16, Vec<u8>) {
        let path = format!("/v1/files/{id}/content");
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header(IDENTITY_HEADER, self.header("GET", &path, ""))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        if status == 200 {
            assert_eq!(res.headers()["content-type"], "application/octet-stream");
            let length: usize = res.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let body = res.bytes().await.unwrap().to_vec();
            assert_eq!(length, body.len());
            (status, body)
        } else {
            (status, res.bytes().await.unwrap().to_vec())
        }
    }
}

/// A multipart body as httpx (the OpenAI Python SDK) writes it: (name, filename, body).
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, body) in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match filename {
            Some(f) => out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn setup(files_yaml: &str) -> (Cp, Api, Api) {
    let db = TestDb::create().await;
    let files = format!(
        "files:\n  local_dir: \"{}\"\n{files_yaml}",
        files_dir(&db.url).display()
    );
    let yaml = format!("{}{files}", channel_yaml(&redis_url(), &test_prefix()));
    let cp = Cp::start_on(db, &yaml).await;
    let base = listen(&cp.state);
    let (a, b) = (cp.tenant("a").await, cp.tenant("b").await);
    let api = |tenant: Uuid| Api {
        base: base.clone(),
        tenant,
        http: reqwest::Client::new(),
    };
    (cp, api(a.id), api(b.id))
}

fn assert_error(status: u16, body: &Value, expected: u16, param: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["param"], param, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_list_read_and_delete_per_tenant() {
    let (cp, a, b) = setup("").await;
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 5)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let (status, file) = a
        .upload(&[
            ("purpose", None, b"assistants"),
            ("file", Some("../x\u{1}.bin"), &data),
        ])
        .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["status"], "processed");
    assert_eq!(file["bytes"], data.len());
    assert_eq!(file["filename"], "../x.bin");
    assert_eq!(file["purpose"], "assistants");
    let id = file["id"].as_str().unwrap().to_owned();
    let (status, got) = a.call("GET", &format!("/v1/files/{id}"), "").await;
    assert_eq!((status, &got), (200, &file));
    assert_eq!(a.content(&id).await, (200, data.clone()));
    // The other tenant: 404 everywhere, OpenAI-shaped.
    let (status, body) = b.call("GET", &format!("/v1/files/{id}"), "").await;
    assert_error(status, &body, 404, "file_id");
    assert_eq!(b.content(&id).await.0, 404);
    assert_eq!(
        b.call("DELETE", &format!("/v1/files/{id}"), "").await.0,
        404
    );
    let (_, list) = b.call("GET", "/v1/files", "").await;
    assert_eq!(list["data"], serde_json::json!([]));
    // Delete, then nothing.
    let (status, deleted) = a.call("DELETE", &format!("/v1/files/{id}"), "").await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        serde_json::json!({"id": id, "object": "file", "deleted": true})
    );
    assert_eq!(a.call("GET", &format!("/v1/files/{id}"), "").await.0, 404);
    assert_eq!(a.content(&id).await.0, 404);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_with_limit_after_and_order() {
    let (cp, a, _) = setup("").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let name = format!("f{i}.jsonl");
        let (status, file) = a
            .upload(&[("purpose", None, b"batch"), ("file", Some(&name), b"{}\n")])
            .await;
        assert_eq!(status, 200, "{file}");
        ids.push(file["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (status, page) = a.call("GET", "/v1/files", &query).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["object"], "list");
        for f in page["data"].as_array().unwrap() {
            seen.push(f["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            break;
        }
        query = format!("limit=2&after={}", page["last_id"].as_str().unwrap());
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first by default");
    let (_, asc) = a
        .call("GET", "/v1/files", "order=asc&limit=100&purpose=batch")
        .await;
    let first = asc["data"][0]["id"].as_str().unwrap();
    assert_eq!(first, ids[4]);
    assert_eq!(asc["has_more"], false);
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("order=sideways", "order"),
        ("after=file-unknown", "after"),
    ] {
        let (status, body) = a.call("GET", "/v1/files", query).await;
        assert_error(status, &body, 400, param);
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_fields_expiry_and_order_of_parts() {
    let (cp, a, _) = setup("  purpose_max_size_mb: {batch: 1}\n").await;
    // expires_after as the SDK sends it.
    let (status, file) = a
        .upload(&[
            ("purpose", None, b"vision"),
            ("expires_after[anchor]", None, b"created_at"),
            ("expires_after[seconds]", None, b"3600"),
            ("file", Some("a.png"), b"png"),
        ])
        .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(
        file["expires_at"].as_i64().unwrap() - file["created_at"].as_i64().unwrap(),
        3600
    );
    // The file before its purpose (curl -F file=@x -F purpose=batch) works too.
    let (status, file) = a
        .upload(&[
            ("file", Some("late.jsonl"), b"{}\n"),
            ("purpose", None, b"batch"),
        ])
        .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["purpose"], "batch");
    // ... and its purpose's cap is applied once the purpose arrives.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (status, body) = a
        .upload(&[
            ("file", Some("big.jsonl"), &big),
            ("purpose", None, b"batch"),
        ])
        .await;
    assert_error(status, &body, 413, "file");
    for (parts, param) in [
        (
            vec![
                ("purpose", None, &b"batch_output"[..]),
                ("file", Some("x"), b"x"),
            ],
            "purpose",
        ),
        (
            vec![("purpose", None, &b"nope"[..]), ("file", Some("x"), b"x")],
            "purpose",
        ),
        (vec![("file", Some("x"), &b"x"[..])], "purpose"),
        (vec![("purpose", None, &b"batch"[..])], "file"),
        (
            vec![
                ("purpose", None, &b"batch"[..]),
                ("expires_after[anchor]", None, b"created_at"),
                ("expires_after[seconds]", None, b"60"),
                ("file", Some("x"), b"x"),
            ],
            "expires_after",
        ),
    ] {
        let (status, body) = a.upload(&parts).await;
        assert_error(status, &body, 400, param);
    }
    // Nothing refused left a blob behind: the three stored files only.
    let mut blobs = 0;
    for entry in std::fs::read_dir(files_dir(&cp.db.url).join(a.tenant.to_string())).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.starts_with("file-"), "{name}");
        blobs += 1;
    }
    assert_eq!(blobs, 2, "the two stored files and nothing else");
    cp.stop().await;
}

/// Sends `head` (an HTTP/1.1 request head) and up to `body` bytes, then reads the response
/// status line; the server must answer without the rest of the body.
async fn raw_status(base: &str, head: &str, body: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("answered without the rest of the body")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_uploads_are_refused_quickly() {
    let (cp, a, _) = setup("  max_size_mb: 8\n  purpose_max_size_mb: {batch: 1}\n").await;
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    // A declared 10 GB body: 413 before a byte of it is read.
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: x\r\n{IDENTITY_HEADER}: {}\r\nContent-Type: {content_type}\r\n\
         Content-Length: 10737418240\r\n\r\n",
        a.header("POST", "/v1/files", "")
    );
    let status = raw_status(&a.base, &head, b"").await;
    assert!(status.contains(" 413 "), "{status}");
    // An endless body over the purpose's cap: 413 once it crosses it (chunked, no length).
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: x\r\n{IDENTITY_HEADER}: {}\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        a.header("POST", "/v1/files", "")
    );
    let mut body = Vec::new();
    let start = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"
    );
    body.extend_from_slice(format!("{:x}\r\n{start}\r\n", start.len()).as_bytes());
    let chunk = vec![b'y'; 256 * 1024];
    for _ in 0..6 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    let status = raw_status(&a.base, &head, &body).await;
    assert!(status.contains(" 413 "), "{status}");
    // Framing problems: 400 naming the fix.
    let long = "b".repeat(200);
    for (content_type, body) in [
        (
            "multipart/form-data".to_owned(),
            multipart(&[("purpose", None, b"batch")]),
        ),
        (
            format!("multipart/form-data; boundary={long}"),
            b"--x".to_vec(),
        ),
        ("application/json".to_owned(), b"{}".to_vec()),
        (content_type.clone(), {
            let mut b = b"garbage before the first boundary\r\n".to_vec();
            b.extend(multipart(&[
                ("purpose", None, b"batch"),
                ("file", Some("x"), b"x"),
            ]));
            b
        }),
        (content_type.clone(), {
            let mut b = multipart(&[("purpose", None, b"batch"), ("file", Some("x"), b"abc")]);
            b.truncate(b.len() - 12);
            b
        }),
    ] {
        let (status, body) = a.upload_raw(&content_type, body).await;
        assert_eq!(status, 400, "{content_type}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    // The refused uploads left no blob, and their rows say why.
    let dir = files_dir(&cp.db.url).join(a.tenant.to_string());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let q = omg_controlplane::files::service::ListQuery {
        status: Some("error".to_owned()),
        ..Default::default()
    };
    let errors = cp.state.files.list(a.tenant, &q).await.unwrap();
    assert!(errors.data.iter().any(|f| f
        .status_details
        .as_deref()
        .unwrap_or("")
        .contains("larger")));
    cp.stop().await;
}
