//! Errors reading or writing persistence files.

/// What went wrong, with where (byte offset) when reading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an rdb file (bad magic)")]
    BadMagic,
    #[error("can't handle rdb format version {0}")]
    UnsupportedVersion(u32),
    #[error("unexpected end of file at offset {offset}")]
    Truncated { offset: u64 },
    #[error("dump payload version or checksum are wrong")]
    BadDumpTrailer,
    #[error("rdb checksum mismatch: file says {stored:#018x}, content hashes to {computed:#018x}")]
    BadChecksum { stored: u64, computed: u64 },
    #[error("unsupported rdb {what} {code} at offset {offset}")]
    Unsupported {
        what: &'static str,
        code: u8,
        offset: u64,
    },
    #[error("corrupt rdb at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("{what} length {len} exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// Well-formed data that the loader cannot accept (duplicates, too many databases).
    #[error("{0}")]
    Invalid(String),
    #[error("bad aof manifest line {line}: {reason}")]
    BadManifest { line: usize, reason: String },
    #[error("bad aof checksum list line {line}: {reason}")]
    BadChecksumLine { line: usize, reason: String },
}

impl FormatError {
    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> FormatError {
        FormatError::Corrupt {
            offset,
            reason: reason.into(),
        }
    }
}
