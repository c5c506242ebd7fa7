//! Geo commands: points kept in a sorted set whose scores are Redis's 52-bit interleaved
//! geohashes, searched the way Redis searches them (the centre box and its eight neighbours
//! at a step chosen from the radius, then exact haversine distances), so members, order,
//! distances and the digits printed match redis-server.

use std::cmp::Ordering;
use std::f64::consts::PI;

use bytes::Bytes;

use super::zsets::zadd;
use crate::ctx::{float, int, is, lossy};
use crate::value::{Score, ZSet};
use crate::{CmdError, CmdResult, Ctx, Str, Value, notify};

/// Bits per coordinate in a stored score (26 × 2 = 52, a double's mantissa).
const STEP_MAX: u32 = 26;
/// Web Mercator's latitude limits: Redis refuses points nearer the poles.
const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const LON_MIN: f64 = -180.0;
const LON_MAX: f64 = 180.0;
/// The earth's radius Redis computes distances with (WGS-84's quadratic mean).
const EARTH_RADIUS_METERS: f64 = 6372797.560856;
/// Half the earth's circumference in Mercator metres, for choosing a search step.
const MERCATOR_MAX_METERS: f64 = 20037726.37;
const DEG_TO_RAD: f64 = PI / 180.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HashBits {
    bits: u64,
    step: u32,
}

impl HashBits {
    /// Redis's "zero" hash marks a neighbour box that is not searched.
    const NONE: HashBits = HashBits { bits: 0, step: 0 };

    fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// The hash left-aligned to 52 bits: a score, or a bound of a score range.
    fn align52(self) -> u64 {
        self.bits << (52 - self.step * 2)
    }
}

#[derive(Debug, Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
}

#[derive(Debug, Clone, Copy)]
struct Area {
    lon: Range,
    lat: Range,
}

const LON_RANGE: Range = Range {
    min: LON_MIN,
    max: LON_MAX,
};
const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// Spreads `even`'s bits over the even bit positions and `odd`'s over the odd ones.
fn interleave(even: u32, odd: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut x = u64::from(v);
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x << 2)) & 0x3333_3333_3333_3333;
        (x | (x << 1)) & 0x5555_5555_5555_5555
    }
    spread(even) | (spread(odd) << 1)
}

/// The inverse of [`interleave`]: (even bits, odd bits).
fn deinterleave(v: u64) -> (u32, u32) {
    fn squash(v: u64) -> u32 {
        let mut x = v & 0x5555_5555_5555_5555;
        x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
        x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
        x as u32
    }
    (squash(v), squash(v >> 1))
}

/// Latitude goes to the even bits, longitude to the odd ones, as in Redis.
fn encode(lon_range: Range, lat_range: Range, lon: f64, lat: f64, step: u32) -> Option<HashBits> {
    if !(1..=32).contains(&step)
        || !(LON_MIN..=LON_MAX).contains(&lon)
        || !(LAT_MIN..=LAT_MAX).contains(&lat)
        || !(lat_range.min..=lat_range.max).contains(&lat)
        || !(lon_range.min..=lon_range.max).contains(&lon)
    {
        return None;
    }
    let cells = (1u64 << step) as f64;
    let lat_offset = (lat - lat_range.min) / (lat_range.max - lat_range.min) * cells;
    let lon_offset = (lon - lon_range.min) / (lon_range.max - lon_range.min) * cells;
    Some(HashBits {
        bits: interleave(lat_offset as u32, lon_offset as u32),
        step,
    })
}

fn encode_wgs84(lon: f64, lat: f64, step: u32) -> Option<HashBits> {
    encode(LON_RANGE, LAT_RANGE, lon, lat, step)
}

fn decode(hash: HashBits) -> Area {
    let (lat_cell, lon_cell) = deinterleave(hash.bits);
    let cells = (1u64 << hash.step) as f64;
    let lat_scale = LAT_MAX - LAT_MIN;
    let lon_scale = LON_MAX - LON_MIN;
    let lat_cell = f64::from(lat_cell);
    let lon_cell = f64::from(lon_cell);
    Area {
        lat: Range {
            min: LAT_MIN + (lat_cell / cells) * lat_scale,
            max: LAT_MIN + ((lat_cell + 1.0) / cells) * lat_scale,
        },
        lon: Range {
            min: LON_MIN + (lon_cell / cells) * lon_scale,
            max: LON_MIN + ((lon_cell + 1.0) / cells) * lon_scale,
        },
    }
}

