//! Encoding replies for RESP2 or RESP3, straight into the connection's output buffer.

use crate::{format_double, format_double_human};

/// The protocol a connection speaks; `HELLO 3` switches to RESP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// An output buffer that knows how to write each reply type in the connection's protocol.
///
/// RESP3-only types degrade as Redis degrades them for RESP2 clients: maps and sets become
/// flat arrays, doubles become bulk strings, booleans integers, and null is `$-1` or `*-1`.
/// The most one command's reply may hold (Redis's `proto-max-bulk-len` default): a
/// command whose reply has no bound in the data (HRANDFIELD with a count of -1000000000)
/// stops there, and the connection closes the client rather than send it.
pub const REPLY_MAX_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReplyBuf {
    pub protocol: Protocol,
    buf: Vec<u8>,
    /// Where commands that repeat without bound stop writing (see [`ReplyBuf::full`]).
    stop_at_bytes: usize,
}

impl Default for ReplyBuf {
    fn default() -> Self {
        ReplyBuf::new(Protocol::default())
    }
}

impl ReplyBuf {
    pub fn new(protocol: Protocol) -> Self {
        ReplyBuf {
            protocol,
            buf: Vec::new(),
            stop_at_bytes: REPLY_MAX_BYTES,
        }
    }

    /// Lowers where unbounded commands stop (a client's hard output limit: beyond it the
    /// client is closed, so writing more is waste).
    pub fn stop_at(&mut self, bytes: usize) {
        self.stop_at_bytes = bytes.min(REPLY_MAX_BYTES);
    }

    /// Whether the buffer holds as much as a reply may: commands that could write on
    /// without bound (random picks with repeats) stop, and the client is closed.
    pub fn full(&self) -> bool {
        self.buf.len() >= self.stop_at_bytes
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A reply buffer writing into `buf` (emptied), so a caller can reuse its allocation.
    pub fn with_buffer(protocol: Protocol, mut buf: Vec<u8>) -> Self {
        buf.clear();
        ReplyBuf {
            protocol,
            buf,
            stop_at_bytes: REPLY_MAX_BYTES,
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Drops everything written after `len`, to undo a partly written reply.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Appends bytes that are already encoded (for example a reply built for another client).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn header(&mut self, tag: u8, n: i64) {
        self.buf.push(tag);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// `+text`. The text must not contain CR or LF.
    pub fn simple(&mut self, text: &str) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// `-text`; `text` starts with the error code (`ERR`, `WRONGTYPE`, ...). Newlines, which
    /// would break the protocol, are replaced by spaces as Redis does.
    pub fn error(&mut self, text: &str) {
        self.buf.push(b'-');
        self.buf.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.header(b'$', data.len() as i64);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding the decimal form of `n`.
    pub fn bulk_int(&mut self, n: i64) {
        self.bulk(itoa::Buffer::new().format(n).as_bytes());
    }

    /// The null bulk string (`$-1` / `_`).
    pub fn null(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.buf.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    /// The null array (`*-1` / `_`), used for example by timed-out blocking pops.
    pub fn null_array(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.buf.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.header(b'*', len as i64);
    }

    /// A map of `len` pairs; the caller writes `2 * len` values after it.
    pub fn map(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.header(b'*', 2 * len as i64),
            Protocol::Resp3 => self.header(b'%', len as i64),
        }
    }

    pub fn set(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.header(b'*', len as i64),
            Protocol::Resp3 => self.header(b'~', len as i64),
        }
    }

    /// An out-of-band push (pub/sub messages); a plain array in RESP2.
    pub fn push(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.header(b'*', len as i64),
            Protocol::Resp3 => self.header(b'>', len as i64),
        }
    }

    /// A double formatted as `%.17g`: a bulk string in RESP2, `,` in RESP3.
    pub fn double(&mut self, v: f64) {
        let mut text = Vec::with_capacity(24);
        format_double(v, &mut text);
        self.double_text(&text);
    }

    /// A double in Redis's "human" form (see [`format_double_human`]): a bulk string in
    /// RESP2, `,` in RESP3.
    pub fn double_human(&mut self, v: f64) {
        let mut text = Vec::with_capacity(32);
        format_double_human(v, &mut text);
        self.double_text(&text);
    }

    /// A double already formatted: a bulk string in RESP2, `,` in RESP3.
    fn double_text(&mut self, text: &[u8]) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.buf.push(b',');
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    pub fn boolean(&mut self, v: bool) {
        match self.protocol {
            Protocol::Resp2 => self.int(v as i64),
            Protocol::Resp3 => self
                .buf
                .extend_from_slice(if v { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    /// A big number (`(digits`); a bulk string in RESP2.
    pub fn big_number(&mut self, digits: &str) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(digits.as_bytes()),
            Protocol::Resp3 => {
                self.buf.push(b'(');
                self.buf.extend_from_slice(digits.as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Verbatim text with its three-letter format (`=len\r\nfmt:...`); a bulk string in
    /// RESP2.
    pub fn verbatim_as(&mut self, format: &[u8], text: &[u8]) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.header(b'=', (text.len() + format.len() + 1) as i64);
                self.buf.extend_from_slice(format);
                self.buf.push(b':');
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Verbatim text (`=len\r\ntxt:...`); a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &[u8]) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.header(b'=', text.len() as i64 + 4);
                self.buf.extend_from_slice(b"txt:");
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_degrades_resp3_types() {
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.map(1);
        r.bulk(b"k");
        r.double(1.5);
        r.boolean(true);
        r.null();
        r.null_array();
        assert_eq!(
            r.as_bytes(),
            b"*2\r\n$1\r\nk\r\n$3\r\n1.5\r\n:1\r\n$-1\r\n*-1\r\n"
        );
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.map(1);
        r.bulk(b"k");
        r.double(1.5);
        r.boolean(true);
        r.null();
        assert_eq!(r.as_bytes(), b"%1\r\n$1\r\nk\r\n,1.5\r\n#t\r\n_\r\n");
    }

    #[test]
    fn errors_cannot_break_framing() {
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.error("ERR bad\r\nthing");
        assert_eq!(r.as_bytes(), b"-ERR bad  thing\r\n");
    }
}
