//! Size limits applied while decoding, with Redis's defaults.

/// Bounds on what a peer may send. Defaults match redis-server 7.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted (`proto-max-bulk-len`).
    pub bulk_len_max_bytes: usize,
    /// Most elements in one multibulk request (Redis: `INT_MAX`).
    pub multibulk_len_max: usize,
    /// Longest inline command line, and longest `*`/`$` header line (`PROTO_INLINE_MAX_SIZE`).
    pub inline_len_max_bytes: usize,
    /// Most elements an unauthenticated client may send in one multibulk request.
    pub unauthenticated_multibulk_len_max: usize,
    /// Largest bulk string an unauthenticated client may send.
    pub unauthenticated_bulk_len_max_bytes: usize,
    /// Deepest nesting accepted by [`crate::Frame::parse`].
    pub frame_depth_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bulk_len_max_bytes: 512 * 1024 * 1024,
            multibulk_len_max: i32::MAX as usize,
            inline_len_max_bytes: 64 * 1024,
            unauthenticated_multibulk_len_max: 10,
            unauthenticated_bulk_len_max_bytes: 16384,
            frame_depth_max: 64,
        }
    }
}
