//! LZF compression as RDB strings carry it, with a hash table kept from one string to
//! the next. Redis compresses every string over 20 bytes, so a dump of small collections
//! compresses hundreds of thousands of blobs of a few hundred bytes; the `lzf_rust`
//! compressor zeroes a 256 KiB table on every call, which took more time than the rest of
//! a SAVE. Like liblzf (which Redis builds without initializing its table), a position
//! the table remembers is only a hint: the bytes there are compared before a match is
//! used, so a stale entry from an earlier string costs nothing but a miss. Decompression
//! stays with `lzf_rust`.

/// Positions hashed by their first three bytes: 2^14 slots (64 KiB) find the matches
/// strings of a few KiB have; Redis's 2^16 matter only for much longer ones.
const HASH_LOG: u32 = 14;
const HASH_SLOTS: usize = 1 << HASH_LOG;
/// A back-reference reaches at most this far back (13 bits of offset)...
const MAX_OFFSET: usize = 1 << 13;
/// ...and copies at most this many bytes (3 bits plus one extension byte, plus 2).
const MAX_MATCH: usize = (1 << 8) + (1 << 3);
/// A literal run holds at most this many bytes (5 bits).
const MAX_LITERAL: usize = 1 << 5;

#[derive(Debug)]
pub struct Compressor {
    table: Box<[u32; HASH_SLOTS]>,
}

impl Default for Compressor {
    fn default() -> Self {
        let table = vec![0; HASH_SLOTS].into_boxed_slice();
        Compressor {
            table: table.try_into().expect("HASH_SLOTS entries"),
        }
    }
}

/// The slot of three bytes (the low 24 bits of `v`).
fn slot(v: u32) -> usize {
    ((v & 0xff_ffff).wrapping_mul(0x9E37_79B1) >> (32 - HASH_LOG)) as usize
}

/// Bytes `at..at + 3` of `input` as the low 24 bits, first byte highest.
fn three(input: &[u8], at: usize) -> u32 {
    (u32::from(input[at]) << 16) | (u32::from(input[at + 1]) << 8) | u32::from(input[at + 2])
}

impl Compressor {
    /// Compresses `input` into `out` (cleared first); false when the result would be
    /// longer than `max_out` bytes (then `out` holds nothing useful).
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>, max_out: usize) -> bool {
        out.clear();
        let n = input.len();
        let mut literal_from = 0;
        let mut ip = 0;
        // The three bytes at `ip`, rolled forward one byte per step.
        let mut v = match input {
            [a, b, ..] => (u32::from(*a) << 8) | u32::from(*b),
            _ => 0,
        };
        while ip + 2 < n {
            v = (v << 8) | u32::from(input[ip + 2]);
            let at = slot(v);
            let candidate = self.table[at] as usize;
            self.table[at] = ip as u32;
            let found = candidate < ip
                && ip - candidate <= MAX_OFFSET
                && three(input, candidate) == v & 0xff_ffff;
            if !found {
                ip += 1;
                // The literals alone are already too long: give up early.
                if out.len() + (ip - literal_from) > max_out {
                    return false;
                }
                continue;
            }
            push_literals(out, &input[literal_from..ip]);
            let max_len = (n - ip).min(MAX_MATCH);
            let mut len = 3;
            while len < max_len && input[candidate + len] == input[ip + len] {
                len += 1;
            }
            let offset = ip - candidate - 1;
            let coded_len = len - 2;
            if coded_len < 7 {
                out.push(((coded_len << 5) | (offset >> 8)) as u8);
            } else {
                out.push(((7 << 5) | (offset >> 8)) as u8);
                out.push((coded_len - 7) as u8);
            }
            out.push(offset as u8);
            ip += len;
            literal_from = ip;
            if out.len() > max_out {
                return false;
            }
            // The last two positions of the match are remembered too (liblzf's
            // VERY_FAST), so repeats that start inside it are found.
            for p in ip - 2..ip {
                if p + 2 < n {
                    self.table[slot(three(input, p))] = p as u32;
                }
            }
            if ip + 1 < n {
                v = (u32::from(input[ip]) << 8) | u32::from(input[ip + 1]);
            }
        }
        push_literals(out, &input[literal_from..]);
        out.len() <= max_out
    }
}

fn push_literals(out: &mut Vec<u8>, bytes: &[u8]) {
    for run in bytes.chunks(MAX_LITERAL) {
        out.push((run.len() - 1) as u8);
        out.extend_from_slice(run);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(c: &mut Compressor, input: &[u8]) -> Option<usize> {
        let mut out = Vec::new();
        if !c.compress(input, &mut out, input.len()) {
            return None;
        }
        let mut back = vec![0; input.len()];
        let n = lzf_rust::decompress(&out, &mut back).expect("valid lzf");
        assert_eq!(&back[..n], input);
        Some(out.len())
    }

    #[test]
    fn repetitive_input_shrinks_and_reads_back() {
        let mut c = Compressor::default();
        let text = "field:1 value-1 field:2 value-2 field:3 value-3 ".repeat(20);
        let n = round_trip(&mut c, text.as_bytes()).expect("compressible");
        assert!(n * 4 < text.len(), "{n} of {}", text.len());
        // Long runs use the extended length and the whole 13-bit reach.
        let mut long = vec![b'a'; 10_000];
        long.extend((0..9000u32).map(|i| (i * 7919 % 251) as u8));
        long.extend_from_within(10_000..18_000);
        round_trip(&mut c, &long).expect("compressible");
    }

    #[test]
    fn incompressible_input_is_refused_within_the_bound() {
        let mut c = Compressor::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(round_trip(&mut c, &noise), None);
    }

    proptest! {
        /// One compressor over many inputs: what earlier ones left in the table never
        /// makes a later one wrong.
        #[test]
        fn any_input_reads_back(inputs in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..600),
                proptest::collection::vec(0u8..3, 0..3000),
            ],
            1..6,
        )) {
            let mut c = Compressor::default();
            for input in inputs {
                let mut out = Vec::new();
                if c.compress(&input, &mut out, usize::MAX) {
                    let mut back = vec![0; input.len()];
                    let n = lzf_rust::decompress(&out, &mut back).unwrap();
                    prop_assert_eq!(&back[..n], &input[..]);
                }
            }
        }
    }
}
