//! The statistics of a compare: per entrant the mean, median, sd and a 95 % bootstrap
//! interval, the same-seed spread and what the start explains of it; per pair the paired
//! difference, its interval, a verdict only where the interval excludes 0, and the pairs (or
//! seeds) a compare would need to settle it. Runs of one seed are resampled together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::Comparison;
use super::runs::Run;
use crate::util::stats;

/// One entrant's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EntrantStats {
    pub entrant: String,
    pub runs: usize,
    pub mean: f64,
    pub median: f64,
    pub sd: f64,
    pub ci95: (f64, f64),
    /// With reruns of a seed: the sd of a seed's runs about their own mean, pooled over the
    /// seeds ([`stats::pooled_within_sd`]): what reruns of one world differ by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_seed_sd: Option<f64>,
    /// The mean of the runs' `world_share` and `wasted_share`, and the sd of the latter, over
    /// the runs that have them (`None`: none has), and with reruns of a seed its same-seed sd
    /// (as `same_seed_sd`): the part of the share a picker decides, apart from the world's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasted_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasted_sd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasted_same_seed_sd: Option<f64>,
}

/// How much of an entrant's spread its runs' starts explain: the pieces the world delivered
/// in my client's first 10 s (`startup_pieces`, the referee's count) against the share.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Startup {
    pub entrant: String,
    /// Pearson's r over the entrant's runs.
    pub correlation: f64,
    /// With reruns of a seed: r within seeds, each run's pieces and share taken from its
    /// seed's means (over the seeds with two runs or more). Across seeds, a poor world gives
    /// both fewer pieces at the start and a higher share; within a seed, r is the start's own
    /// part in what reruns differ by. `None` without reruns, or where neither varies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_seed_correlation: Option<f64>,
    /// The median of the runs' start-up pieces, and the mean share of the runs at or below it
    /// and of those above it (`None` where no run is above it).
    pub median_pieces: f64,
    pub mean_share_at_or_below: f64,
    pub mean_share_above: Option<f64>,
}

/// [`Startup`] of `entrant`'s runs; `None` under six runs (too few to say), or where its
/// start-up pieces or its shares do not vary.
pub(super) fn startup(entrant: &str, runs: &[Run]) -> Option<Startup> {
    let mine: Vec<&Run> = runs.iter().filter(|r| r.entrant == entrant).collect();
    if mine.len() < 6 {
        return None;
    }
    let pieces: Vec<f64> = mine.iter().map(|r| r.startup_pieces as f64).collect();
    let shares: Vec<f64> = mine.iter().map(|r| r.share).collect();
    let correlation = stats::correlation(&pieces, &shares)?;
    let seeded = |f: fn(&Run) -> f64| by_seed(mine.iter().map(|r| (r.seed, f(r))).collect());
    let within_seed_correlation =
        stats::within_group_correlation(&seeded(|r| r.startup_pieces as f64), &seeded(|r| r.share));
    let median_pieces = stats::median(&pieces);
    let side = |low: bool| -> Vec<f64> {
        pieces
            .iter()
            .zip(&shares)
            .filter(|&(&p, _)| (p <= median_pieces) == low)
            .map(|(_, &s)| s)
            .collect()
    };
    let (low, high) = (side(true), side(false));
    Some(Startup {
        entrant: entrant.to_string(),
        correlation,
        within_seed_correlation,
        median_pieces,
        mean_share_at_or_below: stats::mean(&low),
        mean_share_above: (!high.is_empty()).then(|| stats::mean(&high)),
    })
}

/// One pair's paired difference (`a` − `b`, over the runs both made).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PairStats {
    pub a: String,
    pub b: String,
    pub pairs: usize,
    pub mean_difference: f64,
    pub ci95: (f64, f64),
    /// The 90 % interval: inside ±`margin`, the two are equivalent.
    pub ci90: (f64, f64),
    /// The equivalence margin δ (a share of the file: 0.02 is 2 points).
    pub margin: f64,
    /// One of three ([`verdict`]): "A better", "equivalent within ±δ points", "inconclusive".
    pub verdict: String,
    /// The sd of the paired differences.
    pub sd_difference: f64,
    /// Pairs a compare would need to settle this pair nine times in ten, if the difference
    /// and its spread are what these pairs show (`stats::pairs_for_90pct_power`): more than
    /// `pairs`, and the same compare run again may well give another verdict.
    pub pairs_for_90pct_power: Option<usize>,
    /// Where every seed of the pair has the same number of runs k > 1 (`--repeat k`): that
    /// k, and the seeds a compare at `--repeat k` would need for the same power, from the
    /// seeds' mean differences (whose spread is what repeats shrink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_per_seed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds_for_90pct_power: Option<usize>,
}

pub(super) const RESAMPLES: usize = 10_000;

/// What no interval decides.
pub const INCONCLUSIVE: &str = "inconclusive";

/// A pair's verdict from its two intervals of A − B, `(95 %, 90 %)`, over `n` pairs (at
/// least two): "A better" (or B) where the 95 % interval excludes 0; "equivalent within ±δ
/// points" where the 90 % interval lies inside ±`margin` (two one-sided tests at 5 % each, the
/// TOST); else inconclusive. A difference that is settled and small is "better": the sign is
/// the stronger finding.
pub fn verdict(a: &str, b: &str, n: usize, ci: ((f64, f64), (f64, f64)), margin: f64) -> String {
    let (ci95, ci90) = ci;
    if n < 2 {
        INCONCLUSIVE.into()
    } else if ci95.1 < 0.0 {
        format!("{a} better")
    } else if ci95.0 > 0.0 {
        format!("{b} better")
    } else if margin > 0.0 && ci90.0 > -margin && ci90.1 < margin {
        format!("equivalent within ±{:.1} points", margin * 100.0)
    } else {
        INCONCLUSIVE.into()
    }
}

