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
    (squares_about_mean(x) / (x.len() - 1) as f64).sqrt()
}

/// The sum of the squared deviations of `x` from its mean.
fn squares_about_mean(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum()
}

/// The 95 % percentile bootstrap interval of the mean (`resamples` draws with replacement).
/// One value gives that value twice: no interval can be told from one run.
#[cfg(test)]
pub fn bootstrap_ci(x: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    bootstrap_interval(x, resamples, seed, 0.95)
}

/// [`bootstrap_ci`] at `level` (0.90: the interval of two one-sided tests at 5 %).
fn bootstrap_interval(x: &[f64], resamples: usize, seed: u64, level: f64) -> (f64, f64) {
    let singles: Vec<Vec<f64>> = x.iter().map(|&v| vec![v]).collect();
    bootstrap_interval_by_group(&singles, resamples, seed, level)
}

/// The 95 % percentile bootstrap interval of the mean of values that come in groups (a
/// comparison's runs of one seed): each resample draws whole groups with replacement, so values
/// that are alike because they share a group (one world, run again) count as the one
/// observation they partly are, and the interval is as wide as the groups' spread says. With
/// one value per group this is [`bootstrap_ci`], draw for draw. With a single group there is
/// nothing to draw groups from, and its values are resampled one by one (the interval then
/// speaks for that group only).
pub fn bootstrap_ci_by_group(groups: &[Vec<f64>], resamples: usize, seed: u64) -> (f64, f64) {
    bootstrap_interval_by_group(groups, resamples, seed, 0.95)
}

/// [`bootstrap_ci_by_group`] at `level`, from the same draws for the same seed.
pub fn bootstrap_interval_by_group(
    groups: &[Vec<f64>],
    resamples: usize,
    seed: u64,
    level: f64,
) -> (f64, f64) {
    let groups: Vec<&Vec<f64>> = groups.iter().filter(|g| !g.is_empty()).collect();
    let all: Vec<f64> = groups.iter().copied().flatten().copied().collect();
    if all.len() < 2 {
        let v = all.first().copied().unwrap_or(f64::NAN);
        return (v, v);
    }
    if groups.len() < 2 {
        return bootstrap_interval(&all, resamples, seed, level);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let (mut sum, mut n) = (0.0, 0usize);
            for _ in 0..groups.len() {
                let g = groups[rng.random_range(0..groups.len())];
                sum += g.iter().sum::<f64>();
                n += g.len();
            }
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((means.len() - 1) as f64 * q).round() as usize];
    let tail = (1.0 - level) / 2.0;
    (at(tail), at(1.0 - tail))
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

/// The quantile of Student's t with `df` degrees of freedom at the level whose normal
/// quantile is `z` (e.g. 1.96 for 0.975), by the Cornish-Fisher expansion: within 0.003 of the
/// table from 10 degrees of freedom up, 0.005 at 5, 0.03 at 3.
pub fn t_quantile(z: f64, df: f64) -> f64 {
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df.powi(2))
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df.powi(3))
}

/// The sd of values about their own group's mean, pooled over the groups (each group's sum
/// of squares over the sum of its degrees of freedom): for a comparison's runs grouped by seed,
/// what reruns of one world differ by, the seeds' own differences left out. `None` where no
/// group has two values.
pub fn pooled_within_sd(groups: &[Vec<f64>]) -> Option<f64> {
    let (mut ss, mut df) = (0.0, 0usize);
    for g in groups.iter().filter(|g| g.len() > 1) {
        ss += squares_about_mean(g);
        df += g.len() - 1;
    }
    (df > 0).then(|| (ss / df as f64).sqrt())
}

