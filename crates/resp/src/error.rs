//! Decoding errors.

/// A client broke the request protocol. The message is exactly what redis-server replies
/// before it closes the connection (after the `ERR ` prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooLong,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooLong,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// A RESP value could not be decoded by [`crate::Frame::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("invalid frame type byte {0:#04x}")]
    InvalidType(u8),
    #[error("invalid length or number in frame header")]
    InvalidNumber,
    #[error("frame length {len} exceeds the limit of {max}")]
    TooLong { len: u64, max: usize },
    #[error("frames nested deeper than {0}")]
    TooDeep(usize),
    #[error("missing CRLF after bulk data")]
    MissingCrlf,
    #[error("invalid utf-8 in a line frame")]
    InvalidUtf8,
}
