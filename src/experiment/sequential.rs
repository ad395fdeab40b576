//! Verdicts that may be looked at after every batch: `compare --until-settled`.
//!
//! A fixed-sample interval checked after each batch of seeds, stopping at the first that
//! excludes 0, finds differences that are not there far more often than its 5 %. A confidence
//! sequence does not: it holds the true mean at every number of seeds at once, with
//! probability 95 %, so a compare may stop as soon as it decides.
//!
//! This one is the Gaussian-mixture asymptotic confidence sequence of Waudby-Smith, Arbour,
//! Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic confidence
//! sequences" (Annals of Statistics, 2024): valid as the seeds grow, for any distribution with
//! a finite variance, about 1.5 times as wide as a fixed-sample interval at 30 seeds (the
//! price of looking whenever one likes). Below [`MIN_SEEDS`] it gives no verdict, since the sd
//! it rests on is rough. A nonasymptotic sequence for bounded values (the betting sequences of
//! Waudby-Smith and Ramdas, JRSS-B 2023) was tried first: a paired difference spreads by a few
//! points in a range of 200, and a sequence that must hold for any values in that range
//! stayed wide (at 200 seeds of a 5-point difference with a 6-point sd it still held 0).
//!
//! The verdicts are those of [`super::verdict::verdict`] with the sequence in place of both
//! intervals: better where it excludes 0, equivalent where it lies inside ±δ.

use serde::{Deserialize, Serialize};

use super::plan::{schedule, Comparison};
use super::runs::{read_runs, Run};
use super::verdict::INCONCLUSIVE;
use crate::util::stats;

/// `testbed compare --until-settled`: seeds in batches of `batch` from the first of `c`'s,
/// each batch a compare (so the same command resumes), until every pair's confidence sequence
/// gives a verdict or `max_seeds` seeds have run. Writes `OUT/until-settled.md` after each
/// batch and returns its text.
pub fn until_settled(c: &Comparison, batch: u64, max_seeds: u64) -> anyhow::Result<String> {
    anyhow::ensure!(batch >= 2, "--batch {batch}: at least 2 seeds");
    anyhow::ensure!(
        max_seeds >= batch,
        "--max-seeds {max_seeds}: at least one batch ({batch})"
    );
    let first = *c.seeds.start();
    let mut n = batch;
    loop {
        let round = Comparison {
            seeds: first..=first + n - 1,
            ..c.clone()
        };
        super::compare(&round)?;
        let runs = read_runs(&c.out.join("runs.csv"))?;
        let missing = schedule(&round)
            .iter()
            .filter(|(e, s, r)| !super::runs::has_run(&runs, &e.name(), *s, *r))
            .count();
        let seq = pairs(&round, &runs);
        let text = report(&round, &seq, n, max_seeds);
        crate::util::fs::write_atomic(&c.out.join("until-settled.md"), text.as_bytes())?;
        let open = seq.iter().filter(|p| p.verdict == INCONCLUSIVE).count();
        crate::util::outln!(
            "until-settled: after {n} seeds, {open} of {} pairs undecided",
            seq.len()
        );
        if missing > 0 {
            anyhow::bail!("{missing} runs of the first {n} seeds did not run: stopped");
        }
        if open == 0 || n >= max_seeds {
            return Ok(text);
        }
        n = (n + batch).min(max_seeds);
    }
}

/// `until-settled.md`: each pair's sequence and verdict after `n` of at most `max` seeds.
fn report(c: &Comparison, seq: &[SequencePair], n: u64, max: u64) -> String {
    use std::fmt::Write;
    let mut md = format!(
        "# Until settled: {n} seeds (at most {max}), anytime-valid verdicts\n\n\
         | A − B | seeds | mean difference | 95 % confidence sequence | verdict |\n\
         |---|---|---|---|---|\n"
    );
    for p in seq {
        let _ = writeln!(
            md,
            "| {} − {} | {} | {:.1} % | {:.1} % .. {:.1} % | {} |",
            p.a,
            p.b,
            p.seeds,
            p.mean_difference * 100.0,
            p.cs95.0 * 100.0,
            p.cs95.1 * 100.0,
            p.verdict
        );
    }
    let _ = write!(
        md,
        "\nA confidence sequence holds the true mean difference at every number of seeds at \
         once (95 %): the compare looked after every batch and may stop as soon as each pair \
         has a verdict, without the false verdicts that re-checking a fixed-sample interval \
         finds. It is the Gaussian-mixture asymptotic confidence sequence of Waudby-Smith et al. \
         (Annals of Statistics, 2024), over each seed's mean difference, with no verdict before \
         {min} seeds. Verdicts: better where it \
         excludes 0, equivalent within ±{:.1} points where it lies inside them, inconclusive \
         otherwise. The fixed-sample tables of compare.md, beside this file, are not valid \
         after such looks: read the verdicts here.\n",
        c.margin * 100.0,
        min = MIN_SEEDS
    );
    md
}

