//! The control plane's core, without I/O: the `Microsoft.Cache/redis` resource model as
//! Azure Resource Manager shapes it, the validation Azure applies to it (with ARM's error
//! bodies), each SKU's memory and the node settings it comes to, and the access keys. The
//! HTTP shell, the resource store and the node supervisor build on it.

pub mod children;
pub mod drill;
pub mod error;
pub mod memory;
pub mod model;
pub mod projection;
pub mod store;
pub mod validate;

pub use error::ArmError;
