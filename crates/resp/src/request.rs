//! Decoding client requests: multibulk (`*N\r\n$L\r\n...`) and inline (`PING\r\n`) commands.
//!
//! The decoder keeps the arguments of a half-received multibulk request between calls, so a
//! request arriving in many reads is scanned once, not once per read.

use bytes::{Buf, Bytes, BytesMut};

use crate::{Limits, ProtocolError, parse_i64};

/// Turns a byte stream into commands (lists of arguments).
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    /// Arguments still expected, and those received so far, of a multibulk request in progress.
    pending: Option<(usize, Vec<Bytes>)>,
    /// The bytes of the arguments in `pending`.
    pending_bytes: usize,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            pending: None,
            pending_bytes: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The length line of an argument still arriving at the front of `buf` (its size
    /// already checked against the limits), and where in `buf` that argument will end.
    fn argument_in_progress(&self, buf: &[u8]) -> Option<(usize, usize)> {
        if self.pending.is_none() || buf.first() != Some(&b'$') {
            return None;
        }
        // A length line is short: look no further than the longest one.
        let line_end = find_crlf(&buf[..buf.len().min(24)])?;
        let len = parse_i64(&buf[1..line_end])?;
        let header = line_end + 2;
        Some((header, header + usize::try_from(len).ok()? + 2))
    }

    /// How many of `buf`'s bytes wait to be parsed as Redis counts its query buffer
    /// (CLIENT LIST `qbuf`): an argument still arriving counts without its `$len` line.
    pub fn unparsed(&self, buf: &[u8]) -> usize {
        match self.argument_in_progress(buf) {
            Some((header, _)) => buf.len() - header,
            None => buf.len(),
        }
    }

    /// The bytes of the arguments of a request still arriving (held out of the read
    /// buffer: Redis counts them as the client's `argv` memory).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Where in `buf` the argument arriving now ends, when one is partly there: a reader
    /// can size its buffer to it instead of doubling past it.
    pub fn argument_end(&self, buf: &[u8]) -> Option<usize> {
        self.argument_in_progress(buf).map(|(_, end)| end)
    }

    /// Takes the next whole command off the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed. Empty requests (`*0`, blank lines) are skipped.
    /// `authenticated` selects the stricter size limits Redis applies before AUTH.
    /// After an `Err` the connection must be closed: the stream position is lost.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if self.pending.is_none()
            && buf.first() == Some(&b'*')
            && let Some(args) = self.whole_request(buf, authenticated)
        {
            return Ok(Some(args));
        }
        loop {
            if self.pending.is_none() {
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        let Some(count) = self.multibulk_header(buf, authenticated)? else {
                            return Ok(None);
                        };
                        if count == 0 {
                            continue;
                        }
                        // Never trust the count for the allocation: grow as arguments arrive.
                        self.pending = Some((count, Vec::with_capacity(count.min(64))));
                    }
                    Some(_) => match self.inline(buf)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                    },
                }
            }
            let (remaining, args) = self.pending.as_mut().expect("multibulk in progress");
            while *remaining > 0 {
                let Some(arg) = bulk(buf, &self.limits, authenticated)? else {
                    return Ok(None);
                };
                self.pending_bytes += arg.len();
                args.push(arg);
                *remaining -= 1;
            }
            self.pending_bytes = 0;
            let (_, args) = self.pending.take().expect("multibulk in progress");
            return Ok(Some(args));
        }
    }

    /// A small multibulk request that is wholly in `buf`, taken in one pass: its bytes are
    /// split off once and its arguments sliced out of them, which is most requests and
    /// costs a third of going argument by argument. Anything else (a request still
    /// arriving, a large or malformed one) is `None` with nothing consumed, for the
    /// incremental path to take or to report.
    fn whole_request(&self, buf: &mut BytesMut, authenticated: bool) -> Option<Vec<Bytes>> {
        let bytes: &[u8] = buf;
        let (count, mut at) = short_decimal_line(bytes, 1)?;
        if count == 0
            || count > WHOLE_REQUEST_ARGS_MAX
            || (!authenticated && count > self.limits.unauthenticated_multibulk_len_max)
        {
            return None;
        }
        let len_max = match authenticated {
            true => self.limits.bulk_len_max_bytes,
            false => self
                .limits
                .unauthenticated_bulk_len_max_bytes
                .min(self.limits.bulk_len_max_bytes),
        };
        let mut spans = [(0, 0); WHOLE_REQUEST_ARGS_MAX];
        for span in &mut spans[..count] {
            if bytes.get(at) != Some(&b'$') {
                return None;
            }
            let (len, start) = short_decimal_line(bytes, at + 1)?;
            let end = start + len;
            if len > len_max || bytes.get(end..end + 2) != Some(b"\r\n") {
                return None;
            }
            *span = (start, end);
            at = end + 2;
        }
        let frame = buf.split_to(at).freeze();
        Some(
            spans[..count]
                .iter()
                .map(|&(start, end)| frame.slice(start..end))
                .collect(),
        )
    }

    fn multibulk_header(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<usize>, ProtocolError> {
        let Some(line_end) = find_crlf(buf) else {
            return if buf.len() > self.limits.inline_len_max_bytes {
                Err(ProtocolError::MultibulkCountTooLong)
            } else {
                Ok(None)
            };
        };
        let count = parse_i64(&buf[1..line_end]);
        let count = match count {
            Some(n) if n > self.limits.multibulk_len_max as i64 => {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            Some(n)
                if !authenticated && n > self.limits.unauthenticated_multibulk_len_max as i64 =>
            {
                return Err(ProtocolError::UnauthenticatedMultibulkLength);
            }
            Some(n) => n.max(0) as usize,
            None => return Err(ProtocolError::InvalidMultibulkLength),
        };
        buf.advance(line_end + 2);
        Ok(Some(count))
    }

    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return if buf.len() > self.limits.inline_len_max_bytes {
                Err(ProtocolError::InlineTooBig)
            } else {
                Ok(None)
            };
        };
        if nl > self.limits.inline_len_max_bytes {
            return Err(ProtocolError::InlineTooBig);
        }
        let line = buf.split_to(nl + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_inline_args(line).map(Some)
    }
}

