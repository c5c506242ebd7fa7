//! Object stores for a node's persistence: storage accounts from connection strings, and
//! the writes, reads and deletes the persistence pipeline makes, each reported as an event
//! for the soft-delete accounting. The only crate that uses `object_store`.

mod access;
mod account;
mod faults;

pub use access::{AccessError, AccessPolicy};
pub use account::{
    AZURITE_ACCOUNT, Account, AccountError, AzureKey, DEFAULT_CONTAINER, Secret, split_blob_sas_url,
};
mod retention;
mod store;

pub use faults::{FAULT_MAX, Fault, FaultSwitch};
pub use retention::{Discovered, DiscoveryError, Retention, discover};

pub use store::{
    BlobError, BlobEvent, EventKind, EventSink, PART_SIZE_BYTES, PARTS_IN_FLIGHT_MAX, Store,
    Upload, Version,
};