/// A score's hash bits as redis-server on x86-64 converts them (C's double to uint64_t):
/// scores a GEOADD never writes (negative, 2^64 and above, set with ZADD) decode to the
/// same places there and here.
fn score_bits(score: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if score < TWO_63 {
        // Truncation toward zero; below -2^63 the instruction gives 2^63, as `as` does.
        (score as i64) as u64
    } else if score - TWO_63 < TWO_63 {
        ((score - TWO_63) as i64 as u64) ^ (1 << 63)
    } else {
        // Out of range: the "integer indefinite" 2^63, flipped back to 0.
        0
    }
}

/// The point a stored score stands for: the centre of its cell.
fn score_to_lonlat(score: f64) -> [f64; 2] {
    let area = decode(HashBits {
        bits: score_bits(score),
        step: STEP_MAX,
    });
    [
        ((area.lon.min + area.lon.max) / 2.0).clamp(LON_MIN, LON_MAX),
        ((area.lat.min + area.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX),
    ]
}

fn lonlat_to_score(lon: f64, lat: f64) -> Option<u64> {
    encode_wgs84(lon, lat, STEP_MAX).map(HashBits::align52)
}

/// Moves a hash one cell east (`d` > 0) or west along the longitude (odd) bits.
fn move_x(hash: &mut HashBits, d: i8) {
    if d == 0 {
        return;
    }
    let shift = 64 - hash.step * 2;
    let mut x = hash.bits & 0xAAAA_AAAA_AAAA_AAAA;
    let y = hash.bits & 0x5555_5555_5555_5555;
    let zz = 0x5555_5555_5555_5555u64 >> shift;
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xAAAA_AAAA_AAAA_AAAAu64 >> shift;
    hash.bits = x | y;
}

/// Moves a hash one cell north (`d` > 0) or south along the latitude (even) bits.
fn move_y(hash: &mut HashBits, d: i8) {
    if d == 0 {
        return;
    }
    let shift = 64 - hash.step * 2;
    let x = hash.bits & 0xAAAA_AAAA_AAAA_AAAA;
    let mut y = hash.bits & 0x5555_5555_5555_5555;
    let zz = 0xAAAA_AAAA_AAAA_AAAAu64 >> shift;
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555_5555_5555_5555u64 >> shift;
    hash.bits = x | y;
}

fn neighbour(hash: HashBits, dx: i8, dy: i8) -> HashBits {
    let mut h = hash;
    move_x(&mut h, dx);
    move_y(&mut h, dy);
    h
}

/// Great-circle distance in metres (haversine), as Redis computes it.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let lon1r = lon1 * DEG_TO_RAD;
    let lon2r = lon2 * DEG_TO_RAD;
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let lat1r = lat1 * DEG_TO_RAD;
    let lat2r = lat2 * DEG_TO_RAD;
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_METERS * a.sqrt().asin()
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_METERS * (lat2 * DEG_TO_RAD - lat1 * DEG_TO_RAD).abs()
}

#[derive(Debug, Clone, Copy)]
enum Extent {
    /// Radius, in the unit.
    Radius(f64),
    /// Width and height, in the unit.
    Box(f64, f64),
}

/// What a search looks for: a circle or box around a centre, sizes in the unit of
/// `to_meters`.
#[derive(Debug, Clone, Copy)]
struct Shape {
    center: [f64; 2],
    to_meters: f64,
    extent: Extent,
}

impl Shape {
    /// The distance from the centre to `xy` when `xy` lies inside the shape.
    fn contains(&self, xy: [f64; 2]) -> Option<f64> {
        let [cx, cy] = self.center;
        match self.extent {
            Extent::Radius(r) => {
                let d = distance(cx, cy, xy[0], xy[1]);
                (d <= r * self.to_meters).then_some(d)
            }
            Extent::Box(w, h) => {
                let (w, h) = (w * self.to_meters, h * self.to_meters);
                if lat_distance(cy, xy[1]) > h / 2.0 {
                    return None;
                }
                // Measured along the point's own parallel, as Redis does.
                if distance(xy[0], xy[1], cx, xy[1]) > w / 2.0 {
                    return None;
                }
                Some(distance(cx, cy, xy[0], xy[1]))
            }
        }
    }

