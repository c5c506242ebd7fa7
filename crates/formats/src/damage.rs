//! Damage for the readers' property tests: flipped bytes, cuts, and huge length headers
//! written over or inserted into a valid file, so that every reader is shown to refuse what
//! a torn write, a bad disk or a hostile input makes of its format, without a panic and
//! without allocating what a header claims.

use proptest::prelude::*;

/// One change to a file.
#[derive(Debug, Clone)]
pub enum Damage {
    Flip(prop::sample::Index, u8),
    Cut(prop::sample::Index),
    /// `headers[.1]` written over the bytes at an index (`true`) or inserted there.
    Splice(prop::sample::Index, usize, bool),
}

/// One to three changes; splices (of `headers_len` kinds) weighted `splice_weight` against
/// one for each of flips and cuts.
pub fn arb_damage(headers_len: usize, splice_weight: u32) -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        1 => (any::<prop::sample::Index>(), 1u8..).prop_map(|(i, x)| Damage::Flip(i, x)),
        1 => any::<prop::sample::Index>().prop_map(Damage::Cut),
        splice_weight => (any::<prop::sample::Index>(), 0..headers_len, any::<bool>())
            .prop_map(|(i, h, over)| Damage::Splice(i, h, over)),
    ];
    proptest::collection::vec(one, 1..4)
}

/// `data` with `damage` applied, splicing from `headers`.
pub fn apply(mut data: Vec<u8>, damage: &[Damage], headers: &[&[u8]]) -> Vec<u8> {
    for d in damage {
        let n = data.len();
        match d {
            Damage::Flip(i, x) if n > 0 => data[i.index(n)] ^= x,
            Damage::Flip(..) => {}
            Damage::Cut(i) => data.truncate(i.index(n + 1)),
            Damage::Splice(i, h, over) => {
                let at = i.index(n + 1);
                let header = headers[*h];
                let end = if *over {
                    (at + header.len()).min(n)
                } else {
                    at
                };
                data.splice(at..end, header.iter().copied());
            }
        }
    }
    data
}
