//! RDB files: a streaming writer of version 10 (what Redis 7.0 writes) and a reader of
//! versions 1 through 11 (Redis 7.0 and 7.2 files, and the older encodings they load).

mod encodings;
mod pack;
mod read;
mod stream;
mod write;

pub use encodings::{intset, listpack, ziplist, zipmap};
pub use read::{
    RdbEntry, RdbSummary, RdbValue, ReadOptions, read, read_dump, read_function_dump,
    read_with_hints,
};
pub use stream::{RdbConsumer, RdbGroup, RdbPending, RdbStream, RdbStreamEntry, RdbStreamId};
pub use write::{PackLimits, RdbWriter, WriteOptions};

/// Field/value pairs of a hash, in file order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The version this writer produces (Redis 7.0).
pub const RDB_VERSION: u32 = 10;
/// The newest version the reader accepts (Redis 7.2).
pub const RDB_VERSION_READ_MAX: u32 = 11;

pub(crate) mod opcode {
    pub const FUNCTION2: u8 = 0xf5;
    pub const FUNCTION_PRE_GA: u8 = 0xf6;
    pub const MODULE_AUX: u8 = 0xf7;
    pub const IDLE: u8 = 0xf8;
    pub const FREQ: u8 = 0xf9;
    pub const AUX: u8 = 0xfa;
    pub const RESIZEDB: u8 = 0xfb;
    pub const EXPIRETIME_MS: u8 = 0xfc;
    pub const EXPIRETIME: u8 = 0xfd;
    pub const SELECTDB: u8 = 0xfe;
    pub const EOF: u8 = 0xff;
}

/// Value type ids.
pub(crate) mod kind {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
}

/// Length-encoding prefixes.
pub(crate) mod len {
    pub const BITS_6: u8 = 0;
    pub const BITS_14: u8 = 1;
    pub const BITS_32: u8 = 0x80;
    pub const BITS_64: u8 = 0x81;
    pub const SPECIAL: u8 = 3;
    pub const INT8: u8 = 0;
    pub const INT16: u8 = 1;
    pub const INT32: u8 = 2;
    pub const LZF: u8 = 3;
}

/// Collection kinds the writer emits: small ones in Redis 7.0's compact encodings (see
/// [`PackLimits`]), the rest in the plain encodings every Redis since 2.x loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionKind {
    List,
    Set,
    /// `len` counts field/value pairs; write 2 × len elements.
    Hash,
    /// Written with [`RdbWriter::zset_member`].
    ZSet,
}
