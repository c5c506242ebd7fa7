//! HyperLogLog commands (PFADD, PFCOUNT, PFMERGE, PFDEBUG, PFSELFTEST) over strings laid out
//! exactly as Redis lays them out, so a sketch written by redis-server counts the same here
//! and the other way round.
//!
//! A sketch is a 16-byte header ("HYLL", the encoding, three reserved bytes, the cached
//! cardinality little-endian with its top bit set when stale) followed by 16384 six-bit
//! registers, either dense (12288 bytes, register 0 in the low bits of byte 0) or sparse:
//! run-length opcodes ZERO `00llllll`, XZERO `01llllll llllllll` and VAL `1vvvvvll`.
//! Sparse sketches turn dense once they would outgrow `hll-sparse-max-bytes` or hold a
//! register above 32. Elements are hashed with MurmurHash64A and Redis's seed. Strings that
//! are not valid sketches are refused with Redis's errors, never trusted: opcodes that run
//! past the last register make a sketch corrupt, as in redis-server with the fix for
//! CVE-2025-32023 (Debian's 7.0.15 has it).

use bytes::Bytes;

use crate::ctx::{is, lossy};
use crate::{CmdError, CmdResult, Ctx, Str, Value, notify};

/// Bits of the hash that pick a register.
const INDEX_BITS: u32 = 14;
/// The rest of the hash, whose run of zeros a register keeps the longest of.
const RUN_BITS: u32 = 64 - INDEX_BITS;
const REGISTERS: usize = 1 << INDEX_BITS;
const REGISTER_BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << REGISTER_BITS) - 1;
const HEADER_BYTES: usize = 16;
const DENSE_BYTES: usize = HEADER_BYTES + (REGISTERS * REGISTER_BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const HASH_SEED: u64 = 0xadc8_3b19;
/// The largest value and run a sparse VAL opcode holds.
const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
/// The longest run a ZERO opcode holds; XZERO holds up to all registers.
const SPARSE_ZERO_MAX_LEN: usize = 64;
const SPARSE_XZERO_MAX_LEN: usize = 16384;
/// 0.5 / ln(2): the estimator's constant for an unbounded number of registers.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

const CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";

/// The sketch's bytes do not describe 16384 registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Corrupt;

impl From<Corrupt> for CmdError {
    fn from(_: Corrupt) -> Self {
        CmdError::other(CORRUPT)
    }
}

/// MurmurHash64A (Austin Appleby), little-endian reads as on the machines Redis runs on.
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in and the length of its run of zeros plus one.
fn register_and_run(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, HASH_SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    // The extra top bit bounds the run at RUN_BITS + 1.
    let rest = (hash >> INDEX_BITS) | (1u64 << RUN_BITS);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn dense_get(registers: &[u8], index: usize) -> u8 {
    let byte = index * REGISTER_BITS / 8;
    let shift = (index * REGISTER_BITS) & 7;
    let b0 = u16::from(registers.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> shift) | (b1 << (8 - shift))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_put(registers: &mut [u8], index: usize, value: u8) {
    let byte = index * REGISTER_BITS / 8;
    let shift = (index * REGISTER_BITS) & 7;
    let v = u16::from(value);
    let max = u16::from(REGISTER_MAX);
    if let Some(b) = registers.get_mut(byte) {
        *b = ((u16::from(*b) & !(max << shift)) | (v << shift)) as u8;
    }
    if let Some(b) = registers.get_mut(byte + 1) {
        *b = ((u16::from(*b) & !(max >> (8 - shift))) | (v >> (8 - shift))) as u8;
    }
}

/// Raises a dense register to `value`; whether it changed.
fn dense_raise(registers: &mut [u8], index: usize, value: u8) -> bool {
    if value > dense_get(registers, index) {
        dense_put(registers, index, value);
        true
    } else {
        false
    }
}

/// One sparse opcode: how many registers it covers, their value, its length in bytes.
#[derive(Debug, Clone, Copy)]
struct Op {
    run: usize,
    value: u8,
    bytes: usize,
}

fn is_xzero(b: u8) -> bool {
    b & 0xc0 == 0x40
}

fn is_zero(b: u8) -> bool {
    b & 0xc0 == 0
}

fn is_val(b: u8) -> bool {
    b & 0x80 != 0
}

/// Reads the opcode at `p` (`p` in bounds); a cut-off XZERO reads its missing byte as 0.
fn op_at(s: &[u8], p: usize) -> Op {
    let b = s[p];
    if is_zero(b) {
        Op {
            run: usize::from(b & 0x3f) + 1,
            value: 0,
            bytes: 1,
        }
    } else if is_xzero(b) {
        let low = usize::from(s.get(p + 1).copied().unwrap_or(0));
        Op {
            run: ((usize::from(b & 0x3f) << 8) | low) + 1,
            value: 0,
            bytes: 2,
        }
    } else {
        Op {
            run: usize::from(b & 0x3) + 1,
            value: ((b >> 2) & 0x1f) + 1,
            bytes: 1,
        }
    }
}

fn val_op(value: u8, run: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (run as u8 - 1)
}

fn push_zeros(seq: &mut Vec<u8>, run: usize) {
    if run > SPARSE_ZERO_MAX_LEN {
        let l = run - 1;
        seq.push(0x40 | (l >> 8) as u8);
        seq.push((l & 0xff) as u8);
    } else {
        seq.push(run as u8 - 1);
    }
}

/// A new, empty sketch: sparse, all registers in XZERO runs, cached cardinality 0.
fn new_sketch() -> Vec<u8> {
    let mut s = Vec::with_capacity(HEADER_BYTES + 2);
    s.extend_from_slice(b"HYLL");
    s.push(SPARSE);
    s.extend_from_slice(&[0; 11]);
    let mut left = REGISTERS;
    while left > 0 {
        let run = left.min(SPARSE_XZERO_MAX_LEN);
        let l = run - 1;
        s.push(0x40 | (l >> 8) as u8);
        s.push((l & 0xff) as u8);
        left -= run;
    }
    s
}

/// Redis's check that a string is a sketch at all (header, encoding, dense length).
fn check_sketch(s: &[u8]) -> Result<(), CmdError> {
    let valid = s.len() >= HEADER_BYTES
        && &s[..4] == b"HYLL"
        && s[4] <= SPARSE
        && (s[4] != DENSE || s.len() == DENSE_BYTES);
    if valid {
        Ok(())
    } else {
        Err(CmdError::other(
            "WRONGTYPE Key is not a valid HyperLogLog string value.",
        ))
    }
}

fn invalidate_cache(s: &mut [u8]) {
    s[15] |= 0x80;
}

fn cached_card(s: &[u8]) -> Option<u64> {
    (s[15] & 0x80 == 0).then(|| u64::from_le_bytes(s[8..16].try_into().expect("8 bytes")))
}

/// The sketch in dense form (already dense: unchanged).
fn to_dense(s: &[u8]) -> Result<Vec<u8>, Corrupt> {
    if s[4] == DENSE {
        return Ok(s.to_vec());
    }
    let mut dense = vec![0u8; DENSE_BYTES];
    dense[..HEADER_BYTES].copy_from_slice(&s[..HEADER_BYTES]);
    dense[4] = DENSE;
    let mut index = 0;
    let mut p = HEADER_BYTES;
    while p < s.len() {
        let op = op_at(s, p);
        if index + op.run > REGISTERS {
            return Err(Corrupt);
        }
        for i in index..index + op.run {
            if op.value > 0 {
                dense_put(&mut dense[HEADER_BYTES..], i, op.value);
            }
        }
        index += op.run;
        p += op.bytes;
    }
    if index == REGISTERS {
        Ok(dense)
    } else {
        Err(Corrupt)
    }
}

/// Opcode boundaries of one sparse sketch, (first register, byte position), so that a run
/// of updates (a PFADD of many elements, a PFMERGE) walks a few opcodes from the nearest one
/// instead of from the first opcode each time. Kept valid through the updates it is handed
/// to; starts with the first opcode alone.
struct Marks {
    at: Vec<(usize, usize)>,
}

/// Opcodes walked past before a new mark is left.
const MARK_SPACING_OPCODES: usize = 16;

impl Marks {
    fn new() -> Marks {
        Marks {
            at: vec![(0, HEADER_BYTES)],
        }
    }

    /// Bytes after `pos` moved by `delta`.
    fn shift(&mut self, pos: usize, delta: isize) {
        for m in self.at.iter_mut().filter(|m| m.1 > pos) {
            m.1 = m.1.wrapping_add_signed(delta);
        }
    }

    /// The opcode at `pos` was joined into the one before it, at `pos - 1`.
    fn joined(&mut self, pos: usize) {
        self.at.retain(|m| m.1 != pos);
        self.shift(pos, -1);
    }

    fn add(&mut self, first: usize, pos: usize) {
        let i = self.at.partition_point(|m| m.1 < pos);
        if self.at.get(i).map(|m| m.1) != Some(pos) {
            self.at.insert(i, (first, pos));
        }
    }
}

/// Raises register `index` of a sparse sketch to `value`, rewriting its opcodes in place,
/// or turning the sketch dense when a register outgrows VAL or the string would outgrow
/// `sparse_max_bytes`. Whether a register changed.
fn sparse_raise(
    s: &mut Vec<u8>,
    index: usize,
    value: u8,
    sparse_max_bytes: usize,
    marks: &mut Marks,
) -> Result<bool, Corrupt> {
    if value > SPARSE_VAL_MAX_VALUE {
        return promote(s, index, value);
    }
    // Find the opcode covering `index`, starting two marks back so that the opcode before
    // it (where joins start) is seen on the way.
    let nearest = marks.at.partition_point(|m| m.0 <= index);
    let (mut first, mut p) = marks.at[nearest.saturating_sub(2)];
    let mut prev = None;
    let mut op = Op {
        run: 0,
        value: 0,
        bytes: 1,
    };
    let mut walked = 0;
    while p < s.len() {
        op = op_at(s, p);
        if index < first + op.run {
            break;
        }
        prev = Some(p);
        p += op.bytes;
        first += op.run;
        walked += 1;
        if walked % MARK_SPACING_OPCODES == 0 && p < s.len() {
            marks.add(first, p);
        }
    }
    if op.run == 0 || p >= s.len() || p + op.bytes > s.len() {
        return Err(Corrupt);
    }
    let xzero = is_xzero(s[p]);
    let replace_with: Option<Vec<u8>> = if op.value > 0 {
        if op.value >= value {
            return Ok(false);
        }
        if op.run == 1 {
            s[p] = val_op(value, 1);
            None
        } else {
            // Split the run: VAL(old) VAL(new) VAL(old) around the register.
            let mut seq = Vec::with_capacity(3);
            if index != first {
                seq.push(val_op(op.value, index - first));
            }
            seq.push(val_op(value, 1));
            let last = first + op.run - 1;
            if index != last {
                seq.push(val_op(op.value, last - index));
            }
            Some(seq)
        }
    } else if op.run == 1 && !xzero {
        s[p] = val_op(value, 1);
        None
    } else {
        let mut seq = Vec::with_capacity(5);
        if index != first {
            push_zeros(&mut seq, index - first);
        }
        seq.push(val_op(value, 1));
        let last = first + op.run - 1;
        if index != last {
            push_zeros(&mut seq, last - index);
        }
        Some(seq)
    };
    if let Some(seq) = replace_with {
        if seq.len() > op.bytes && s.len() + seq.len() - op.bytes > sparse_max_bytes {
            return promote(s, index, value);
        }
        let delta = seq.len() as isize - op.bytes as isize;
        s.splice(p..p + op.bytes, seq);
        marks.shift(p, delta);
    }
    merge_adjacent_vals(s, prev.unwrap_or(HEADER_BYTES), marks);
    invalidate_cache(s);
    Ok(true)
}

/// Joins neighbouring VAL opcodes of equal value, looking at a few opcodes from `p` (the
/// only place an update can have made a join possible).
fn merge_adjacent_vals(s: &mut Vec<u8>, mut p: usize, marks: &mut Marks) {
    let mut opcodes_left = 5;
    while p < s.len() && opcodes_left > 0 {
        opcodes_left -= 1;
        let b = s[p];
        if is_xzero(b) {
            p += 2;
            continue;
        }
        if is_zero(b) {
            p += 1;
            continue;
        }
        if p + 1 < s.len() && is_val(s[p + 1]) {
            let (a, next) = (op_at(s, p), op_at(s, p + 1));
            if a.value == next.value && a.run + next.run <= SPARSE_VAL_MAX_LEN {
                s[p + 1] = val_op(a.value, a.run + next.run);
                s.remove(p);
                marks.joined(p + 1);
                // Try the joined run against its right neighbour too.
                continue;
            }
        }
        p += 1;
    }
}

fn promote(s: &mut Vec<u8>, index: usize, value: u8) -> Result<bool, Corrupt> {
    let mut dense = to_dense(s)?;
    dense_raise(&mut dense[HEADER_BYTES..], index, value);
    *s = dense;
    Ok(true)
}

/// Adds an element; whether a register changed. `marks` belong to `s`.
fn add_marked(
    s: &mut Vec<u8>,
    element: &[u8],
    sparse_max_bytes: usize,
    marks: &mut Marks,
) -> Result<bool, Corrupt> {
    let (index, run) = register_and_run(element);
    match s[4] {
        DENSE => Ok(dense_raise(&mut s[HEADER_BYTES..], index, run)),
        SPARSE => sparse_raise(s, index, run, sparse_max_bytes, marks),
        _ => Err(Corrupt),
    }
}

#[cfg(test)]
fn add(s: &mut Vec<u8>, element: &[u8], sparse_max_bytes: usize) -> Result<bool, Corrupt> {
    add_marked(s, element, sparse_max_bytes, &mut Marks::new())
}

/// How many registers hold each value.
type Histogram = [u64; 64];

/// Calls `f(index, value)` for every register of dense `registers`, four (three bytes) at
/// a time.
fn for_each_dense(registers: &[u8], mut f: impl FnMut(usize, u8)) {
    let mut i = 0;
    for chunk in registers.chunks_exact(3) {
        let word = u32::from(chunk[0]) | u32::from(chunk[1]) << 8 | u32::from(chunk[2]) << 16;
        f(i, (word & 63) as u8);
        f(i + 1, ((word >> 6) & 63) as u8);
        f(i + 2, ((word >> 12) & 63) as u8);
        f(i + 3, (word >> 18) as u8);
        i += 4;
    }
}

fn histogram(s: &[u8]) -> Result<Histogram, Corrupt> {
    let mut h = [0u64; 64];
    if s[4] == DENSE {
        for_each_dense(&s[HEADER_BYTES..], |_, v| h[usize::from(v)] += 1);
        return Ok(h);
    }
    let (mut index, mut p) = (0, HEADER_BYTES);
    while p < s.len() {
        let op = op_at(s, p);
        if index + op.run > REGISTERS {
            return Err(Corrupt);
        }
        index += op.run;
        h[usize::from(op.value)] += op.run as u64;
        p += op.bytes;
    }
    if index == REGISTERS {
        Ok(h)
    } else {
        Err(Corrupt)
    }
}

fn raw_histogram(registers: &[u8; REGISTERS]) -> Histogram {
    let mut h = [0u64; 64];
    for &r in registers {
        h[usize::from(r & 63)] += 1;
    }
    h
}

/// The cardinality estimate from the registers' histogram (Otmar Ertl's improved
/// estimator, "New cardinality estimation algorithms for HyperLogLog sketches").
fn estimate(h: &Histogram) -> u64 {
    fn sigma(mut x: f64) -> f64 {
        if x == 1.0 {
            return f64::INFINITY;
        }
        let (mut y, mut z) = (1.0, x);
        loop {
            x *= x;
            let before = z;
            z += x * y;
            y += y;
            if z == before {
                return z;
            }
        }
    }
    fn tau(mut x: f64) -> f64 {
        if x == 0.0 || x == 1.0 {
            return 0.0;
        }
        let (mut y, mut z) = (1.0, 1.0 - x);
        loop {
            x = x.sqrt();
            let before = z;
            y *= 0.5;
            z -= (1.0 - x) * (1.0 - x) * y;
            if z == before {
                return z / 3.0;
            }
        }
    }
    let m = REGISTERS as f64;
    let q = RUN_BITS as usize;
    let mut z = m * tau((m - h[q + 1] as f64) / m);
    for j in (1..=q).rev() {
        z += h[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(h[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// Folds a sketch's registers into `max` (the larger of each).
fn merge_into(max: &mut [u8; REGISTERS], s: &[u8]) -> Result<(), Corrupt> {
    if s[4] == DENSE {
        for_each_dense(&s[HEADER_BYTES..], |i, v| {
            if v > max[i] {
                max[i] = v;
            }
        });
        return Ok(());
    }
    let (mut index, mut p) = (0, HEADER_BYTES);
    while p < s.len() {
        let op = op_at(s, p);
        if index + op.run > REGISTERS {
            return Err(Corrupt);
        }
        if op.value > 0 {
            for m in &mut max[index..index + op.run] {
                *m = (*m).max(op.value);
            }
        }
        index += op.run;
        p += op.bytes;
    }
    if index == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// The sketch under `key` (checked), or None.
fn read_sketch(c: &mut Ctx, key: &[u8]) -> Result<Option<Vec<u8>>, CmdError> {
    match c.ks.string(c.db, key)? {
        None => Ok(None),
        Some(s) => {
            check_sketch(s)?;
            Ok(Some(s.as_bytes().to_vec()))
        }
    }
}

fn write_sketch(c: &mut Ctx, key: &[u8], s: Vec<u8>) {
    c.ks.set_keep_ttl(c.db, key, Value::Str(Str::from_vec(s)));
}

fn sparse_max_bytes(c: &Ctx) -> usize {
    c.ks.encodings.hll_sparse_max_bytes
}

/// PFADD into a dense sketch, changed where it is stored: dense sketches keep their size, so
/// there is no reason to copy 12 KB out and back per command. None when the key holds no
/// valid dense sketch (the general path decides what to answer).
fn pfadd_dense_in_place(c: &mut Ctx, a: &[Bytes]) -> Option<u64> {
    let entry = c.ks.get(c.db, &a[1])?;
    let Value::Str(s) = &mut entry.value else {
        return None;
    };
    let s = s.as_bytes_mut();
    if check_sketch(s).is_err() || s[4] != DENSE {
        return None;
    }
    let mut updated = 0;
    for element in &a[2..] {
        let (index, run) = register_and_run(element);
        if dense_raise(&mut s[HEADER_BYTES..], index, run) {
            updated += 1;
        }
    }
    if updated > 0 {
        invalidate_cache(s);
    }
    // No keyspace hit: Redis counts those for reads, and PFADD looks its key up to write.
    Some(updated)
}

pub fn pfadd(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    if let Some(updated) = pfadd_dense_in_place(c, a) {
        if updated > 0 {
            c.changed(&a[1], notify::STRING, "pfadd");
            c.ks.dirty += updated - 1;
        }
        c.out.int(i64::from(updated > 0));
        return Ok(());
    }
    let (mut s, mut updated) = match read_sketch(c, &a[1])? {
        Some(s) => (s, 0),
        None => (new_sketch(), 1),
    };
    let max_bytes = sparse_max_bytes(c);
    let mut marks = Marks::new();
    for element in &a[2..] {
        match add_marked(&mut s, element, max_bytes, &mut marks) {
            Ok(true) => updated += 1,
            Ok(false) => {}
            Err(corrupt) => {
                // Redis updates in place: the elements before the corrupt spot stay added
                // (the reply is the error, and nothing is logged).
                if updated > 0 {
                    write_sketch(c, &a[1], s);
                }
                return Err(corrupt.into());
            }
        }
    }
    if updated > 0 {
        invalidate_cache(&mut s);
        write_sketch(c, &a[1], s);
        c.changed(&a[1], notify::STRING, "pfadd");
        c.ks.dirty += updated - 1;
    }
    c.out.int(i64::from(updated > 0));
    Ok(())
}

pub fn pfcount(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    if a.len() > 2 {
        let mut max = [0u8; REGISTERS];
        for key in &a[1..] {
            if let Some(s) = read_sketch(c, key)? {
                merge_into(&mut max, &s)?;
            }
        }
        c.out.int(estimate(&raw_histogram(&max)) as i64);
        return Ok(());
    }
    // The cached cardinality is read where the sketch is stored; only a stale cache copies
    // the sketch out (`Err`: the stale sketch).
    let cached: Result<u64, Vec<u8>> = match c.ks.string(c.db, &a[1])? {
        None => Ok(0),
        Some(s) => {
            check_sketch(s)?;
            cached_card(s).ok_or_else(|| s.as_bytes().to_vec())
        }
    };
    let card = match cached {
        Ok(card) => card,
        Err(mut s) => {
            let card = estimate(&histogram(&s)?);
            s[8..16].copy_from_slice(&card.to_le_bytes());
            // The cache is part of the value: saved, logged and replicated like a write.
            write_sketch(c, &a[1], s);
            c.modified(&a[1]);
            card
        }
    };
    c.out.int(card as i64);
    Ok(())
}

pub fn pfmerge(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let mut max = [0u8; REGISTERS];
    let mut dense = false;
    for key in &a[1..] {
        if let Some(s) = read_sketch(c, key)? {
            dense |= s[4] == DENSE;
            merge_into(&mut max, &s)?;
        }
    }
    let mut s = read_sketch(c, &a[1])?.unwrap_or_else(new_sketch);
    if dense {
        s = to_dense(&s)?;
    }
    let max_bytes = sparse_max_bytes(c);
    let mut marks = Marks::new();
    for (i, &m) in max.iter().enumerate() {
        if m == 0 {
            continue;
        }
        if s[4] == DENSE {
            dense_raise(&mut s[HEADER_BYTES..], i, m);
        } else {
            // As Redis: a corrupt destination was checked by the merge above.
            let _ = sparse_raise(&mut s, i, m, max_bytes, &mut marks);
        }
    }
    invalidate_cache(&mut s);
    write_sketch(c, &a[1], s);
    // Redis names PFMERGE's event "pfadd" too.
    c.changed(&a[1], notify::STRING, "pfadd");
    c.out.ok();
    Ok(())
}

/// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key.
pub fn pfdebug(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let sub = &a[1];
    let Some(s) = read_sketch(c, &a[2])? else {
        return Err(CmdError::other("ERR The specified key does not exist"));
    };
    if is(sub, "getreg") || is(sub, "todense") {
        let converted = s[4] == SPARSE;
        let dense = to_dense(&s)?;
        let mut registers = Vec::with_capacity(REGISTERS);
        for_each_dense(&dense[HEADER_BYTES..], |_, v| registers.push(v));
        if converted {
            write_sketch(c, &a[2], dense);
            c.modified(&a[2]);
        }
        if is(sub, "todense") {
            c.out.int(i64::from(converted));
        } else {
            c.out.array(REGISTERS);
            for r in registers {
                c.out.int(i64::from(r));
            }
        }
    } else if is(sub, "decode") {
        if s[4] != SPARSE {
            return Err(CmdError::other("ERR HLL encoding is not sparse"));
        }
        let mut parts = Vec::new();
        let mut p = HEADER_BYTES;
        while p < s.len() {
            let op = op_at(&s, p);
            parts.push(if is_val(s[p]) {
                format!("v:{},{}", op.value, op.run)
            } else if is_xzero(s[p]) {
                format!("Z:{}", op.run)
            } else {
                format!("z:{}", op.run)
            });
            p += op.bytes;
        }
        c.out.bulk(parts.join(" ").as_bytes());
    } else if is(sub, "encoding") {
        c.out.simple(if s[4] == DENSE { "dense" } else { "sparse" });
    } else {
        return Err(CmdError::other(format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            lossy(sub)
        )));
    }
    Ok(())
}

/// PFSELFTEST: checks the register packing and the estimator's error, sparse and dense.
pub fn pfselftest(c: &mut Ctx, _a: &[Bytes]) -> CmdResult {
    match self_test() {
        Ok(()) => {
            c.out.ok();
            Ok(())
        }
        Err(msg) => Err(CmdError::other(format!("ERR {msg}"))),
    }
}

fn self_test() -> Result<(), String> {
    // Register packing: random values read back, neighbours untouched.
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut registers = vec![0u8; DENSE_BYTES - HEADER_BYTES];
    let mut expected = [0u8; REGISTERS];
    for _ in 0..8 {
        for (i, e) in expected.iter_mut().enumerate() {
            *e = (next() & u64::from(REGISTER_MAX)) as u8;
            dense_put(&mut registers, i, *e);
        }
        if let Some(i) = (0..REGISTERS).find(|&i| dense_get(&registers, i) != expected[i]) {
            return Err(format!("TESTFAILED Register error at {i}"));
        }
    }
    // Estimates, sparse (kept sparse as long as possible) and dense, against the error bound.
    let mut sparse = new_sketch();
    let mut dense = to_dense(&sparse).map_err(|_| "TESTFAILED new sketch".to_string())?;
    let relative_error = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1;
    let mut marks = Marks::new();
    for n in 1..=100_000u64 {
        let element = n.to_le_bytes();
        add_marked(&mut sparse, &element, 3000, &mut marks).map_err(|_| "TESTFAILED sparse add")?;
        add_marked(&mut dense, &element, usize::MAX, &mut Marks::new())
            .map_err(|_| "TESTFAILED dense add")?;
        if n == checkpoint {
            for s in [&sparse, &dense] {
                let h = histogram(s).map_err(|_| "TESTFAILED histogram")?;
                let estimate = estimate(&h) as f64;
                let bound = (relative_error * 6.0 * n as f64).max(1.0);
                if (estimate - n as f64).abs() > bound {
                    return Err(format!(
                        "TESTFAILED Too big error. card:{n} abserr:{}",
                        (estimate - n as f64).abs()
                    ));
                }
            }
            checkpoint *= 10;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &[u8]) -> String {
        s.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sketch_of(elements: impl IntoIterator<Item = String>) -> Vec<u8> {
        let mut s = new_sketch();
        for e in elements {
            add(&mut s, e.as_bytes(), 3000).unwrap();
        }
        invalidate_cache(&mut s);
        s
    }

    #[test]
    fn sketches_match_redis_byte_for_byte() {
        // redis-server 7.0.15: PFADD h1 a b c foo bar; GET h1.
        let h1 = sketch_of(["a", "b", "c", "foo", "bar"].map(String::from));
        assert_eq!(
            hex(&h1),
            "48594c4c0100000000000000000000805cb390443e804621804a8e844bfb80425a"
        );
        assert_eq!(estimate(&histogram(&h1).unwrap()), 5);
        // PFADD h3 m1 .. m60; GET h3.
        let h3 = sketch_of((1..=60).map(|i| format!("m{i}")));
        assert_eq!(hex(&h3), H3_FROM_REDIS);
        assert_eq!(estimate(&histogram(&h3).unwrap()), 60);
    }

    #[test]
    fn dense_counts_match_redis() {
        // PFADD h4 e1 .. e5000 gives a dense sketch whose PFCOUNT is 4968.
        let mut s = sketch_of((1..=5000).map(|i| format!("e{i}")));
        assert_eq!(s[4], DENSE);
        assert_eq!(estimate(&histogram(&s).unwrap()), 4968);
        for i in 1..=50_000 {
            add(&mut s, format!("x{i}").as_bytes(), 3000).unwrap();
        }
        assert_eq!(estimate(&histogram(&s).unwrap()), 54857);
    }

    const H3_FROM_REDIS: &str = "48594c4c0100000000000000000000802f8040e084069042db84420380018041398040498c41528040898022801e80406c8040ec90409c880680208440c080410280028441808c41b8841a8040948842c580409a80406680405484358842768040f78041548c41668440678040688040b38040d284415680407a9c44d1802488412d883a80421e8042c78040c38042718440868037804101841a8c414b8440f0801680405c8844568040a180424380406480440b8440f6";

    #[test]
    fn new_sketch_is_one_xzero() {
        let s = new_sketch();
        assert_eq!(hex(&s), "48594c4c0100000000000000000000007fff");
        assert_eq!(histogram(&s).unwrap()[0], REGISTERS as u64);
        assert_eq!(estimate(&histogram(&s).unwrap()), 0);
    }

    #[test]
    fn dense_registers_round_trip_at_the_edges() {
        let mut r = vec![0u8; DENSE_BYTES - HEADER_BYTES];
        for i in [0, 1, 2, 3, 4, REGISTERS - 2, REGISTERS - 1] {
            dense_put(&mut r, i, 63);
            assert_eq!(dense_get(&r, i), 63);
            dense_put(&mut r, i, 5);
            assert_eq!(dense_get(&r, i), 5);
        }
        assert_eq!(dense_get(&r, 5), 0);
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut sparse = new_sketch();
        let mut dense = to_dense(&sparse).unwrap();
        for i in 0..2000u32 {
            let e = format!("element:{i}");
            add(&mut sparse, e.as_bytes(), usize::MAX).unwrap();
            add(&mut dense, e.as_bytes(), usize::MAX).unwrap();
        }
        assert_eq!(sparse[4], SPARSE);
        assert_eq!(to_dense(&sparse).unwrap()[16..], dense[16..]);
        let n = estimate(&histogram(&sparse).unwrap());
        assert_eq!(n, estimate(&histogram(&dense).unwrap()));
        assert!((1900..2100).contains(&n), "{n}");
    }

    #[test]
    fn marked_updates_build_the_same_bytes() {
        // One PFADD of many elements (marks kept across) against one PFADD per element.
        let elements: Vec<String> = (0..1500).map(|i| format!("{}", i * 7919)).collect();
        let mut one_by_one = new_sketch();
        for e in &elements {
            add(&mut one_by_one, e.as_bytes(), 3000).unwrap();
        }
        let mut batched = new_sketch();
        let mut marks = Marks::new();
        for e in &elements {
            add_marked(&mut batched, e.as_bytes(), 3000, &mut marks).unwrap();
        }
        assert_eq!(one_by_one, batched);
        assert!(marks.at.len() > 10);
    }

    #[test]
    fn dense_scan_matches_register_reads() {
        let mut r = vec![0u8; DENSE_BYTES - HEADER_BYTES];
        for i in 0..REGISTERS {
            dense_put(&mut r, i, (i * 31 % 64) as u8);
        }
        let mut seen = 0;
        for_each_dense(&r, |i, v| {
            assert_eq!(v, dense_get(&r, i));
            seen += 1;
        });
        assert_eq!(seen, REGISTERS);
    }

    #[test]
    fn sparse_turns_dense_past_the_limit() {
        let mut s = new_sketch();
        for i in 0..1000u32 {
            add(&mut s, &i.to_be_bytes(), 300).unwrap();
        }
        assert_eq!(s[4], DENSE);
        assert_eq!(s.len(), DENSE_BYTES);
    }

    #[test]
    fn runs_past_the_last_register_are_corrupt() {
        // All registers in one XZERO, then a VAL beyond them: every reader refuses it.
        let mut s = new_sketch();
        s.push(val_op(3, 1));
        assert_eq!(to_dense(&s), Err(Corrupt));
        assert_eq!(histogram(&s), Err(Corrupt));
        assert_eq!(merge_into(&mut [0; REGISTERS], &s), Err(Corrupt));
    }

    #[test]
    fn corrupt_sparse_is_detected() {
        let mut s = new_sketch();
        s.push(0x00);
        assert_eq!(histogram(&s), Err(Corrupt));
        assert_eq!(to_dense(&s), Err(Corrupt));
        let mut cut = new_sketch();
        cut.pop();
        assert_eq!(histogram(&cut), Err(Corrupt));
        assert_eq!(
            sparse_raise(&mut cut, 16383, 3, 3000, &mut Marks::new()),
            Err(Corrupt)
        );
        assert!(self_test().is_ok());
    }
}