/// One pair's sequence after the seeds run so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SequencePair {
    pub a: String,
    pub b: String,
    /// Seeds both ran.
    pub seeds: usize,
    pub mean_difference: f64,
    /// The 95 % confidence sequence of A − B at these seeds.
    pub cs95: (f64, f64),
    pub verdict: String,
}

/// Seeds before a sequence gives a verdict: below, the sd it rests on is too rough.
pub const MIN_SEEDS: usize = 20;

/// The seeds the sequence is tuned for (narrowest near there; valid at every number).
const TUNED_FOR: f64 = 30.0;

/// The running intersection of the `1 − alpha` asymptotic confidence sequence for the mean of
/// `x`, in the order given: at each t from [`MIN_SEEDS`] on,
/// mean ± sd · √(2(tρ² + 1) / (t²ρ²) · ln(√(tρ² + 1) / α)), ρ tuned for [`TUNED_FOR`] values.
/// `(−∞, ∞)` before [`MIN_SEEDS`] values: the sd of a few values can be near 0 by chance, and
/// one such narrow interval would stay in the intersection for ever.
pub fn confidence_sequence(x: &[f64], alpha: f64) -> (f64, f64) {
    let rho2 = (-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / TUNED_FOR;
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    for t in MIN_SEEDS..=x.len() {
        let head = &x[..t];
        let (m, sd) = (stats::mean(head), stats::sd(head));
        let tf = t as f64;
        let k = tf * rho2 + 1.0;
        let half = sd * (2.0 * k / (tf * tf * rho2) * (k.sqrt() / alpha).ln()).sqrt();
        lo = lo.max(m - half);
        hi = hi.min(m + half);
    }
    if lo > hi {
        // The sequence crossed itself (a 5 % event): no interval is left to report.
        let mid = (lo + hi) / 2.0;
        (lo, hi) = (mid, mid);
    }
    (lo, hi)
}

/// Every pair's sequence over the runs of `c`, a value per seed (the mean of its repeats'
/// differences), seeds in order.
pub fn pairs(c: &Comparison, runs: &[Run]) -> Vec<SequencePair> {
    let names: Vec<String> = c.entrants.iter().map(|e| e.name()).collect();
    super::verdict::differences(&names, runs, |r| Some(r.share))
        .into_iter()
        .map(|(a, b, seeded)| {
            let d: Vec<f64> = super::verdict::by_seed(seeded)
                .iter()
                .map(|g| stats::mean(g))
                .collect();
            let cs = confidence_sequence(&d, 0.05);
            let verdict = match d.len() >= MIN_SEEDS {
                true => super::verdict::verdict(&a, &b, d.len(), (cs, cs), c.margin),
                false => INCONCLUSIVE.to_string(),
            };
            SequencePair {
                seeds: d.len(),
                mean_difference: if d.is_empty() { 0.0 } else { stats::mean(&d) },
                cs95: cs,
                verdict,
                a,
                b,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Differences of sd `sd` about `mean`, kept in [−1, 1].
    fn draws(rng: &mut rand::rngs::StdRng, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // A sum of uniforms: near-normal, bounded.
                let u: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                (mean + sd * u).clamp(-1.0, 1.0)
            })
            .collect()
    }

    /// Looked at after every seed from [`MIN_SEEDS`] to 100, the sequence of a zero
    /// difference excludes 0 in at most 5 % of 1000 compares (it is valid at every look at once); a fixed-sample
    /// 95 % interval looked at the same way does far worse.
    #[test]
    fn looking_after_every_seed_keeps_the_error_rate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut sequence_false, mut peeking_false) = (0, 0);
        let trials = 1000;
        for _ in 0..trials {
            let d = draws(&mut rng, 100, 0.0, 0.06);
            if (MIN_SEEDS..=d.len()).any(|n| {
                let cs = confidence_sequence(&d[..n], 0.05);
                cs.0 > 0.0 || cs.1 < 0.0
            }) {
                sequence_false += 1;
            }
            if (5..=d.len()).step_by(5).any(|n| {
                let m = stats::mean(&d[..n]);
                let se = stats::sd(&d[..n]) / (n as f64).sqrt();
                (m / se).abs() > 1.96
            }) {
                peeking_false += 1;
            }
        }
        eprintln!("false verdicts in {trials}: sequence {sequence_false}, peeking {peeking_false}");
        assert!(
            sequence_false * 20 <= trials,
            "{sequence_false} of {trials}"
        );
        assert!(
            peeking_false * 20 > trials,
            "peeking: {peeking_false} of {trials}"
        );
    }

    /// A real difference is found, and the sequence narrows as seeds come.
    #[test]
    fn a_real_difference_settles() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let d = draws(&mut rng, 100, -0.05, 0.06);
        let early = confidence_sequence(&d[..10], 0.05);
        let late = confidence_sequence(&d, 0.05);
        assert!(late.1 < 0.0, "{late:?}");
        assert!(late.1 - late.0 < early.1 - early.0);
        assert!(late.0 < -0.05 && -0.05 < late.1, "holds the mean: {late:?}");
        let none = confidence_sequence(&[0.1], 0.05);
        assert!(none.0.is_infinite() && none.1.is_infinite());
    }
}