    /// [min lon, min lat, max lon, max lat] of the shape.
    fn bounds(&self) -> [f64; 4] {
        let [lon, lat] = self.center;
        let (half_h, half_w) = match self.extent {
            Extent::Radius(r) => (r, r),
            Extent::Box(w, h) => (h / 2.0, w / 2.0),
        };
        let (height, width) = (half_h * self.to_meters, half_w * self.to_meters);
        let lat_delta = (height / EARTH_RADIUS_METERS) / DEG_TO_RAD;
        let lon_delta_top =
            (width / EARTH_RADIUS_METERS / ((lat + lat_delta) * DEG_TO_RAD).cos()) / DEG_TO_RAD;
        let lon_delta_bottom =
            (width / EARTH_RADIUS_METERS / ((lat - lat_delta) * DEG_TO_RAD).cos()) / DEG_TO_RAD;
        // The wider edge is the one nearer the equator.
        let lon_delta = if lat < 0.0 {
            lon_delta_bottom
        } else {
            lon_delta_top
        };
        [
            lon - lon_delta,
            lat - lat_delta,
            lon + lon_delta,
            lat + lat_delta,
        ]
    }

    fn radius_meters(&self) -> f64 {
        match self.extent {
            Extent::Radius(r) => r * self.to_meters,
            Extent::Box(w, h) => {
                ((w / 2.0) * (w / 2.0) + (h / 2.0) * (h / 2.0)).sqrt() * self.to_meters
            }
        }
    }
}

/// The step whose cells are about as large as the search radius.
fn steps_for_radius(mut range_meters: f64, lat: f64) -> u32 {
    if range_meters == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range_meters < MERCATOR_MAX_METERS {
        range_meters *= 2.0;
        step += 1;
    }
    step -= 2;
    // Cells narrow towards the poles.
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u32
}

/// The nine boxes to scan, centre first, then N, S, E, W, NE, NW, SE, SW; unneeded ones are
/// [`HashBits::NONE`].
fn search_boxes(shape: &Shape) -> [HashBits; 9] {
    let [min_lon, min_lat, max_lon, max_lat] = shape.bounds();
    let [lon, lat] = shape.center;
    let mut steps = steps_for_radius(shape.radius_meters(), lat);
    let at = |steps| {
        encode_wgs84(lon, lat, steps).unwrap_or(HashBits {
            bits: 0,
            step: steps,
        })
    };
    let mut hash = at(steps);
    let (north, south) = (
        decode(neighbour(hash, 0, 1)),
        decode(neighbour(hash, 0, -1)),
    );
    let (east, west) = (
        decode(neighbour(hash, 1, 0)),
        decode(neighbour(hash, -1, 0)),
    );
    // Near a cell's edge one neighbour may not reach the bounds: one step coarser does.
    let too_small = north.lat.max < max_lat
        || south.lat.min > min_lat
        || east.lon.max < max_lon
        || west.lon.min > min_lon;
    if steps > 1 && too_small {
        steps -= 1;
        hash = at(steps);
    }
    let area = decode(hash);
    let mut boxes = [
        hash,
        neighbour(hash, 0, 1),
        neighbour(hash, 0, -1),
        neighbour(hash, 1, 0),
        neighbour(hash, -1, 0),
        neighbour(hash, 1, 1),
        neighbour(hash, -1, 1),
        neighbour(hash, 1, -1),
        neighbour(hash, -1, -1),
    ];
    if steps >= 2 {
        let mut drop = |which: &[usize]| which.iter().for_each(|&i| boxes[i] = HashBits::NONE);
        if area.lat.min < min_lat {
            drop(&[2, 8, 7]);
        }
        if area.lat.max > max_lat {
            drop(&[1, 5, 6]);
        }
        if area.lon.min < min_lon {
            drop(&[4, 8, 6]);
        }
        if area.lon.max > max_lon {
            drop(&[3, 7, 5]);
        }
    }
    boxes
}

struct Point {
    member: Str,
    score: f64,
    xy: [f64; 2],
    dist: f64,
}

/// The members inside `shape`, box by box in score order; stops at `limit` (0: none).
fn points_in_shape(z: &ZSet, shape: &Shape, limit: usize) -> Vec<Point> {
    let boxes = search_boxes(shape);
    let mut found = Vec::new();
    let mut last: Option<HashBits> = None;
    for hash in boxes {
        if hash.is_none() {
            continue;
        }
        // Very large radii make neighbours coincide: scan each box once.
        if last == Some(hash) {
            continue;
        }
        if limit != 0 && found.len() >= limit {
            break;
        }
        let min = hash.align52() as f64;
        let max = HashBits {
            bits: hash.bits + 1,
            step: hash.step,
        }
        .align52() as f64;
        for (Score(score), member) in z.order.range((Score(min), Str::new(b""))..) {
            if *score >= max {
                break;
            }
            let xy = score_to_lonlat(*score);
            if let Some(dist) = shape.contains(xy) {
                found.push(Point {
                    member: member.clone(),
                    score: *score,
                    xy,
                    dist,
                });
            }
            if limit != 0 && found.len() >= limit {
                break;
            }
        }
        last = Some(hash);
    }
    found
}

