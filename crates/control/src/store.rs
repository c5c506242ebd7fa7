//! The resource store: every cache and every long-running operation, kept in memory and
//! written through to one JSON file under the data directory (temporary file, fsync,
//! rename, fsync of the directory), so a crash never loses a cache whose creation was
//! acknowledged, never leaves half a file, and an operation's URL answers after a restart.
//! The file holds access keys and connection strings: it and the data directory are
//! readable by their owner only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Cache, OperationStatus};

/// Most caches one control plane keeps.
pub const CACHES_MAX: usize = 10_000;
/// Most operations kept; past it the oldest finished ones are forgotten.
pub const OPERATIONS_KEPT_MAX: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("resource store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resource store {path} is damaged: {source}")]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    version: u32,
    /// By lower-cased resource id (ARM ids are case-insensitive).
    caches: BTreeMap<String, Cache>,
    /// By operation name.
    #[serde(default)]
    operations: BTreeMap<String, StoredOperation>,
}

/// A long-running operation as kept: its status resource and what it works on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredOperation {
    pub status: OperationStatus,
    /// The store key of the cache it changes.
    pub cache: String,
    /// What it does (`create`, `update`, `delete`, `export`, ...), for the settling after
    /// a crash.
    pub kind: String,
}

pub struct ResourceStore {
    path: PathBuf,
    file: File,
}

/// ARM compares ids without regard to case.
pub fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

impl ResourceStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<ResourceStore, StoreError> {
        let path = dir.join("resources.json");
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Damaged {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File {
                version: 1,
                ..File::default()
            },
            Err(e) => return Err(io(e)),
        };
        // A file written by an earlier release may be readable by others: not any more.
        if path.exists() {
            set_private(&path).map_err(io)?;
        }
        Ok(ResourceStore { path, file })
    }

    pub fn operation(&self, name: &str) -> Option<&StoredOperation> {
        self.file.operations.get(name)
    }

    pub fn operations(&self) -> impl Iterator<Item = &StoredOperation> {
        self.file.operations.values()
    }

    /// Inserts or replaces an operation and writes the store through; beyond
    /// [`OPERATIONS_KEPT_MAX`] the oldest finished ones are dropped.
    pub fn put_operation(&mut self, op: StoredOperation) -> Result<(), StoreError> {
        self.file.operations.insert(op.status.name.clone(), op);
        while self.file.operations.len() > OPERATIONS_KEPT_MAX {
            let oldest = self
                .file
                .operations
                .values()
                .filter(|o| o.status.status != "InProgress")
                .min_by(|a, b| a.status.start_time.cmp(&b.status.start_time))
                .map(|o| o.status.name.clone());
            match oldest {
                Some(name) => self.file.operations.remove(&name),
                None => break,
            };
        }
        self.write()
    }

    pub fn get(&self, id: &str) -> Option<&Cache> {
        self.file.caches.get(&key(id))
    }

    pub fn all(&self) -> impl Iterator<Item = &Cache> {
        self.file.caches.values()
    }

    pub fn len(&self) -> usize {
        self.file.caches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.caches.is_empty()
    }

    /// Inserts or replaces a cache and writes the store through.
    pub fn put(&mut self, cache: Cache) -> Result<(), StoreError> {
        let previous = self.file.caches.insert(key(&cache.id()), cache.clone());
        self.write().inspect_err(|_| {
            // Keep memory and disk in agreement.
            match previous {
                Some(p) => {
                    self.file.caches.insert(key(&cache.id()), p);
                }
                None => {
                    self.file.caches.remove(&key(&cache.id()));
                }
            }
        })
    }

    pub fn remove(&mut self, id: &str) -> Result<Option<Cache>, StoreError> {
        let removed = self.file.caches.remove(&key(id));
        if removed.is_some() {
            self.write()?;
        }
        Ok(removed)
    }

    fn write(&self) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(&self.file).expect("the store serializes");
        write_atomically(&self.path, &bytes)
    }

    /// Where the file `name` the control plane keeps next to the resources lives
    /// (`accounting.json`, `drills.json`).
    fn side_path(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }

    /// Replaces the file `name` kept next to the resources (a document its caller owns).
    pub fn save_side(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomically(&self.side_path(name), bytes)
    }

    /// The file `name` kept next to the resources, if any.
    pub fn load_side(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.side_path(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }
}

/// Creates `dir` (and its parents) and makes it owner-only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Temporary file, fsync, rename, fsync of the directory: `path` holds either the old
/// bytes or the new ones, whatever happens.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?
    };
    // A temporary file left by an earlier release keeps its mode on open: set it.
    set_private(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}