pub(super) fn table(c: &Comparison, runs: &[Run]) -> Vec<EntrantStats> {
    c.entrants
        .iter()
        .map(|e| {
            // The entrant's runs that have `f`, as (seed, value).
            let of = |f: fn(&Run) -> Option<f64>| -> Vec<(u64, f64)> {
                runs.iter()
                    .filter(|r| r.entrant == e.name())
                    .filter_map(|r| Some((r.seed, f(r)?)))
                    .collect()
            };
            let mine = of(|r| Some(r.share));
            let x: Vec<f64> = mine.iter().map(|&(_, v)| v).collect();
            let seeds = by_seed(mine);
            let world: Vec<f64> = of(|r| r.world_share).into_iter().map(|(_, v)| v).collect();
            let wasted_by_seed = by_seed(of(|r| r.wasted_share));
            let wasted: Vec<f64> = wasted_by_seed.concat();
            let mean = |v: &[f64]| (!v.is_empty()).then(|| stats::mean(v));
            EntrantStats {
                world_share: mean(&world),
                wasted_share: mean(&wasted),
                wasted_sd: (wasted.len() > 1).then(|| stats::sd(&wasted)),
                wasted_same_seed_sd: stats::pooled_within_sd(&wasted_by_seed),
                entrant: e.name(),
                runs: x.len(),
                mean: stats::mean(&x),
                median: stats::median(&x),
                sd: stats::sd(&x),
                ci95: stats::bootstrap_ci_by_group(&seeds, RESAMPLES, 1),
                same_seed_sd: stats::pooled_within_sd(&seeds),
            }
        })
        .filter(|s| s.runs > 0)
        .collect()
}

/// Values grouped by seed, in seed order: the runs of one seed (its repeats) share a world, and
/// are alike beyond chance (over the four standard ten-seed compares of deadline and sequential,
/// about 13 % of a paired difference's variance was its seed's), so the intervals resample
/// seeds, each with all its runs, not runs one by one. At `--repeat 1` each seed is a group of
/// one, and this is the plain bootstrap.
pub(super) fn by_seed(values: Vec<(u64, f64)>) -> Vec<Vec<f64>> {
    let mut groups: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (seed, v) in values {
        groups.entry(seed).or_default().push(v);
    }
    groups.into_values().collect()
}

pub(super) fn pairs(c: &Comparison, runs: &[Run]) -> Vec<PairStats> {
    paired(c, runs, |r| Some(r.share))
}

/// The pairs of entrants, on `metric` (lower is better) over the runs that have it.
pub(super) fn paired(
    c: &Comparison,
    runs: &[Run],
    metric: fn(&Run) -> Option<f64>,
) -> Vec<PairStats> {
    let names: Vec<String> = c.entrants.iter().map(|e| e.name()).collect();
    let mut out = Vec::new();
    for (a, b, seeded) in differences(&names, runs, metric) {
        if seeded.is_empty() {
            continue;
        }
        let d: Vec<f64> = seeded.iter().map(|&(_, v)| v).collect();
        let groups = by_seed(seeded);
        let k = groups[0].len();
        let runs_per_seed = (k > 1 && groups.iter().all(|g| g.len() == k)).then_some(k);
        let seed_means: Vec<f64> = groups.iter().map(|g| stats::mean(g)).collect();
        let ci = stats::bootstrap_ci_by_group(&groups, RESAMPLES, 2);
        let ci90 = stats::bootstrap_interval_by_group(&groups, RESAMPLES, 2, 0.90);
        let verdict = verdict(&a, &b, d.len(), (ci, ci90), c.margin);
        out.push(PairStats {
            a,
            b,
            pairs: d.len(),
            mean_difference: stats::mean(&d),
            ci95: ci,
            ci90,
            margin: c.margin,
            verdict,
            sd_difference: stats::sd(&d),
            pairs_for_90pct_power: stats::pairs_for_90pct_power(&d),
            runs_per_seed,
            seeds_for_90pct_power: runs_per_seed
                .and_then(|_| stats::pairs_for_90pct_power(&seed_means)),
        });
    }
    out
}

/// A pair's names, A and B, and its `(seed, A − B)` differences.
pub(super) type Differences = (String, String, Vec<(u64, f64)>);

/// Every pair of `names` (in order), each with its `(seed, A − B)` differences on `metric`
/// over the runs both made (matched by seed and repeat), seeds in order.
pub(super) fn differences(
    names: &[String],
    runs: &[Run],
    metric: fn(&Run) -> Option<f64>,
) -> Vec<Differences> {
    let by: BTreeMap<(&str, u64, u32), f64> = runs
        .iter()
        .filter_map(|r| Some(((r.entrant.as_str(), r.seed, r.repeat), metric(r)?)))
        .collect();
    let mut out = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let seeded = by
                .iter()
                .filter(|((e, _, _), _)| e == a)
                .filter_map(|((_, s, r), va)| Some((*s, va - by.get(&(b.as_str(), *s, *r))?)))
                .collect();
            out.push((a.clone(), b.clone(), seeded));
        }
    }
    out
}
