//! A general RESP2/RESP3 value, for clients, tests and log readers.

use bytes::Bytes;

use crate::{FrameError, Limits};

/// Any RESP value. `Null` stands for every null form (`$-1`, `*-1`, `_`).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Push(Vec<Frame>),
    Double(f64),
    Boolean(bool),
    BigNumber(String),
    Verbatim { format: String, text: Bytes },
}

impl Frame {
    /// Parses one frame from the front of `buf`: `Ok(Some((frame, consumed)))`, or `Ok(None)`
    /// when `buf` holds only part of a frame.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, FrameError> {
        let mut pos = 0;
        match parse_at(buf, &mut pos, limits, 0)? {
            Some(frame) => Ok(Some((frame, pos))),
            None => Ok(None),
        }
    }

    /// Encodes the frame in RESP3 form (RESP2 for the types RESP2 has).
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn line(out: &mut Vec<u8>, tag: u8, text: &[u8]) {
            out.push(tag);
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        fn len(out: &mut Vec<u8>, tag: u8, n: usize) {
            line(out, tag, itoa::Buffer::new().format(n).as_bytes());
        }
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => line(out, b'-', s.as_bytes()),
            Frame::Integer(n) => line(out, b':', itoa::Buffer::new().format(*n).as_bytes()),
            Frame::Bulk(b) => {
                len(out, b'$', b.len());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Null => out.extend_from_slice(b"_\r\n"),
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                let tag = match self {
                    Frame::Array(_) => b'*',
                    Frame::Set(_) => b'~',
                    _ => b'>',
                };
                len(out, tag, items.len());
                items.iter().for_each(|f| f.encode(out));
            }
            Frame::Map(pairs) => {
                len(out, b'%', pairs.len());
                for (k, v) in pairs {
                    k.encode(out);
                    v.encode(out);
                }
            }
            Frame::Double(v) => {
                let mut text = Vec::new();
                crate::format_double(*v, &mut text);
                line(out, b',', &text);
            }
            Frame::Boolean(v) => out.extend_from_slice(if *v { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::BigNumber(s) => line(out, b'(', s.as_bytes()),
            Frame::Verbatim { format, text } => {
                len(out, b'=', format.len() + 1 + text.len());
                out.extend_from_slice(format.as_bytes());
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

fn read_line<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    limits: &Limits,
) -> Result<Option<&'a [u8]>, FrameError> {
    let rest = &buf[*pos..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            *pos += end + 2;
            Ok(Some(&rest[..end]))
        }
        None if rest.len() > limits.inline_len_max_bytes => Err(FrameError::TooLong {
            len: rest.len() as u64,
            max: limits.inline_len_max_bytes,
        }),
        None => Ok(None),
    }
}

fn line_str(line: &[u8]) -> Result<String, FrameError> {
    String::from_utf8(line.to_vec()).map_err(|_| FrameError::InvalidUtf8)
}

/// A length header: `-1` means null, anything else must be within `max`.
fn read_len(line: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let n = crate::parse_i64(line).ok_or(FrameError::InvalidNumber)?;
    if n == -1 {
        return Ok(None);
    }
    if n < 0 {
        return Err(FrameError::InvalidNumber);
    }
    if n as u64 > max as u64 {
        return Err(FrameError::TooLong { len: n as u64, max });
    }
    Ok(Some(n as usize))
}

fn parse_at(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<Frame>, FrameError> {
    if depth > limits.frame_depth_max {
        return Err(FrameError::TooDeep(limits.frame_depth_max));
    }
    let Some(&tag) = buf.get(*pos) else {
        return Ok(None);
    };
    let start = *pos;
    *pos += 1;
    let Some(line) = read_line(buf, pos, limits)? else {
        *pos = start;
        return Ok(None);
    };
    let frame = match tag {
        b'+' => Frame::Simple(line_str(line)?),
        b'-' => Frame::Error(line_str(line)?),
        b':' => Frame::Integer(crate::parse_i64(line).ok_or(FrameError::InvalidNumber)?),
        b'(' => Frame::BigNumber(line_str(line)?),
        b'_' => Frame::Null,
        b'#' => match line {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(FrameError::InvalidNumber),
        },
        b',' => Frame::Double(crate::parse_f64(line).ok_or(FrameError::InvalidNumber)?),
        b'$' | b'=' | b'!' => {
            let Some(n) = read_len(line, limits.bulk_len_max_bytes)? else {
                return Ok(Some(Frame::Null));
            };
            if buf.len() < *pos + n + 2 {
                *pos = start;
                return Ok(None);
            }
            let data = &buf[*pos..*pos + n];
            if &buf[*pos + n..*pos + n + 2] != b"\r\n" {
                return Err(FrameError::MissingCrlf);
            }
            *pos += n + 2;
            match tag {
                b'$' => Frame::Bulk(Bytes::copy_from_slice(data)),
                b'!' => Frame::Error(line_str(data)?),
                _ => {
                    if n < 4 || data[3] != b':' {
                        return Err(FrameError::InvalidNumber);
                    }
                    Frame::Verbatim {
                        format: line_str(&data[..3])?,
                        text: Bytes::copy_from_slice(&data[4..]),
                    }
                }
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some(n) = read_len(line, limits.multibulk_len_max)? else {
                return Ok(Some(Frame::Null));
            };
            let per_entry = if matches!(tag, b'%' | b'|') { 2 } else { 1 };
            // Every element takes at least 3 bytes, which bounds the allocation by the input.
            let mut items = Vec::with_capacity((n * per_entry).min((buf.len() - *pos) / 3));
            for _ in 0..n * per_entry {
                match parse_at(buf, pos, limits, depth + 1)? {
                    Some(f) => items.push(f),
                    None => {
                        *pos = start;
                        return Ok(None);
                    }
                }
            }
            match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                b'|' => {
                    // An attribute annotates the frame that follows; return that frame.
                    return match parse_at(buf, pos, limits, depth + 1)? {
                        Some(f) => Ok(Some(f)),
                        None => {
                            *pos = start;
                            Ok(None)
                        }
                    };
                }
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Frame::Map(pairs)
                }
            }
        }
        other => return Err(FrameError::InvalidType(other)),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,20}".prop_map(Frame::Simple),
            "ERR [a-z ]{0,20}".prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Frame::Bulk(v.into())),
            Just(Frame::Null),
            any::<bool>().prop_map(Frame::Boolean),
            (-1e300f64..1e300).prop_map(Frame::Double),
            "[0-9]{1,40}".prop_map(Frame::BigNumber),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Array),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Set),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Push),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn fuzz_encode_then_parse_round_trips(frame in arb_frame()) {
            let mut out = Vec::new();
            frame.encode(&mut out);
            let (back, used) = Frame::parse(&out, &Limits::default()).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            // %.17g round-trips every double exactly, so equality is exact.
            prop_assert_eq!(&frame, &back);
            // Every strict prefix is incomplete, never an error and never a different frame.
            for cut in 0..out.len() {
                prop_assert_eq!(Frame::parse(&out[..cut], &Limits::default()).unwrap(), None);
            }
        }

        #[test]
        fn fuzz_arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Frame::parse(&data, &Limits::default());
            let mut d = crate::RequestDecoder::new(Limits::default());
            let mut buf = bytes::BytesMut::from(&data[..]);
            while let Ok(Some(_)) = d.decode(&mut buf, true) {}
        }
    }

    #[test]
    fn refuses_oversize_and_deep_frames() {
        let limits = Limits {
            bulk_len_max_bytes: 10,
            frame_depth_max: 3,
            ..Limits::default()
        };
        assert!(matches!(
            Frame::parse(b"$11\r\n", &limits),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(
            Frame::parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", &limits),
            Err(FrameError::TooDeep(3))
        );
        assert_eq!(
            Frame::parse(b"?\r\n", &limits),
            Err(FrameError::InvalidType(b'?'))
        );
    }
}
