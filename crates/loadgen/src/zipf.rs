//! Zipf-distributed popularity ranks: rank `k` of `1..=n` drawn with probability
//! proportional to `1 / k^exponent`.
//!
//! Sampled by rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to generate
//! variates from monotone discrete distributions", 1996; the form Apache Commons RNG uses):
//! a few logarithms and exponentials per sample and no table, whatever `n` is. A CDF table
//! with binary search would also do, but costs 8 bytes per key (8 MB at a million keys) and
//! a cache miss per probe.

/// Below this magnitude the series forms of `ln(1+x)/x` and `(e^x-1)/x` are exact to double
/// precision and avoid dividing by a number near zero.
const SERIES_THRESHOLD: f64 = 1e-8;

/// A Zipf distribution over ranks `1..=n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: u64,
    exponent: f64,
    /// `H(1.5) - 1`, one end of the range the uniform variate is drawn from.
    h_integral_x1: f64,
    /// `H(n + 0.5)`, the other end.
    h_integral_n: f64,
    /// A rank within this distance of the inverted point is accepted without evaluating
    /// the acceptance test (the hat and the distribution agree there).
    squeeze: f64,
}

impl Zipf {
    /// The distribution over `1..=n`, or `None` when `n` is 0 or the exponent is negative
    /// or not finite (0 is the uniform distribution).
    pub fn new(n: u64, exponent: f64) -> Option<Zipf> {
        if n == 0 || !exponent.is_finite() || exponent < 0.0 {
            return None;
        }
        let mut zipf = Zipf {
            n,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            squeeze: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(n as f64 + 0.5);
        zipf.squeeze = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        Some(zipf)
    }

    /// One rank in `1..=n`; the same generator state gives the same rank.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        loop {
            // Uniform over (H(1.5) - 1, H(n + 0.5)]: the area under the hat function.
            let u = self.h_integral_n + rng.f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            // Rounding, clamped: x can stray past the ends by a rounding error.
            let k = ((x + 0.5) as u64).clamp(1, self.n);
            let kf = k as f64;
            if kf - x <= self.squeeze || u >= self.h_integral(kf + 0.5) - self.h(kf) {
                return k;
            }
        }
    }

    /// `h(x) = x^-exponent`, the unnormalized probability of rank `x`.
    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    /// `H(x)`, an antiderivative of `h`: `(x^(1-exponent) - 1) / (1 - exponent)`, or `ln x`
    /// at exponent 1, in one form that is stable near 1.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        expm1_over_x((1.0 - self.exponent) * log_x) * log_x
    }

    /// The inverse of `H`.
    fn h_integral_inverse(&self, x: f64) -> f64 {
        // t >= -1 always holds in exact arithmetic; rounding can push it just below.
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (ln1p_over_x(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, continuous at 0.
fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > SERIES_THRESHOLD {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, continuous at 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > SERIES_THRESHOLD {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts of each rank over `samples` draws (index 0 unused).
    fn histogram(n: u64, exponent: f64, seed: u64, samples: usize) -> Vec<u64> {
        let zipf = Zipf::new(n, exponent).unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..samples {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    /// The exact probabilities of ranks `1..=n` (index 0 unused).
    fn pmf(n: u64, exponent: f64) -> Vec<f64> {
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-exponent)).collect();
        let total: f64 = weights.iter().sum();
        std::iter::once(0.0)
            .chain(weights.iter().map(|w| w / total))
            .collect()
    }

    #[test]
    fn rejects_what_is_not_a_distribution() {
        assert!(Zipf::new(0, 0.99).is_none());
        assert!(Zipf::new(10, -0.5).is_none());
        assert!(Zipf::new(10, f64::NAN).is_none());
        assert!(Zipf::new(10, f64::INFINITY).is_none());
        assert!(Zipf::new(1, 0.0).is_some());
    }

    #[test]
    fn same_seed_same_ranks_other_seed_other_ranks() {
        let zipf = Zipf::new(1_000_000, 0.99).unwrap();
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..1000).map(|_| zipf.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn ranks_stay_in_range() {
        for (n, exponent) in [(1, 0.99), (2, 0.99), (3, 1.0), (5, 0.0), (10, 3.0)] {
            let counts = histogram(n, exponent, 1, 10_000);
            assert_eq!(counts[0], 0, "n {n}: rank 0 drawn");
            assert_eq!(counts.iter().sum::<u64>(), 10_000, "n {n}");
            assert!(
                counts[1..].iter().all(|&c| c > 0),
                "n {n}: a rank never drawn"
            );
        }
    }

    #[test]
    fn rank_one_over_rank_two_follows_the_exponent() {
        // P(1) / P(2) = 2^exponent. 400,000 draws put about 60,000 on rank 1 at 0.99 over
        // 1,000 ranks, so the ratio is known to about 1%; the seed is fixed, so this is
        // not a flaky statistical test but a check that the sampler has the right shape.
        for exponent in [0.5, 0.99, 1.0, 1.5] {
            let counts = histogram(1000, exponent, 42, 400_000);
            let measured = counts[1] as f64 / counts[2] as f64;
            let expected = 2f64.powf(exponent);
            assert!(
                (measured / expected - 1.0).abs() < 0.05,
                "exponent {exponent}: P(1)/P(2) measured {measured:.3}, expected {expected:.3}"
            );
        }
    }

    #[test]
    fn frequencies_match_the_probabilities() {
        // Each of the first ranks and the tail beyond 100 within 5 standard deviations of
        // its expected count.
        const SAMPLES: usize = 400_000;
        for exponent in [0.0, 0.7, 0.99, 1.0, 2.0] {
            let n = 1000;
            let counts = histogram(n, exponent, 3, SAMPLES);
            let p = pmf(n, exponent);
            let check = |what: String, count: u64, prob: f64| {
                let expected = prob * SAMPLES as f64;
                let sigma = (expected * (1.0 - prob)).sqrt().max(1.0);
                assert!(
                    (count as f64 - expected).abs() < 5.0 * sigma,
                    "exponent {exponent}, {what}: {count} draws, expected {expected:.0}"
                );
            };
            for k in 1..=10 {
                check(format!("rank {k}"), counts[k], p[k]);
            }
            check(
                "ranks above 100".to_string(),
                counts[101..].iter().sum(),
                p[101..].iter().sum(),
            );
        }
    }
}
