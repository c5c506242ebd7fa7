//! One storage account opened for one cache: every key lives under the cache's prefix, and
//! every write, overwrite and delete is reported as a [`BlobEvent`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion, WriteMultipart,
};

use crate::Account;

/// Multipart part size: above every store's 5 MiB minimum.
pub const PART_SIZE_BYTES: usize = 8 * 1024 * 1024;
/// Parts uploading at once per upload (memory: this many parts plus one filling).
pub const PARTS_IN_FLIGHT_MAX: usize = 4;
/// A request that has not finished in this long fails (our own loop retries).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries inside object_store before an error reaches the pipeline: few and quick, so an
/// unreachable store is noticed and the pipeline's own backoff and failover take over.
const STORE_RETRIES_MAX: usize = 2;
const STORE_RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to an object, for the soft-delete accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new object.
    Write,
    /// An object replaced another under the same key (the old one is retained under soft
    /// delete or versioning).
    Overwrite,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEvent {
    /// The account's display name (no secrets).
    pub account: String,
    /// The full key inside the container or bucket.
    pub key: String,
    /// Bytes written, or bytes of the object deleted or replaced.
    pub bytes: u64,
    pub kind: EventKind,
    pub at_unix_ms: u64,
}

/// Receives every event; must be quick (it runs on the uploading task).
pub type EventSink = Arc<dyn Fn(BlobEvent) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    #[error("{account}: {key} not found")]
    NotFound { account: String, key: String },
    /// A conditional write lost: someone else changed the object.
    #[error("{account}: {key} changed since it was read")]
    Conflict { account: String, key: String },
    #[error("{account}: upload of {key} verified {found} bytes, expected {expected}")]
    Verify {
        account: String,
        key: String,
        expected: u64,
        found: u64,
    },
    #[error("{account}: {source}")]
    Store {
        account: String,
        source: object_store::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The version of an object, for conditional overwrites.
pub type Version = UpdateVersion;

/// A storage account opened for one cache's prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    name: String,
    events: EventSink,
    /// Local folders have no conditional overwrite: it is emulated under this lock
    /// (compare the e-tag, then write), which is atomic within this process only.
    local_cas: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({}/{})", self.name, self.prefix)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Store {
    /// Opens `account` for the keys under `prefix`. Nothing is contacted yet; a local
    /// folder is created if missing.
    pub fn open(account: &Account, prefix: &str, events: EventSink) -> Result<Store, BlobError> {
        let name = account.display_name();
        let wrap = |source| BlobError::Store {
            account: name.clone(),
            source,
        };
        let retry = RetryConfig {
            max_retries: STORE_RETRIES_MAX,
            retry_timeout: STORE_RETRY_TIMEOUT,
            ..Default::default()
        };
        let client = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        let inner: Arc<dyn ObjectStore> = match account {
            Account::Azure {
                account,
                key,
                endpoint,
                container,
            } => Arc::new(
                match key {
                    crate::AzureKey::Shared(k) => object_store::azure::MicrosoftAzureBuilder::new()
                        .with_access_key(k.expose()),
                    crate::AzureKey::Sas(s) => object_store::azure::MicrosoftAzureBuilder::new()
                        .with_config(object_store::azure::AzureConfigKey::SasKey, s.expose()),
                }
                .with_account(account)
                .with_container_name(container)
                .with_endpoint(endpoint.clone())
                .with_allow_http(endpoint.starts_with("http://"))
                .with_retry(retry)
                .with_client_options(client.with_allow_http(endpoint.starts_with("http://")))
                .build()
                .map_err(wrap)?,
            ),
            Account::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key.expose())
                    .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                    .with_retry(retry);
                let http = endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"));
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                Arc::new(
                    b.with_allow_http(http)
                        .with_client_options(client.with_allow_http(http))
                        .build()
                        .map_err(wrap)?,
                )
            }
            Account::Local { path } => {
                std::fs::create_dir_all(path)?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(path).map_err(wrap)?)
            }
        };
        let local_cas =
            matches!(account, Account::Local { .. }).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Store {
            inner,
            prefix: prefix.trim_matches('/').to_string(),
            name,
            events,
            local_cas,
        })
    }

    /// This store with its requests behind `switch`'s faults for its account.
    pub fn with_faults(mut self, switch: &crate::FaultSwitch) -> Store {
        self.inner = switch.wrap(&self.name, self.inner);
        self
    }

    /// The account's display name.
    pub fn account(&self) -> &str {
        &self.name
    }

    /// The full key of `key` under the prefix.
    pub fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn path(&self, key: &str) -> Path {
        Path::from(self.full_key(key))
    }

    fn err(&self, key: &str, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound {
                account: self.name.clone(),
                key: key.into(),
            },
            object_store::Error::Precondition { .. }
            | object_store::Error::AlreadyExists { .. } => BlobError::Conflict {
                account: self.name.clone(),
                key: key.into(),
            },
            source => BlobError::Store {
                account: self.name.clone(),
                source,
            },
        }
    }

    fn emit(&self, key: &str, bytes: u64, kind: EventKind) {
        (self.events)(BlobEvent {
            account: self.name.clone(),
            key: self.full_key(key),
            bytes,
            kind,
            at_unix_ms: unix_ms(),
        });
    }

    /// Writes `bytes` under `key`. `expect`: None creates (fails with Conflict if the key
    /// exists); Some(v) replaces version v only. `replaced_bytes` sizes the overwrite event.
    pub async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        expect: Option<(Version, u64)>,
    ) -> Result<Version, BlobError> {
        let len = bytes.len() as u64;
        let (mode, replaced) = match expect {
            None => (PutMode::Create, None),
            Some((v, old)) => (PutMode::Update(v), Some(old)),
        };
        let _cas = match (&self.local_cas, &mode) {
            (Some(lock), PutMode::Update(v)) => {
                let guard = lock.clone().lock_owned().await;
                let current = self
                    .inner
                    .head(&self.path(key))
                    .await
                    .map_err(|e| self.err(key, e))?;
                if current.e_tag != v.e_tag {
                    return Err(BlobError::Conflict {
                        account: self.name.clone(),
                        key: key.into(),
                    });
                }
                Some(guard)
            }
            _ => None,
        };
        let mode = match (&self.local_cas, mode) {
            (Some(_), PutMode::Update(_)) => PutMode::Overwrite,
            (_, m) => m,
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let r = self
            .inner
            .put_opts(&self.path(key), PutPayload::from(bytes), opts)
            .await
            .map_err(|e| self.err(key, e))?;
        if let Some(old) = replaced {
            self.emit(key, old, EventKind::Overwrite);
        }
        self.emit(key, len, EventKind::Write);
        Ok(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        })
    }

    /// Writes `bytes` under a key that is new (names carry a sequence number or time).
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        let len = bytes.len() as u64;
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.err(key, e))?;
        self.emit(key, len, EventKind::Write);
        Ok(())
    }

    /// Replaces the object under `key` unconditionally (`old_bytes`: its size, 0 if new).
    pub async fn put_over(&self, key: &str, bytes: Bytes, old_bytes: u64) -> Result<(), BlobError> {
        let len = bytes.len() as u64;
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.err(key, e))?;
        if old_bytes > 0 {
            self.emit(key, old_bytes, EventKind::Overwrite);
        }
        self.emit(key, len, EventKind::Write);
        Ok(())
    }

    /// The object and its version; None when absent.
    pub async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, BlobError> {
        match self.inner.get(&self.path(key)).await {
            Ok(r) => {
                let v = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r.bytes().await.map_err(|e| self.err(key, e))?;
                Ok(Some((bytes, v)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Streams an object into `out`, returning its size.
    pub async fn download(
        &self,
        key: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, BlobError> {
        use tokio::io::AsyncWriteExt;
        let mut chunks = self.chunks(key).await?;
        let mut n = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            out.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        out.flush().await?;
        Ok(n)
    }

    /// An object's bytes as they arrive, in the pieces the connection delivers them.
    pub async fn chunks(
        &self,
        key: &str,
    ) -> Result<
        impl futures_util::Stream<Item = Result<Bytes, BlobError>> + Send + 'static,
        BlobError,
    > {
        let r = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| self.err(key, e))?;
        let (store, key) = (self.clone(), key.to_string());
        Ok(r.into_stream()
            .map(move |c| c.map_err(|e| store.err(&key, e))))
    }

    /// Size of an object; None when absent.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        match self.inner.head(&self.path(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Keys (relative to the prefix) and sizes under `dir`, sorted by key.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, BlobError> {
        let base = self.path(dir);
        let strip = format!("{}/", self.full_key(dir).trim_end_matches('/'));
        let mut out = Vec::new();
        let mut stream = self.inner.list(Some(&base));
        while let Some(m) = stream.next().await {
            let m = m.map_err(|e| self.err(dir, e))?;
            let full = m.location.to_string();
            let rel = full.strip_prefix(&strip).unwrap_or(&full);
            out.push((format!("{}/{rel}", dir.trim_end_matches('/')), m.size));
        }
        out.sort();
        Ok(out)
    }

    /// Deletes `key` (of `bytes` bytes, for the event). Deleting an absent key is not an error.
    pub async fn delete(&self, key: &str, bytes: u64) -> Result<(), BlobError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) => {
                self.emit(key, bytes, EventKind::Delete);
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Deletes `objects` (keys and their sizes, for the events) in as few requests as the
    /// store allows (S3's DeleteObjects, Azure's blob batch). Absent keys are not an error;
    /// the first other failure is returned after the rest were tried.
    pub async fn delete_many(&self, objects: &[(String, u64)]) -> Result<(), BlobError> {
        let paths: Vec<object_store::Result<Path>> =
            objects.iter().map(|(key, _)| Ok(self.path(key))).collect();
        let results: Vec<_> = self
            .inner
            .delete_stream(futures_util::stream::iter(paths).boxed())
            .collect()
            .await;
        let mut first_error = None;
        for ((key, bytes), result) in objects.iter().zip(results) {
            match result {
                Ok(_) => self.emit(key, *bytes, EventKind::Delete),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert_with(|| self.err(key, e));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts a multipart upload to `key`, written as it is produced.
    pub async fn upload(&self, key: &str) -> Result<Upload, BlobError> {
        let up = self
            .inner
            .put_multipart(&self.path(key))
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(Upload {
            store: self.clone(),
            key: key.to_string(),
            w: Some(WriteMultipart::new_with_chunk_size(up, PART_SIZE_BYTES)),
            written: 0,
        })
    }
}

/// A multipart upload in progress: bounded memory (parts in flight plus one buffer), and
/// aborted when dropped unfinished so no orphaned parts stay billed.
pub struct Upload {
    store: Store,
    key: String,
    w: Option<WriteMultipart>,
    written: u64,
}

impl Upload {
    /// Appends bytes, waiting while [`PARTS_IN_FLIGHT_MAX`] parts are uploading.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let w = self.w.as_mut().expect("upload not finished");
        w.wait_for_capacity(PARTS_IN_FLIGHT_MAX)
            .await
            .map_err(|e| self.store.err(&self.key, e))?;
        w.write(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Appends bytes without copying them.
    pub async fn put(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        let w = self.w.as_mut().expect("upload not finished");
        w.wait_for_capacity(PARTS_IN_FLIGHT_MAX)
            .await
            .map_err(|e| self.store.err(&self.key, e))?;
        self.written += bytes.len() as u64;
        w.put(bytes);
        Ok(())
    }

    /// Completes the upload and checks the stored size; returns the bytes written.
    pub async fn finish(mut self) -> Result<u64, BlobError> {
        let w = self.w.take().expect("upload not finished");
        if let Err(e) = w.finish().await {
            return Err(self.store.err(&self.key, e));
        }
        let found = self.store.size(&self.key).await?.unwrap_or(0);
        if found != self.written {
            // Never leave a wrong object where a reader would take it for complete.
            let _ = self.store.inner.delete(&self.store.path(&self.key)).await;
            return Err(BlobError::Verify {
                account: self.store.name.clone(),
                key: self.key.clone(),
                expected: self.written,
                found,
            });
        }
        self.store.emit(&self.key, self.written, EventKind::Write);
        Ok(self.written)
    }

    /// Abandons the upload, discarding the parts sent.
    pub async fn abort(mut self) {
        if let Some(w) = self.w.take()
            && let Err(e) = w.abort().await
        {
            tracing::warn!(account = %self.store.name, key = %self.key, error = %e, "could not abort a multipart upload");
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(w) = self.w.take() {
            // Dropped mid-way (task cancelled, error upstream): abort in the background.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = w.abort().await;
                });
            }
        }
    }
}