/// Bentley and McIlroy's quicksort ("Engineering a Sort Function", 1993), sorting only the
/// partitions that overlap positions `lo..=hi`: those positions end up holding what a full
/// sort would put there. It is the partial sort Redis uses for COUNT; being unstable, the
/// exact partitioning steps decide the order of equal elements, so they follow the paper's.
fn partial_sort<T>(v: &mut [T], lo: usize, hi: usize, cmp: &impl Fn(&T, &T) -> Ordering) {
    sort_within(v, 0, v.len(), lo, hi, cmp);
}

/// The sort of `v[a..a + n]`, positions absolute.
fn sort_within<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    lo: usize,
    hi: usize,
    cmp: &impl Fn(&T, &T) -> Ordering,
) {
    fn med3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &impl Fn(&T, &T) -> Ordering) -> usize {
        if cmp(&v[a], &v[b]).is_lt() {
            if cmp(&v[b], &v[c]).is_lt() {
                b
            } else if cmp(&v[a], &v[c]).is_lt() {
                c
            } else {
                a
            }
        } else if cmp(&v[b], &v[c]).is_gt() {
            b
        } else if cmp(&v[a], &v[c]).is_lt() {
            a
        } else {
            c
        }
    }
    fn swap_runs<T>(v: &mut [T], a: usize, b: usize, n: usize) {
        for k in 0..n {
            v.swap(a + k, b + k);
        }
    }
    // Whether v[first..=last] holds none of the wanted positions.
    let outside =
        |first: usize, last: usize| (lo < first && hi < first) || (lo > last && hi > last);
    loop {
        if n < 7 {
            for m in a + 1..a + n {
                let mut l = m;
                while l > a && cmp(&v[l - 1], &v[l]).is_gt() {
                    v.swap(l, l - 1);
                    l -= 1;
                }
            }
            return;
        }
        let mut m = a + n / 2;
        if n > 7 {
            let (mut l, mut r) = (a, a + n - 1);
            if n > 40 {
                let d = n / 8;
                l = med3(v, l, l + d, l + 2 * d, cmp);
                m = med3(v, m - d, m, m + d, cmp);
                r = med3(v, r - 2 * d, r - d, r, cmp);
            }
            m = med3(v, l, m, r, cmp);
        }
        v.swap(a, m);
        // Equal elements gather at both ends ([a, pa) and (pd, end)), then move to the middle.
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let o = cmp(&v[pb], &v[a]);
                if o.is_gt() {
                    break;
                }
                if o.is_eq() {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let o = cmp(&v[pc], &v[a]);
                if o.is_lt() {
                    break;
                }
                if o.is_eq() {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let end = a + n;
        let r = (pa - a).min(pb - pa);
        swap_runs(v, a, pb - r, r);
        let r = (pd - pc).min(end - pd - 1);
        swap_runs(v, pb, end - r, r);
        let r = pb - pa;
        if r > 1 && !outside(a, a + r - 1) {
            sort_within(v, a, r, lo, hi, cmp);
        }
        let r = pd - pc;
        if r > 1 && !outside(end - r, end - 1) {
            a = end - r;
            n = r;
            continue;
        }
        return;
    }
}

/// Metres per unit of a unit argument.
fn unit(arg: &[u8]) -> Result<f64, CmdError> {
    [("m", 1.0), ("km", 1000.0), ("ft", 0.3048), ("mi", 1609.34)]
        .into_iter()
        .find(|(name, _)| is(arg, name))
        .map(|(_, m)| m)
        .ok_or_else(|| CmdError::other("ERR unsupported unit provided. please use M, KM, FT, MI"))
}

fn float_or(arg: &[u8], msg: &str) -> Result<f64, CmdError> {
    float(arg).map_err(|_| CmdError::other(format!("ERR {msg}")))
}

fn lonlat(lon: &[u8], lat: &[u8]) -> Result<[f64; 2], CmdError> {
    let (x, y) = (float(lon)?, float(lat)?);
    if !(LON_MIN..=LON_MAX).contains(&x) || !(LAT_MIN..=LAT_MAX).contains(&y) {
        return Err(CmdError::other(format!(
            "ERR invalid longitude,latitude pair {x:.6},{y:.6}"
        )));
    }
    Ok([x, y])
}

fn radius(a: &[Bytes]) -> Result<(f64, f64), CmdError> {
    let r = float_or(&a[0], "need numeric radius")?;
    if r < 0.0 {
        return Err(CmdError::other("ERR radius cannot be negative"));
    }
    Ok((r, unit(&a[1])?))
}

fn member_lonlat(z: &ZSet, member: &[u8]) -> Result<[f64; 2], CmdError> {
    z.score(member)
        .map(score_to_lonlat)
        .ok_or_else(|| CmdError::other("ERR could not decode requested zset member"))
}

/// A distance with four decimals, as Redis prints them (rounded half to even).
fn fixed4(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    let v = (d * 10000.0).round_ties_even() as i64;
    let u = v.unsigned_abs();
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{:04}", u / 10000, u % 10000)
}

/// GEOADD key [NX|XX] [CH] lon lat member ...: a ZADD of the members' geohash scores, and
/// logged as that ZADD (Redis rewrites the command).
pub fn geoadd(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let mut i = 2;
    let (mut nx, mut xx) = (false, false);
    while i < a.len() {
        if is(&a[i], "nx") {
            nx = true;
        } else if is(&a[i], "xx") {
            xx = true;
        } else if !is(&a[i], "ch") {
            break;
        }
        i += 1;
    }
    let triples = &a[i..];
    if !triples.len().is_multiple_of(3) || (nx && xx) {
        return Err(CmdError::Syntax);
    }
    let mut args: Vec<Bytes> = Vec::with_capacity(i + triples.len() / 3 * 2);
    args.push(Bytes::from_static(b"zadd"));
    args.extend_from_slice(&a[1..i]);
    for t in triples.chunks_exact(3) {
        let [lon, lat] = lonlat(&t[0], &t[1])?;
        let score = lonlat_to_score(lon, lat).unwrap_or(0);
        args.push(Bytes::from(score.to_string()));
        args.push(t[2].clone());
    }
    let dirty = c.ks.dirty;
    zadd(c, &args)?;
    if c.ks.dirty != dirty {
        c.propagate(&args);
    }
    Ok(())
}

pub fn geodist(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let to_meters = match a.len() {
        4 => 1.0,
        5 => unit(&a[4])?,
        _ => return Err(CmdError::Syntax),
    };
    let Some(z) = c.ks.zset(c.db, &a[1])? else {
        c.out.null();
        return Ok(());
    };
    match (z.score(&a[2]), z.score(&a[3])) {
        (Some(s1), Some(s2)) => {
            let ([x1, y1], [x2, y2]) = (score_to_lonlat(s1), score_to_lonlat(s2));
            c.out
                .bulk(fixed4(distance(x1, y1, x2, y2) / to_meters).as_bytes());
        }
        _ => c.out.null(),
    }
    Ok(())
}

/// GEOHASH: the standard 11-character geohash (latitude range ±90, not Redis's ±85).
pub fn geohash(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let z = c.ks.zset(c.db, &a[1])?;
    let hashes: Vec<Option<[u8; 11]>> = a[2..]
        .iter()
        .map(|m| {
            let score = z.as_ref()?.score(m)?;
            let [lon, lat] = score_to_lonlat(score);
            let world = Range {
                min: -90.0,
                max: 90.0,
            };
            let bits = encode(LON_RANGE, world, lon, lat, STEP_MAX)?.bits;
            let mut text = [b'0'; 11];
            // 52 bits give ten characters; the eleventh is always '0'.
            for (i, ch) in text.iter_mut().take(10).enumerate() {
                *ch = ALPHABET[((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize];
            }
            Some(text)
        })
        .collect();
    c.out.array(hashes.len());
    for h in hashes {
        match h {
            Some(text) => c.out.bulk(&text),
            None => c.out.null(),
        }
    }
    Ok(())
}

pub fn geopos(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    let z = c.ks.zset(c.db, &a[1])?;
    let points: Vec<Option<[f64; 2]>> = a[2..]
        .iter()
        .map(|m| Some(score_to_lonlat(z.as_ref()?.score(m)?)))
        .collect();
    c.out.array(points.len());
    for p in points {
        match p {
            Some([x, y]) => {
                c.out.array(2);
                c.out.double_human(x);
                c.out.double_human(y);
            }
            None => c.out.null_array(),
        }
    }
    Ok(())
}

/// Which command family a search runs as: what its fixed arguments are and which options
/// it takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// GEORADIUS[_RO] key lon lat radius unit.
    Radius { store_ok: bool },
    /// GEORADIUSBYMEMBER[_RO] key member radius unit.
    RadiusByMember { store_ok: bool },
    /// GEOSEARCH key FROM... BY...
    Search,
    /// GEOSEARCHSTORE dst key FROM... BY...
    SearchStore,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    None,
    Asc,
    Desc,
}

fn search_generic(c: &mut Ctx, a: &[Bytes], kind: Form) -> CmdResult {
    let src = if kind == Form::SearchStore {
        &a[2]
    } else {
        &a[1]
    };
    let mut store: Option<(Bytes, bool)> = None;
    // The source is read by value so that a store can write after the search.
    let z_exists = c.ks.zset(c.db, src)?.is_some();
    let mut center: Option<[f64; 2]> = None;
    let mut extent: Option<(Extent, f64)> = None;
    let base = match kind {
        Form::Radius { .. } => {
            center = Some(lonlat(&a[2], &a[3])?);
            let (r, u) = radius(&a[4..6])?;
            extent = Some((Extent::Radius(r), u));
            6
        }
        Form::RadiusByMember { .. } => {
            if z_exists {
                let z = c.ks.zset(c.db, src)?.expect("checked");
                center = Some(member_lonlat(z, &a[2])?);
                let (r, u) = radius(&a[3..5])?;
                extent = Some((Extent::Radius(r), u));
            }
            5
        }
        Form::Search => 2,
        Form::SearchStore => {
            store = Some((a[1].clone(), false));
            3
        }
    };
    let geosearch = matches!(kind, Form::Search | Form::SearchStore);
    let store_ok = matches!(
        kind,
        Form::Radius { store_ok: true } | Form::RadiusByMember { store_ok: true }
    );
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
        (false, false, false, false);
    let mut order = Order::None;
    let mut count: i64 = 0;
    let mut i = base;
    while i < a.len() {
        let arg = &a[i];
        let left = a.len() - i - 1;
        if is(arg, "withdist") {
            withdist = true;
        } else if is(arg, "withhash") {
            withhash = true;
        } else if is(arg, "withcoord") {
            withcoord = true;
        } else if is(arg, "any") {
            any = true;
        } else if is(arg, "asc") {
            order = Order::Asc;
        } else if is(arg, "desc") {
            order = Order::Desc;
        } else if is(arg, "count") && left >= 1 {
            count = int(&a[i + 1])?;
            if count <= 0 {
                return Err(CmdError::other("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if (is(arg, "store") || is(arg, "storedist")) && left >= 1 && store_ok {
            store = Some((a[i + 1].clone(), is(arg, "storedist")));
            i += 1;
        } else if is(arg, "storedist") && kind == Form::SearchStore {
            store = Some((a[1].clone(), true));
        } else if is(arg, "frommember") && left >= 1 && geosearch && !from_lonlat {
            if z_exists {
                let z = c.ks.zset(c.db, src)?.expect("checked");
                center = Some(member_lonlat(z, &a[i + 1])?);
            }
            from_member = true;
            i += 1;
        } else if is(arg, "fromlonlat") && left >= 2 && geosearch && !from_member {
            center = Some(lonlat(&a[i + 1], &a[i + 2])?);
            from_lonlat = true;
            i += 2;
        } else if is(arg, "byradius") && left >= 2 && geosearch && !by_box {
            let (r, u) = radius(&a[i + 1..i + 3])?;
            extent = Some((Extent::Radius(r), u));
            by_radius = true;
            i += 2;
        } else if is(arg, "bybox") && left >= 3 && geosearch && !by_radius {
            let w = float_or(&a[i + 1], "need numeric width")?;
            let h = float_or(&a[i + 2], "need numeric height")?;
            if w < 0.0 || h < 0.0 {
                return Err(CmdError::other("ERR height or width cannot be negative"));
            }
            extent = Some((Extent::Box(w, h), unit(&a[i + 3])?));
            by_box = true;
            i += 3;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if store.is_some() && (withdist || withhash || withcoord) {
        return Err(CmdError::other(format!(
            "ERR {} is not compatible with WITHDIST, WITHHASH and WITHCOORD options",
            if kind == Form::SearchStore {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            }
        )));
    }
    let name = lossy(&a[0]);
    if geosearch && !(from_member || from_lonlat) {
        return Err(CmdError::other(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if geosearch && !(by_radius || by_box) {
        return Err(CmdError::other(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(CmdError::other(
            "ERR the ANY argument requires COUNT argument",
        ));
    }
    let (Some(center), Some((extent, to_meters)), true) = (center, extent, z_exists) else {
        match store {
            Some((dst, _)) => {
                if c.ks.remove(c.db, &dst).is_some() {
                    c.changed(&dst, notify::GENERIC, "del");
                }
                c.out.int(0);
            }
            None => c.out.array(0),
        }
        return Ok(());
    };
    if count != 0 && order == Order::None && !any {
        order = Order::Asc;
    }
    let shape = Shape {
        center,
        to_meters,
        extent,
    };
    let z = c.ks.zset(c.db, src)?.expect("checked");
    let limit = if any { count as usize } else { 0 };
    let mut points = points_in_shape(z, &shape, limit);
    let by_distance = |p: &Point, q: &Point| match order {
        Order::Desc => q.dist.total_cmp(&p.dist),
        _ => p.dist.total_cmp(&q.dist),
    };
    let returned = if count != 0 {
        points.len().min(count as usize)
    } else {
        points.len()
    };
    if order != Order::None {
        // Redis sorts all results with the C library's (stable) merge sort, or, when COUNT
        // keeps fewer, partially with its own quicksort: equal distances come out in the
        // order those give.
        if returned == points.len() {
            points.sort_by(by_distance);
        } else if returned > 0 {
            partial_sort(&mut points, 0, returned - 1, &by_distance);
        }
    }
    points.truncate(returned);
    for p in &mut points {
        p.dist /= to_meters;
    }
    match store {
        None => {
            let options = usize::from(withdist) + usize::from(withhash) + usize::from(withcoord);
            c.out.array(points.len());
            for p in &points {
                if options > 0 {
                    c.out.array(options + 1);
                }
                c.out.bulk(&p.member);
                if withdist {
                    c.out.bulk(fixed4(p.dist).as_bytes());
                }
                if withhash {
                    c.out.int(p.score as i64);
                }
                if withcoord {
                    c.out.array(2);
                    c.out.double_human(p.xy[0]);
                    c.out.double_human(p.xy[1]);
                }
            }
        }
        Some((dst, storedist)) => {
            let n = points.len();
            if n > 0 {
                let mut out = ZSet::default();
                for p in points {
                    out.insert(&p.member, if storedist { p.dist } else { p.score });
                }
                c.ks.set(c.db, &dst, Value::ZSet(Box::new(out)));
                let event = if geosearch {
                    "geosearchstore"
                } else {
                    "georadiusstore"
                };
                c.changed(&dst, notify::ZSET, event);
                c.ks.dirty += n as u64 - 1;
            } else if c.ks.remove(c.db, &dst).is_some() {
                c.changed(&dst, notify::GENERIC, "del");
            }
            c.out.int(n as i64);
        }
    }
    Ok(())
}

pub fn georadius(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    search_generic(c, a, Form::Radius { store_ok: true })
}

pub fn georadius_ro(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    search_generic(c, a, Form::Radius { store_ok: false })
}

pub fn georadiusbymember(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    search_generic(c, a, Form::RadiusByMember { store_ok: true })
}

pub fn georadiusbymember_ro(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    search_generic(c, a, Form::RadiusByMember { store_ok: false })
}

pub fn geosearch(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    search_generic(c, a, Form::Search)
}

pub fn geosearchstore(c: &mut Ctx, a: &[Bytes]) -> CmdResult {
    search_generic(c, a, Form::SearchStore)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known values from redis-server 7.0.15: GEOADD Sicily 13.361389 38.115556 Palermo
    // 15.087269 37.502669 Catania.
    const PALERMO: [f64; 2] = [13.361389, 38.115556];
    const CATANIA: [f64; 2] = [15.087269, 37.502669];

    #[test]
    fn scores_and_positions_match_redis() {
        let s = lonlat_to_score(PALERMO[0], PALERMO[1]).unwrap();
        assert_eq!(s, 3479099956230698);
        assert_eq!(
            lonlat_to_score(CATANIA[0], CATANIA[1]).unwrap(),
            3479447370796909
        );
        let xy = score_to_lonlat(s as f64);
        let human = |v| {
            let mut out = Vec::new();
            resp::format_double_human(v, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(human(xy[0]), "13.36138933897018433");
        assert_eq!(human(xy[1]), "38.11555639549629859");
    }

    #[test]
    fn distances_print_like_redis() {
        let p = score_to_lonlat(3479099956230698.0);
        let q = score_to_lonlat(3479447370796909.0);
        let d = distance(p[0], p[1], q[0], q[1]);
        assert_eq!(fixed4(d), "166274.1516");
        assert_eq!(fixed4(d / 1000.0), "166.2742");
        assert_eq!(fixed4(0.0), "0.0000");
        assert_eq!(fixed4(0.00004), "0.0000");
        assert_eq!(fixed4(1.5), "1.5000");
    }

    #[test]
    fn interleave_round_trips() {
        for (x, y) in [
            (0u32, 0u32),
            (1, 0),
            (0, 1),
            (0x3ff_ffff, 0x155_5555),
            (u32::MAX, 7),
        ] {
            assert_eq!(deinterleave(interleave(x, y)), (x, y));
        }
    }

    #[test]
    fn neighbours_step_one_cell() {
        let h = encode_wgs84(PALERMO[0], PALERMO[1], 10).unwrap();
        let (c, e) = (decode(h), decode(neighbour(h, 1, 0)));
        assert!((e.lon.min - c.lon.max).abs() < 1e-9);
        let n = decode(neighbour(h, 0, 1));
        assert!((n.lat.min - c.lat.max).abs() < 1e-9);
        let back = neighbour(neighbour(h, 1, 1), -1, -1);
        assert_eq!(back, h);
    }

    #[test]
    fn search_finds_members_in_radius_and_box() {
        let mut z = ZSet::default();
        for (name, [x, y]) in [("Palermo", PALERMO), ("Catania", CATANIA)] {
            z.insert(name.as_bytes(), lonlat_to_score(x, y).unwrap() as f64);
        }
        let shape = Shape {
            center: [15.0, 37.0],
            to_meters: 1000.0,
            extent: Extent::Radius(200.0),
        };
        let mut found = points_in_shape(&z, &shape, 0);
        found.sort_by(|p, q| p.dist.total_cmp(&q.dist));
        let names: Vec<_> = found.iter().map(|p| p.member.as_bytes().to_vec()).collect();
        assert_eq!(names, vec![b"Catania".to_vec(), b"Palermo".to_vec()]);
        assert_eq!(fixed4(found[0].dist / 1000.0), "56.4413");
        assert_eq!(fixed4(found[1].dist / 1000.0), "190.4424");
        let boxed = Shape {
            extent: Extent::Box(400.0, 400.0),
            ..shape
        };
        assert_eq!(points_in_shape(&z, &boxed, 0).len(), 2);
        let small = Shape {
            extent: Extent::Radius(100.0),
            ..shape
        };
        assert_eq!(points_in_shape(&z, &small, 0).len(), 1);
    }

    #[test]
    fn geohash_strings_match_redis() {
        let mut z = ZSet::default();
        z.insert(b"Palermo", 3479099956230698.0);
        let [lon, lat] = score_to_lonlat(3479099956230698.0);
        let bits = encode(
            LON_RANGE,
            Range {
                min: -90.0,
                max: 90.0,
            },
            lon,
            lat,
            STEP_MAX,
        )
        .unwrap()
        .bits;
        const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
        let text: String = (0..10)
            .map(|i| ALPHABET[((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize] as char)
            .collect();
        assert_eq!(format!("{text}0"), "sqc8b49rny0");
    }

    #[test]
    fn partial_sort_puts_the_wanted_positions_in_order() {
        let mut seed = 7u64;
        for len in [0usize, 1, 5, 7, 8, 40, 41, 300] {
            let v: Vec<u32> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 59) as u32
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort();
            for (lo, hi) in [(0, 0), (0, 3), (2, 5), (0, len.saturating_sub(1))] {
                if len == 0 || hi >= len {
                    continue;
                }
                let mut w = v.clone();
                partial_sort(&mut w, lo, hi, &|a: &u32, b: &u32| a.cmp(b));
                assert_eq!(w[lo..=hi], sorted[lo..=hi], "len {len} {lo}..={hi}");
                let mut all = w.clone();
                all.sort();
                assert_eq!(all, sorted);
            }
        }
    }

    #[test]
    fn odd_scores_decode_as_on_redis_server() {
        // ZADD o -1 neg 1e300 huge inf inf; GEOPOS o neg huge inf on redis-server (x86-64).
        assert_eq!(score_bits(-1.0), u64::MAX);
        assert_eq!(score_bits(1e300), 0);
        assert_eq!(score_bits(f64::INFINITY), 0);
        assert_eq!(score_bits(f64::NEG_INFINITY), 1 << 63);
        assert_eq!(score_bits(3479099956230698.0), 3479099956230698);
        assert_eq!(score_bits(1.5e19), 15_000_000_000_000_000_000);
        let [lon, lat] = score_to_lonlat(-1.0);
        assert_eq!((lon, lat), (180.0, LAT_MAX));
    }

    #[test]
    fn steps_shrink_with_radius() {
        assert_eq!(steps_for_radius(0.0, 0.0), 26);
        assert!(steps_for_radius(100.0, 0.0) > steps_for_radius(100_000.0, 0.0));
        assert_eq!(steps_for_radius(1e9, 0.0), 1);
    }
}
