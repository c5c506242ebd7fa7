//! A fault layer in front of a storage account, for fault drills: while an outage is set,
//! every request to the account fails as an unreachable store's would; while a slowdown is
//! set, every request waits first. The switch is shared: the control plane sets faults on
//! a cache's accounts while the cache's node keeps using its stores, across node restarts.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// The longest fault a drill may set: a bound on what one request can make a store wait.
pub const FAULT_MAX: Duration = Duration::from_secs(3600);

/// What is wrong with an account now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every request fails at once.
    Outage,
    /// Every request waits this long before it is sent.
    Slow(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Active {
    fault: Fault,
    until: Instant,
}

/// The faults set on a cache's accounts, by account display name. Cloning shares them.
#[derive(Clone, Default)]
pub struct FaultSwitch {
    active: Arc<Mutex<HashMap<String, Active>>>,
}

impl fmt::Debug for FaultSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let active = self.active.lock().expect("faults lock");
        f.debug_map()
            .entries(active.iter().map(|(k, a)| (k, a.fault)))
            .finish()
    }
}

impl FaultSwitch {
    /// Sets `fault` on the account named `account` for `duration` (at most [`FAULT_MAX`]).
    pub fn set(&self, account: &str, fault: Fault, duration: Duration) {
        let until = Instant::now() + duration.min(FAULT_MAX);
        self.active
            .lock()
            .expect("faults lock")
            .insert(account.to_string(), Active { fault, until });
    }

    /// Ends any fault on `account` now.
    pub fn clear(&self, account: &str) {
        self.active.lock().expect("faults lock").remove(account);
    }

    /// The fault on `account` now, if any.
    pub fn current(&self, account: &str) -> Option<Fault> {
        let mut active = self.active.lock().expect("faults lock");
        match active.get(account) {
            Some(a) if a.until > Instant::now() => Some(a.fault),
            Some(_) => {
                active.remove(account);
                None
            }
            None => None,
        }
    }

    /// What a request to `account` meets: an error during an outage, a wait when slow.
    async fn before_request(&self, account: &str) -> object_store::Result<()> {
        match self.current(account) {
            None => Ok(()),
            Some(Fault::Slow(latency)) => {
                tokio::time::sleep(latency).await;
                Ok(())
            }
            Some(Fault::Outage) => Err(object_store::Error::Generic {
                store: "fault drill",
                source: format!("{account} is unreachable (a simulated storage outage)").into(),
            }),
        }
    }

    /// `inner`, behind this switch's faults for `account`.
    pub(crate) fn wrap(&self, account: &str, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Faulty {
            inner,
            switch: self.clone(),
            account: account.to_string(),
        })
    }
}

/// An object store behind a fault switch.
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    switch: FaultSwitch,
    account: String,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.switch.before_request(&self.account).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.switch.before_request(&self.account).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            switch: self.switch.clone(),
            account: self.account.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.switch.before_request(&self.account).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.switch.before_request(&self.account).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (switch, account) = (self.switch.clone(), self.account.clone());
        let inner = self.inner.delete_stream(locations);
        gated(switch, account, inner)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (switch, account) = (self.switch.clone(), self.account.clone());
        gated(switch, account, self.inner.list(prefix))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.switch.before_request(&self.account).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.switch.before_request(&self.account).await?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// `inner`, started only once the account's fault lets a request through.
fn gated<T: Send + 'static>(
    switch: FaultSwitch,
    account: String,
    inner: BoxStream<'static, object_store::Result<T>>,
) -> BoxStream<'static, object_store::Result<T>> {
    futures_util::stream::once(async move {
        match switch.before_request(&account).await {
            Ok(()) => inner,
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        }
    })
    .flatten()
    .boxed()
}

/// A multipart upload whose parts and completion meet the account's faults.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    switch: FaultSwitch,
    account: String,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (switch, account) = (self.switch.clone(), self.account.clone());
        let part = self.inner.put_part(data);
        Box::pin(async move {
            switch.before_request(&account).await?;
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.switch.before_request(&self.account).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.switch.before_request(&self.account).await?;
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test(flavor = "current_thread")]
    async fn an_outage_fails_requests_to_its_account_until_it_ends() {
        let switch = FaultSwitch::default();
        let store = switch.wrap("acct", Arc::new(InMemory::new()));
        let path = Path::from("k");
        store
            .put(&path, Bytes::from_static(b"v").into())
            .await
            .unwrap();
        switch.set("acct", Fault::Outage, Duration::from_secs(60));
        assert!(store.get(&path).await.is_err());
        assert!(store.list(None).next().await.unwrap().is_err());
        assert!(store.put_multipart(&Path::from("m")).await.is_err());
        // Another account's fault does not touch this one; an ended fault is gone.
        switch.clear("acct");
        switch.set("other", Fault::Outage, Duration::from_secs(60));
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap(), "v");
        switch.set("acct", Fault::Outage, Duration::ZERO);
        assert_eq!(switch.current("acct"), None);
        assert_eq!(store.list(None).count().await, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_account_still_answers_and_an_upload_meets_the_outage_mid_way() {
        let switch = FaultSwitch::default();
        let store = switch.wrap("acct", Arc::new(InMemory::new()));
        switch.set(
            "acct",
            Fault::Slow(Duration::from_millis(1)),
            Duration::from_secs(60),
        );
        assert_eq!(
            switch.current("acct"),
            Some(Fault::Slow(Duration::from_millis(1)))
        );
        let mut up = store.put_multipart(&Path::from("m")).await.unwrap();
        up.put_part(Bytes::from_static(b"part").into())
            .await
            .unwrap();
        switch.set("acct", Fault::Outage, Duration::from_secs(60));
        assert!(
            up.put_part(Bytes::from_static(b"more").into())
                .await
                .is_err()
        );
        assert!(up.complete().await.is_err());
        switch.clear("acct");
        up.complete().await.unwrap();
    }
}
