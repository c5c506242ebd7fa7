//! Which key a popularity rank stands for, and the key's name.
//!
//! Ranks are scattered over the key space by a fixed permutation, so the popular keys are
//! not the first ids (`key:000000000000`, `key:000000000001`, ...) that a fill or a
//! sequential scan would also touch first.

/// The odd 64-bit constant closest to 2^64 / golden ratio. Multiplying consecutive ranks by
/// it modulo `n` spreads them as far apart as any multiplier can (a Weyl sequence).
const GOLDEN_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Key names are `key:` and the id, zero-padded to this many digits (redis-benchmark's
/// `key:__rand_int__` form), so every key has the same length.
pub const KEY_ID_DIGITS: usize = 12;

/// A bijection from ranks `1..=n` onto ids `0..n`: `id = ((rank - 1) * m + n / 2) mod n`,
/// with `m` coprime with `n` (the offset keeps the most popular key off id 0).
#[derive(Debug, Clone)]
pub struct KeyMap {
    n: u64,
    multiplier: u64,
}

impl KeyMap {
    /// The permutation for a key space of `n` keys (`n` > 0).
    pub fn new(n: u64) -> KeyMap {
        assert!(n > 0, "a key space needs a key");
        // The golden multiplier reduced modulo n, moved up to the next value coprime with
        // n so that the map is a bijection. 1 is coprime with everything, so this ends.
        let mut multiplier = (GOLDEN_MULTIPLIER % n).max(1);
        while gcd(multiplier, n) != 1 {
            multiplier = multiplier % n + 1;
        }
        KeyMap { n, multiplier }
    }

    /// The id of the key with popularity `rank` (1 is the most popular).
    pub fn id(&self, rank: u64) -> u64 {
        debug_assert!((1..=self.n).contains(&rank));
        let scattered = (rank - 1) as u128 * self.multiplier as u128 + (self.n / 2) as u128;
        (scattered % self.n as u128) as u64
    }
}

/// Appends the name of key `id` to `out`.
pub fn write_name(id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key:");
    write_id(id, out);
}

/// Appends `id` zero-padded to [`KEY_ID_DIGITS`] digits, as redis-benchmark writes
/// `__rand_int__`.
pub fn write_id(id: u64, out: &mut Vec<u8>) {
    let mut digits = [b'0'; KEY_ID_DIGITS];
    let mut rest = id;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    debug_assert_eq!(rest, 0, "id {id} longer than {KEY_ID_DIGITS} digits");
    out.extend_from_slice(&digits);
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_exactly_one_rank() {
        // Primes, powers of two, numbers sharing factors with the multiplier, and 1.
        for n in [1, 2, 3, 997, 1000, 1024, 4096, 10_007, 65_536, 100_000] {
            let map = KeyMap::new(n);
            let mut seen = vec![false; n as usize];
            for rank in 1..=n {
                let id = map.id(rank);
                assert!(id < n, "n {n}: id {id} out of range");
                assert!(!seen[id as usize], "n {n}: id {id} twice");
                seen[id as usize] = true;
            }
        }
    }

    #[test]
    fn popular_keys_are_scattered() {
        let n = 1_000_000;
        let map = KeyMap::new(n);
        let ids: Vec<u64> = (1..=100).map(|rank| map.id(rank)).collect();
        for pair in ids.windows(2) {
            let distance = pair[0].abs_diff(pair[1]);
            assert!(
                distance.min(n - distance) > 1000,
                "ids {pair:?} close together"
            );
        }
        assert_ne!(map.id(1), 0);
    }

    #[test]
    fn names_have_one_length() {
        let mut name = Vec::new();
        write_name(42, &mut name);
        assert_eq!(name, b"key:000000000042");
        name.clear();
        write_name(999_999_999_999, &mut name);
        assert_eq!(name, b"key:999999999999");
    }
}
