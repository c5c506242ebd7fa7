//! Redis persistence formats, over plain `std::io::Read`/`Write`: RDB (version 10 as Redis
//! 7.0 writes it; reads what 7.0 and 7.2 write) and the Redis 7 multi-part AOF (manifest,
//! command log).
//!
//! No files, sockets or clocks here: callers hand in readers and writers and the time.
//! Nothing is allocated from a length read off the input before that length is checked,
//! and collections grow as their elements actually arrive.

pub mod aof;
mod crc64;
#[cfg(test)]
mod damage;
mod error;
mod lzf;
pub mod rdb;

pub use crc64::{Crc64, crc64};
pub use error::FormatError;
