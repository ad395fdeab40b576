//! Small statistics for comparisons: mean, median, standard deviation, and a percentile
//! bootstrap confidence interval of the mean, reproducible (the resampling draws from a fixed
//! seed, so the same numbers give the same interval).

use rand::{Rng, SeedableRng};

pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

pub fn median(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Sample standard deviation (n − 1); 0 for fewer than two values.
pub fn sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// The 95 % percentile bootstrap interval of the mean (`resamples` draws with replacement).
/// One value gives that value twice: no interval can be told from one run.
pub fn bootstrap_ci(x: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    if x.len() < 2 {
        let v = x.first().copied().unwrap_or(f64::NAN);
        return (v, v);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let s: f64 = (0..x.len()).map(|_| x[rng.random_range(0..x.len())]).sum();
            s / x.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((means.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// How many pairs a paired comparison needs to settle (95 % interval apart from 0) nine
/// times in ten, if the true mean difference and its spread are those of `d`: the normal
/// approximation n = ((z₀.₉₇₅ + z₀.₉₀) · sd / |mean|)², z₀.₉₇₅ = 1.96 and z₀.₉₀ = 1.28. It is
/// an estimate from the pairs at hand, for planning the next comparison (its seeds chosen
/// before it runs), not a test. `None` from fewer than three pairs (no spread to trust), or
/// where it would be over 100,000 (a mean difference of about 0: nothing to find); never
/// under 2.
pub fn pairs_for_90pct_power(d: &[f64]) -> Option<usize> {
    const Z: f64 = 1.959_964 + 1.281_552;
    let m = mean(d).abs();
    if d.len() < 3 || !m.is_finite() {
        return None;
    }
    let n = (Z * sd(d) / m).powi(2);
    (n <= 100_000.0).then(|| (n.ceil() as usize).max(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_of_known_numbers() {
        let x = [4.2, 2.8, 5.1, 5.8, 3.7];
        assert!((mean(&x) - 4.32).abs() < 1e-9);
        assert_eq!(median(&x), 4.2);
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
        assert!((sd(&x) - 1.1735).abs() < 1e-3);
        assert_eq!(sd(&[1.0]), 0.0);
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn the_bootstrap_interval_holds_the_mean_and_is_reproducible() {
        let x = [4.2, 2.8, 5.1, 5.8, 3.7, 11.8];
        let (lo, hi) = bootstrap_ci(&x, 10_000, 7);
        assert!(lo < mean(&x) && mean(&x) < hi, "{lo}..{hi}");
        assert!(lo >= 2.8 && hi <= 11.8);
        assert_eq!(
            bootstrap_ci(&x, 10_000, 7),
            (lo, hi),
            "same seed, same interval"
        );
        // A constant sample has no spread; a single value gives no interval.
        assert_eq!(bootstrap_ci(&[2.0; 5], 100, 1), (2.0, 2.0));
        assert_eq!(bootstrap_ci(&[3.0], 100, 1), (3.0, 3.0));
        // Clearly apart: the interval of the differences excludes 0.
        let d = [-5.0, -4.0, -6.0, -5.5, -4.5];
        let (lo, hi) = bootstrap_ci(&d, 10_000, 1);
        assert!(hi < 0.0, "{lo}..{hi}");
    }

    #[test]
    fn pairs_for_power_follow_the_textbook_formula() {
        // Mean difference 1, sd √3: ((1.96 + 1.28) · √3 / 1)² = 31.5, so 32 pairs.
        let d = [-1.0, 1.0, 3.0, -1.0, 1.0, 3.0, -1.0, 1.0, 3.0];
        assert!((mean(&d) - 1.0).abs() < 1e-12);
        assert!((sd(&d) - 3f64.sqrt()).abs() < 1e-12);
        let n = pairs_for_90pct_power(&d).unwrap();
        assert_eq!(n, 32);
        // Twice the spread needs four times the pairs; the sign of the difference does not matter.
        let wide: Vec<f64> = d.iter().map(|x| 1.0 + 2.0 * (x - 1.0)).collect();
        let n4 = pairs_for_90pct_power(&wide).unwrap();
        assert!((n4 as f64 / n as f64 - 4.0).abs() < 0.1, "{n4} against {n}");
        let neg: Vec<f64> = d.iter().map(|x| -x).collect();
        assert_eq!(pairs_for_90pct_power(&neg), Some(n));
        // Nothing to estimate from: too few pairs, or no difference.
        assert_eq!(pairs_for_90pct_power(&[1.0, 2.0]), None);
        assert_eq!(pairs_for_90pct_power(&[-1.0, 0.0, 1.0]), None);
        assert_eq!(
            pairs_for_90pct_power(&[-0.1, 0.02, 0.1, -0.02]),
            None,
            "float noise"
        );
        // No spread: two pairs settle it.
        assert_eq!(pairs_for_90pct_power(&[2.0; 4]), Some(2));
    }
}