/// Arguments a request may have to be taken by [`RequestDecoder::whole_request`].
const WHOLE_REQUEST_ARGS_MAX: usize = 16;

/// The number on a `*`/`$` header line starting at `at`, when it is short (at most nine
/// digits, without sign or leading zero) and its CRLF is there: the number and where the
/// next line starts. Longer or odder lines are left to the incremental path.
fn short_decimal_line(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut value = 0;
    let mut end = at;
    while let Some(&b) = bytes.get(end)
        && b.is_ascii_digit()
    {
        if end - at == 9 {
            return None;
        }
        value = value * 10 + usize::from(b - b'0');
        end += 1;
    }
    let digits = end - at;
    if digits == 0 || (digits > 1 && bytes[at] == b'0') || bytes.get(end..end + 2) != Some(b"\r\n")
    {
        return None;
    }
    Some((value, end + 2))
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// One `$len\r\ndata\r\n` argument, consumed only when it is complete.
fn bulk(
    buf: &mut BytesMut,
    limits: &Limits,
    authenticated: bool,
) -> Result<Option<Bytes>, ProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != b'$' {
        return Err(ProtocolError::ExpectedBulk(first as char));
    }
    let Some(line_end) = find_crlf(buf) else {
        return if buf.len() > limits.inline_len_max_bytes {
            Err(ProtocolError::BulkCountTooLong)
        } else {
            Ok(None)
        };
    };
    let len = match parse_i64(&buf[1..line_end]) {
        Some(n) if n < 0 || n as u64 > limits.bulk_len_max_bytes as u64 => {
            return Err(ProtocolError::InvalidBulkLength);
        }
        Some(n)
            if !authenticated && n as u64 > limits.unauthenticated_bulk_len_max_bytes as u64 =>
        {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        Some(n) => n as usize,
        None => return Err(ProtocolError::InvalidBulkLength),
    };
    let header = line_end + 2;
    if buf.len() < header + len + 2 {
        // Make room for the whole argument at once, as Redis does for big bulks; the length
        // was checked against the limit above.
        if len >= 32 * 1024 {
            buf.reserve(header + len + 2 - buf.len());
        }
        return Ok(None);
    }
    if &buf[header + len..header + len + 2] != b"\r\n" {
        // Redis does not check the trailing CRLF either; it skips two bytes. Be strict.
        return Err(ProtocolError::InvalidBulkLength);
    }
    buf.advance(header);
    let data = buf.split_to(len).freeze();
    buf.advance(2);
    Ok(Some(data))
}

/// Splits an inline command line into arguments like Redis's `sdssplitargs`: whitespace
/// separates, `"..."` supports `\n \r \t \b \a \\ \" \xHH` escapes, `'...'` supports `\'`.
pub fn split_inline_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    // Redis splits a C string: a NUL ends the line.
    let line = line.split(|&b| b == 0).next().unwrap_or_default();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut cur = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                break;
            };
            match quote {
                Some(b'"') => {
                    if c == b'\\'
                        && line.get(i + 1) == Some(&b'x')
                        && is_hex_pair(line.get(i + 2..).unwrap_or_default())
                    {
                        cur.push(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3]));
                        i += 3;
                    } else if c == b'\\' && i + 1 < line.len() {
                        i += 1;
                        cur.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    } else if c == b'"' {
                        // A closing quote must be followed by a space or the end.
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    } else {
                        cur.push(c);
                    }
                }
                Some(_) => {
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        i += 1;
                        cur.push(b'\'');
                    } else if c == b'\'' {
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    } else {
                        cur.push(c);
                    }
                }
                None => match c {
                    c if c.is_ascii_whitespace() => break,
                    b'"' | b'\'' if cur.is_empty() => quote = Some(c),
                    _ => cur.push(c),
                },
            }
            i += 1;
        }
        args.push(Bytes::from(cur));
    }
}

