//! Where file contents live: a [`BlobStore`] over `object_store`, built from `files.*` — a
//! directory on the control plane's disk (`files.local_dir`) or an S3 bucket (`files.s3.*`,
//! also MinIO, Ceph, R2, moto). Blob keys are generated (`<prefix>/<tenant>/<file id>`):
//! nothing the client sends (its file name) ever reaches a key.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};
use omg_shared::config::{FileStorage, FilesConfig};
use uuid::Uuid;

/// How long the start-up check may take before start-up fails.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Parts uploaded at once per file (S3 multipart upload; the local store writes in order).
const PART_CONCURRENCY: usize = 4;

/// A store failure (the message names the backend and the key; never a secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl From<object_store::Error> for StoreError {
    fn from(error: object_store::Error) -> Self {
        StoreError(error.to_string())
    }
}

/// The blob store of the files service.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    /// `local` or `s3`, for messages.
    backend: &'static str,
}

/// A blob being written: parts go to the store as they fill.
pub struct BlobWriter {
    upload: WriteMultipart,
}

impl BlobWriter {
    /// Appends `data`, waiting while too many parts are in flight.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.upload.wait_for_capacity(PART_CONCURRENCY).await?;
        self.upload.write(data);
        Ok(())
    }

    /// Completes the blob.
    pub async fn finish(self) -> Result<(), StoreError> {
        self.upload.finish().await?;
        Ok(())
    }

    /// Abandons the blob (nothing stays in the store).
    pub async fn abort(self) -> Result<(), StoreError> {
        self.upload.abort().await?;
        Ok(())
    }
}

impl BlobStore {
    /// The store `files.*` describes (the local directory is created). Does not contact S3:
    /// see [`BlobStore::check`].
    pub fn from_config(config: &FilesConfig) -> Result<Self, String> {
        match config.storage {
            FileStorage::Local => {
                std::fs::create_dir_all(&config.local_dir).map_err(|e| {
                    format!(
                        "files.local_dir `{}` cannot be created: {e}; point files.local_dir at a \
                         writable directory (or use files.storage: s3)",
                        config.local_dir.display()
                    )
                })?;
                let store = LocalFileSystem::new_with_prefix(&config.local_dir)
                    .map_err(|e| format!("files.local_dir `{}`: {e}", config.local_dir.display()))?
                    .with_automatic_cleanup(true);
                Ok(Self::new(Arc::new(store), "", "local"))
            }
            FileStorage::S3 => {
                let s3 = &config.s3;
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
                    .with_allow_http(s3.allow_http);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                builder = builder.with_virtual_hosted_style_request(!s3.force_path_style);
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    builder = builder
                        .with_access_key_id(id.expose())
                        .with_secret_access_key(secret.expose());
                }
                let store = builder
                    .build()
                    .map_err(|e| format!("files.s3 (bucket `{}`): {e}", s3.bucket))?;
                Ok(Self::new(Arc::new(store), &s3.prefix, "s3"))
            }
        }
    }

    /// A store over any `object_store` backend (tests use the in-memory one).
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, backend: &'static str) -> Self {
        Self {
            inner,
            prefix: prefix.trim_matches('/').to_owned(),
            backend,
        }
    }

    /// `local` or `s3`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The generated key of a tenant's file: `<prefix>/<tenant>/<file id>`.
    pub fn key(&self, tenant_id: Uuid, file_id: &str) -> String {
        if self.prefix.is_empty() {
            format!("{tenant_id}/{file_id}")
        } else {
            format!("{}/{tenant_id}/{file_id}", self.prefix)
        }
    }

    /// Starts writing the blob `key`.
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, StoreError> {
        let upload = self.inner.put_multipart(&Path::from(key)).await?;
        Ok(BlobWriter {
            upload: WriteMultipart::new(upload),
        })
    }

    /// The blob `key` as a stream of chunks.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let result = self.inner.get(&Path::from(key)).await?;
        Ok(result
            .into_stream()
            .map(|r| r.map_err(StoreError::from))
            .boxed())
    }

    /// Removes the blob `key`; a blob already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The start-up check: writes, reads back and deletes a probe blob within
    /// [`CHECK_TIMEOUT`]. The error names the `files.*` keys to fix.
    pub async fn check(&self) -> Result<(), String> {
        let key = self.key(Uuid::nil(), &format!("startup-check-{}", Uuid::now_v7()));
        let probe = async {
            let path = Path::from(key.as_str());
            self.inner
                .put(&path, Bytes::from_static(b"ok").into())
                .await?;
            self.inner.get(&path).await?.bytes().await?;
            self.inner.delete(&path).await?;
            Ok::<(), object_store::Error>(())
        };
        let what = match self.backend {
            "local" => "files.local_dir must be a writable directory",
            _ => {
                "check files.s3.bucket (it must exist), files.s3.endpoint / region, \
                 force_path_style and the credentials (files.s3.access_key_id / \
                 secret_access_key or the AWS environment)"
            }
        };
        match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "the files store ({}) refused a test write: {e}; {what}",
                self.backend
            )),
            Err(_) => Err(format!(
                "the files store ({}) did not answer within {} s; {what}",
                self.backend,
                CHECK_TIMEOUT.as_secs()
            )),
        }
    }
}
