//! Export and import, as the management API's long-running operations use them: a
//! snapshot streamed into any storage account while the node keeps serving, and RDB files
//! loaded in place of the dataset. Progress is a percentage the caller reads as it goes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Shared;
use crate::persist::{self, Job};

/// Pieces of snapshot queued between the saver thread and the upload.
const EXPORT_PIECES_QUEUED_MAX: usize = 8;

/// Streams a snapshot of the dataset as it is now into `key` of `store`; returns the bytes
/// stored. `percent` follows the keys written (100 once the upload is complete).
pub async fn export(
    shared: &Arc<Shared>,
    store: &blob::Store,
    key: &str,
    percent: &AtomicU32,
) -> anyhow::Result<u64> {
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_PIECES_QUEUED_MAX);
    let keys = {
        let mut st = shared.state.lock().expect("state lock");
        let st = &mut *st;
        persist::begin_background(&mut st.ks, &mut st.rdb, &st.config, Job::Blob(tx))?;
        st.ks.dbs_len_total().max(1) as u64
    };
    let bytes = crate::ship::stream_snapshot(store, key, rx, || {
        let written = shared
            .state
            .lock()
            .expect("state lock")
            .ks
            .snapshot_entries();
        // 99 at most until the store has the whole object.
        percent.store((written * 100 / keys).min(99) as u32, Ordering::Relaxed);
    })
    .await?;
    percent.store(100, Ordering::Relaxed);
    tracing::info!(account = store.account(), key, bytes, "exported");
    Ok(bytes)
}

/// Replaces the dataset with the contents of `files` (RDB, loaded in order; a key in a
/// later file wins); returns the keys loaded. A damaged file changes nothing.
pub async fn import(
    shared: &Arc<Shared>,
    files: Vec<PathBuf>,
    percent: Arc<AtomicU32>,
) -> anyhow::Result<u64> {
    let databases = shared.state.lock().expect("state lock").config.databases;
    let total = files.len().max(1);
    let ks = tokio::task::spawn_blocking(move || -> anyhow::Result<keyspace::Keyspace> {
        let mut ks = keyspace::Keyspace::new(databases);
        let now = crate::unix_time_ms();
        ks.set_clock(now);
        for (i, f) in files.iter().enumerate() {
            persist::load_rdb(f, &mut ks, now)?;
            percent.store(((i + 1) * 99 / total) as u32, Ordering::Relaxed);
        }
        Ok(ks)
    })
    .await??;
    let mut st = shared.state.lock().expect("state lock");
    let keys = ks.dbs_len_total() as u64;
    st.replace_dataset(ks);
    // The dataset changed without commands: save rules count it, and the append-only file
    // (which holds none of it) is rewritten from it.
    st.ks.dirty += keys.max(1);
    if st.config.appendonly {
        st.rdb.aof_rewrite_scheduled = true;
    }
    tracing::info!(keys, "imported");
    Ok(keys)
}