fn is_hex_pair(s: &[u8]) -> bool {
    s.len() >= 2 && s[0].is_ascii_hexdigit() && s[1].is_ascii_hexdigit()
}

fn hex_val(c: u8) -> u8 {
    (c as char).to_digit(16).unwrap_or(0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(cmd) = d.decode(&mut buf, true)? {
            out.push(cmd);
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_inline() {
        let cmds =
            decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n\r\n*0\r\nset a \"b c\"\n").unwrap();
        assert_eq!(
            cmds,
            vec![
                vec![Bytes::from("GET"), Bytes::from("k")],
                vec![Bytes::from("PING")],
                vec![Bytes::from("set"), Bytes::from("a"), Bytes::from("b c")]
            ]
        );
    }

    #[test]
    fn partial_input_resumes_byte_by_byte() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        for (i, b) in input.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = d.decode(&mut buf, true).unwrap();
            assert_eq!(got.is_some(), i == input.len() - 1);
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn protocol_errors_match_redis() {
        assert_eq!(
            decode_all(b"*x\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n+ok\r\n"),
            Err(ProtocolError::ExpectedBulk('+'))
        );
        assert_eq!(
            decode_all(b"*1\r\n$-3\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n$999999999999\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n$1\r\nabc\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"set \"a\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            decode_all(&vec![b'a'; 70_000]),
            Err(ProtocolError::InlineTooBig)
        );
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"*1000\r\n"[..]);
        assert_eq!(
            d.decode(&mut buf, false),
            Err(ProtocolError::UnauthenticatedMultibulkLength)
        );
    }

    #[test]
    fn huge_declared_length_allocates_nothing_up_front() {
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"*2147483647\r\n$3\r\nfoo\r\n"[..]);
        assert_eq!(d.decode(&mut buf, true), Ok(None));
        assert!(d.pending.as_ref().unwrap().1.capacity() <= 64);
    }

    /// Decodes `input` fed in pieces of `step` bytes (so whole requests are rarely in the
    /// buffer at once and the incremental path runs): the commands, then the error if any.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
        limits: Limits,
        authenticated: bool,
    ) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut d = RequestDecoder::new(limits);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match d.decode(&mut buf, authenticated) {
                    Ok(Some(cmd)) => out.push(cmd),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn whole_requests_decode_as_the_incremental_path_does() {
        let small = Limits {
            bulk_len_max_bytes: 4,
            ..Limits::default()
        };
        let cases: &[&[u8]] = &[
            b"*3\r\n$5\r\nPFADD\r\n$1\r\nk\r\n$0\r\n\r\n",
            b"*1\r\n$01\r\na\r\n",
            b"*01\r\n$1\r\na\r\n",
            b"*1\r\n$+1\r\na\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"*1\r\n$1\r\na\n\r",
            b"*2\r\n$1\r\na\r\n+b\r\n",
            b"*1\r\n$5\r\nabcde\r\n",
            b"*1\r\n$1234567890\r\n",
            b"*12\r\n$1\r\na\r\n",
        ];
        let many = format!("*17\r\n{}", "$1\r\nx\r\n".repeat(17));
        for input in cases.iter().copied().chain([many.as_bytes()]) {
            for limits in [Limits::default(), small] {
                for authenticated in [true, false] {
                    let whole = decode_in_steps(input, input.len(), limits, authenticated);
                    let bytewise = decode_in_steps(input, 1, limits, authenticated);
                    assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(input));
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_split_of_a_stream_decodes_alike(
            args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..20), 1..20),
            step in 1usize..64,
        ) {
            let mut input = Vec::new();
            for n in 1..=args.len() {
                input.extend_from_slice(format!("*{n}\r\n").as_bytes());
                for a in &args[..n] {
                    input.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                    input.extend_from_slice(a);
                    input.extend_from_slice(b"\r\n");
                }
            }
            let whole = decode_in_steps(&input, input.len(), Limits::default(), true);
            proptest::prop_assert_eq!(whole.1.clone(), None);
            proptest::prop_assert_eq!(whole.0.len(), args.len());
            proptest::prop_assert_eq!(whole, decode_in_steps(&input, step, Limits::default(), true));
        }
    }

    #[test]
    fn inline_quoting() {
        let args = split_inline_args(br#"a "x\ny\x41" 'it\'s'"#).unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("a"), Bytes::from("x\nyA"), Bytes::from("it's")]
        );
        assert_eq!(
            split_inline_args(br#""a"b"#),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }
}