/// Pearson's correlation of `x` and `y` (taken pairwise); `None` for fewer than three pairs,
/// or where either does not vary.
pub fn correlation(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let (x, y) = (&x[..n], &y[..n]);
    let (mx, my) = (mean(x), mean(y));
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let (vx, vy) = (squares_about_mean(x), squares_about_mean(y));
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

/// Pearson's r of `x` and `y` grouped alike (the same groups, the same order within each),
/// each value taken from its own group's mean; groups of one are left out. For runs grouped
/// by seed: how two figures go together across reruns of one world, the seeds' own
/// differences left out. `None` as for [`correlation`].
pub fn within_group_correlation(x: &[Vec<f64>], y: &[Vec<f64>]) -> Option<f64> {
    let centred = |groups: &[Vec<f64>]| -> Vec<f64> {
        groups
            .iter()
            .filter(|g| g.len() > 1)
            .flat_map(|g| {
                let m = mean(g);
                g.iter().map(move |v| v - m)
            })
            .collect()
    };
    correlation(&centred(x), &centred(y))
}

#[cfg(test)]
mod tests {
    #[test]
    fn t_quantiles_match_the_table() {
        for (z, df, table, within) in [
            (1.959_964, 10.0, 2.228, 0.003),
            (1.959_964, 32.0, 2.037, 0.003),
            (1.959_964, 5.0, 2.571, 0.005),
            (1.959_964, 3.0, 3.182, 0.03),
            (0.841_621, 10.0, 0.879, 0.003),
            (0.841_621, 32.0, 0.853, 0.003),
        ] {
            let t = super::t_quantile(z, df);
            assert!(
                (t - table).abs() < within,
                "t({z}, {df}) = {t}, table {table}"
            );
        }
    }

    use super::*;

    #[test]
    fn within_groups_the_correlation_leaves_the_groups_own_differences_out() {
        // Across the groups x and y go opposite ways; within each, together.
        let x = [vec![1.0, 3.0], vec![10.0, 12.0, 14.0], vec![50.0]];
        let y = [vec![5.0, 7.0], vec![0.0, 2.0, 4.0], vec![-9.0]];
        let flat = |g: &[Vec<f64>]| g.concat();
        assert!(correlation(&flat(&x), &flat(&y)).unwrap() < -0.5);
        let r = within_group_correlation(&x, &y).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // Only groups of one: nothing within.
        assert_eq!(within_group_correlation(&[vec![1.0]], &[vec![2.0]]), None);
    }

    #[test]
    fn within_group_spread_and_correlation_of_known_numbers() {
        // Two seeds far apart, each rerun alike: the pooled sd is the reruns' alone.
        let g = [vec![1.0, 3.0], vec![10.0, 12.0, 14.0]];
        // (2 + 8) / (1 + 2) = 10/3.
        assert!((pooled_within_sd(&g).unwrap() - (10.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(pooled_within_sd(&[vec![5.0], vec![7.0]]), None);
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((correlation(&x, &[8.0, 6.0, 4.0, 2.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!((correlation(&x, &[1.0, 3.0, 2.0, 4.0]).unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(correlation(&x, &[2.0; 4]), None, "y does not vary");
        assert_eq!(correlation(&x[..2], &x[..2]), None, "two pairs");
    }

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
    fn grouped_values_are_drawn_whole() {
        // Two worlds, each run four times: alike within, far apart between.
        let groups = vec![vec![0.0, 0.1, 0.0, 0.1], vec![10.0, 10.1, 10.0, 10.1]];
        let all: Vec<f64> = groups.iter().flatten().copied().collect();
        let (glo, ghi) = bootstrap_ci_by_group(&groups, 10_000, 3);
        let (lo, hi) = bootstrap_ci(&all, 10_000, 3);
        // Two groups drawn whole: the mean is one world's, the other's, or half way.
        assert!(glo < 0.1 && ghi > 10.0, "{glo}..{ghi}");
        // Eight values one by one rarely all come from one world: a narrower interval.
        assert!(
            lo > glo + 1.0 && hi < ghi - 1.0,
            "{lo}..{hi} against {glo}..{ghi}"
        );
        // One value a group is the plain bootstrap, draw for draw; one group resamples its
        // values; empty groups are no groups.
        let x = [4.2, 2.8, 5.1, 5.8, 3.7, 11.8];
        let singles: Vec<Vec<f64>> = x.iter().map(|&v| vec![v]).collect();
        assert_eq!(
            bootstrap_ci_by_group(&singles, 1000, 5),
            bootstrap_ci(&x, 1000, 5)
        );
        assert_eq!(
            bootstrap_ci_by_group(&[x.to_vec(), vec![]], 1000, 5),
            bootstrap_ci(&x, 1000, 5)
        );
        assert_eq!(
            bootstrap_ci_by_group(&[vec![], vec![2.5]], 100, 1),
            (2.5, 2.5)
        );
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
