//! `Str`: the byte string stored for keys, values and collection members.
//!
//! Short strings (most keys and many values) live inline in the 24-byte value itself, so a
//! small key costs no allocation of its own; longer ones take one exact-size heap block.
//! A string that APPEND, SETRANGE or SETBIT lengthens keeps room to grow, as Redis's sds
//! does, so building one piece by piece costs time in proportion to its length, not to its
//! square. Stored strings never borrow the connection's read buffer.

use std::borrow::Borrow;
use std::fmt;

const INLINE_MAX: usize = 22;
/// A growing string gets twice the length it needs up to this size, and this much more
/// beyond it (Redis's `SDS_MAX_PREALLOC`).
const GROWTH_MAX_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub enum Str {
    Inline {
        len: u8,
        data: [u8; INLINE_MAX],
    },
    Heap(Box<[u8]>),
    /// Lengthened in place: its capacity is room for more.
    Grown(Box<Vec<u8>>),
}

impl Str {
    pub fn new(bytes: &[u8]) -> Str {
        if bytes.len() <= INLINE_MAX {
            let mut data = [0u8; INLINE_MAX];
            data[..bytes.len()].copy_from_slice(bytes);
            Str::Inline {
                len: bytes.len() as u8,
                data,
            }
        } else {
            Str::Heap(bytes.into())
        }
    }

    pub fn from_vec(v: Vec<u8>) -> Str {
        if v.len() <= INLINE_MAX {
            Str::new(&v)
        } else {
            Str::Heap(v.into_boxed_slice())
        }
    }

    /// A string made to be changed in place (SETRANGE and SETBIT create their keys so):
    /// Redis's "raw" encoding, whatever its length.
    pub fn raw(v: Vec<u8>) -> Str {
        Str::Grown(Box::new(v))
    }

    pub fn from_i64(n: i64) -> Str {
        Str::new(itoa::Buffer::new().format(n).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Str::Inline { len, data } => &data[..*len as usize],
            Str::Heap(b) => b,
            Str::Grown(v) => v,
        }
    }

    /// The bytes, to change in place (the length stays).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Str::Inline { len, data } => &mut data[..*len as usize],
            Str::Heap(b) => b,
            Str::Grown(v) => v,
        }
    }

    /// The bytes as a vector with room to grow (Redis's greedy growth), for a command
    /// that lengthens the string in place.
    pub fn growable(&mut self, extra: usize) -> &mut Vec<u8> {
        if !matches!(self, Str::Grown(_)) {
            // An empty inline string holds the place without an allocation.
            let old = std::mem::replace(self, Str::new(b""));
            let v = match old {
                Str::Heap(b) => b.into_vec(),
                other => other.as_bytes().to_vec(),
            };
            *self = Str::Grown(Box::new(v));
        }
        let Str::Grown(v) = self else {
            unreachable!("made growable above")
        };
        let needed = v.len().saturating_add(extra);
        if needed > v.capacity() {
            let target = if needed < GROWTH_MAX_BYTES {
                needed * 2
            } else {
                needed.saturating_add(GROWTH_MAX_BYTES)
            };
            v.reserve_exact(target - v.len());
        }
        v
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes this string owns beyond its own 24 bytes.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Str::Inline { .. } => 0,
            Str::Heap(b) => b.len(),
            Str::Grown(v) => std::mem::size_of::<Vec<u8>>() + v.capacity(),
        }
    }
}

impl std::ops::Deref for Str {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for Str {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Str {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Str {}

impl PartialOrd for Str {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Str {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for Str {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl From<&[u8]> for Str {
    fn from(b: &[u8]) -> Str {
        Str::new(b)
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Str {
        Str::new(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_hold_the_same_bytes() {
        assert_eq!(std::mem::size_of::<Str>(), 24);
        for len in [0, 1, 22, 23, 100] {
            let v: Vec<u8> = (0..len as u8).collect();
            let s = Str::new(&v);
            assert_eq!(s.as_bytes(), &v[..]);
            assert_eq!(matches!(s, Str::Inline { .. }), len <= 22);
            assert_eq!(Str::from_vec(v.clone()), s);
        }
    }

    #[test]
    fn a_growing_string_reallocates_rarely() {
        let mut s = Str::new(b"abc");
        let mut moves = 0;
        let mut last = std::ptr::null();
        for i in 0..10_000u32 {
            s.growable(10).extend_from_slice(&i.to_le_bytes());
            if s.as_bytes().as_ptr() != last {
                moves += 1;
                last = s.as_bytes().as_ptr();
            }
        }
        assert_eq!(s.len(), 3 + 4 * 10_000);
        assert_eq!(&s[..3], b"abc");
        assert!(moves < 20, "{moves} reallocations");
        assert!(s.heap_bytes() >= s.len());
        assert_eq!(std::mem::size_of::<Str>(), 24);
    }
}
