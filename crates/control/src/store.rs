//! The resource store: every cache, kept in memory and written through to one JSON file
//! under the data directory (temporary file, fsync, rename, fsync of the directory), so a
//! crash never loses a cache whose creation was acknowledged, and never leaves half a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Cache;

/// Most caches one control plane keeps.
pub const CACHES_MAX: usize = 10_000;

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
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Damaged {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File {
                version: 1,
                caches: BTreeMap::new(),
            },
            Err(e) => return Err(io(e)),
        };
        Ok(ResourceStore { path, file })
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

    /// Where the soft-delete accounting is kept, next to the resources.
    fn accounting_path(&self) -> PathBuf {
        self.path.with_file_name("accounting.json")
    }

    /// Replaces the saved accounting (a JSON document the caller owns).
    pub fn save_accounting(&self, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomically(&self.accounting_path(), bytes)
    }

    /// The saved accounting, if any.
    pub fn load_accounting(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.accounting_path();
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }
}

/// Temporary file, fsync, rename, fsync of the directory: `path` holds either the old
/// bytes or the new ones, whatever happens.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}
