//! Sample sizes planned, not guessed: `testbed compare --plan --effect E [--from DIR]...`.
//!
//! From a pilot (or any earlier compare's `runs.csv`), per pair of entrants, the sd of the
//! paired differences σ_d, and the seeds a compare needs to tell a true difference of `E`
//! points from none with 80 % power at a two-sided 5 % level (a paired t-test's sample size):
//! the least n with n ≥ ((t₀.₉₇₅,ₙ₋₁ + t₀.₈₀,ₙ₋₁) · σ_d / E)². With σ_d = 6 points and E = 3,
//! 34 seeds. It is a plan for the next compare (fix its seeds before it runs), not a verdict.

use std::fmt::Write;
use std::path::PathBuf;

use super::entrant::Entrant;
use super::runs::{read_runs, Run};
use crate::util::stats;

/// z₀.₉₇₅ and z₀.₈₀.
const Z_975: f64 = 1.959_964;
const Z_80: f64 = 0.841_621;

/// One pair's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PairPlan {
    pub a: String,
    pub b: String,
    /// Pilot pairs (same seed and repeat).
    pub pilot_pairs: usize,
    /// The sd of the paired differences, a share of the file.
    pub sd: f64,
    /// Seeds for 80 % power; `None` from fewer than three pilot pairs.
    pub seeds: Option<usize>,
}

/// Seeds for 80 % power to find a difference of `effect` (a share of the file) given paired
/// differences of sd `sd`: the least n ≥ 2 that the t-test's condition holds for.
pub fn seeds_for_80pct_power(sd: f64, effect: f64) -> usize {
    let need = |n: usize| {
        let df = (n - 1) as f64;
        ((stats::t_quantile(Z_975, df) + stats::t_quantile(Z_80, df)) * sd / effect).powi(2)
    };
    // From the normal approximation (a lower bound) up.
    let mut n = (((Z_975 + Z_80) * sd / effect).powi(2).ceil() as usize).max(2);
    while (n as f64) < need(n) && n < 1_000_000 {
        n += 1;
    }
    n
}

/// Every pair of `names` (in order) over `runs`, for an effect of `effect` (a share).
pub fn plan_pairs(runs: &[Run], names: &[String], effect: f64) -> Vec<PairPlan> {
    super::verdict::differences(names, runs, |r| Some(r.share))
        .into_iter()
        .map(|(a, b, seeded)| {
            let d: Vec<f64> = seeded.into_iter().map(|(_, v)| v).collect();
            let sd = if d.len() > 1 { stats::sd(&d) } else { f64::NAN };
            PairPlan {
                a,
                b,
                pilot_pairs: d.len(),
                sd,
                seeds: (d.len() >= 3).then(|| seeds_for_80pct_power(sd, effect)),
            }
        })
        .collect()
}

/// `testbed compare --plan --effect E`: reads the runs of `from` (each a compare's folder),
/// plans every pair of `entrants` (else of every entrant the runs name) and returns the text
/// to print. `effect` is in points of the file.
pub fn plan(from: &[PathBuf], entrants: &[Entrant], effect: f64) -> anyhow::Result<String> {
    if !(effect > 0.0 && effect <= 100.0) {
        anyhow::bail!("--effect {effect}: a difference in points of the file, above 0");
    }
    let mut runs = Vec::new();
    for dir in from {
        let csv = dir.join("runs.csv");
        if !csv.is_file() {
            anyhow::bail!(
                "--from {}: no runs.csv there (is it a compare's --out?)",
                dir.display()
            );
        }
        runs.extend(read_runs(&csv)?);
    }
    let mut names: Vec<String> = entrants.iter().map(Entrant::name).collect();
    if names.is_empty() {
        for r in &runs {
            if !names.contains(&r.entrant) {
                names.push(r.entrant.clone());
            }
        }
    }
    if names.len() < 2 {
        anyhow::bail!("--plan needs runs of two entrants at least in the --from folders");
    }
    let mut text = format!(
        "Seeds for 80 % power to find a difference of {effect} points (two-sided 5 %, a paired \
         t-test's sample size), from the pilot's paired sd:\n"
    );
    for p in plan_pairs(&runs, &names, effect / 100.0) {
        let _ = match p.seeds {
            Some(n) => writeln!(
                text,
                "{} vs {}: {n} seeds (σ_d {:.1} points over {} pilot pairs)",
                p.a,
                p.b,
                p.sd * 100.0,
                p.pilot_pairs
            ),
            None => writeln!(
                text,
                "{} vs {}: {} pilot pairs; three at least are needed for a spread",
                p.a, p.b, p.pilot_pairs
            ),
        };
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example: σ_d 6 points, a 3-point difference, 34 seeds; the sample size
    /// grows as the square of σ_d / E.
    #[test]
    fn seeds_for_the_standard_spread() {
        assert_eq!(seeds_for_80pct_power(0.06, 0.03), 34);
        assert!(seeds_for_80pct_power(0.06, 0.015) > 4 * 30);
        assert_eq!(seeds_for_80pct_power(0.001, 0.5), 2);
    }

    /// Pairs are matched by seed and repeat; a pair with too few pilot pairs has no plan.
    #[test]
    fn pairs_are_planned_from_the_pilot() {
        let run = |entrant: &str, seed: u64, share: f64| Run {
            entrant: entrant.into(),
            seed,
            share,
            ..crate::experiment::tests::row("x", 0, 0.0)
        };
        let mut runs = Vec::new();
        for (seed, d) in [(1, 0.02), (2, -0.04), (3, 0.08), (4, 0.0)] {
            runs.push(run("a", seed, 0.3 + d));
            runs.push(run("b", seed, 0.3));
        }
        runs.push(run("c", 1, 0.3));
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let p = plan_pairs(&runs, &names, 0.03);
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[0].a.as_str(), p[0].b.as_str(), p[0].pilot_pairs),
            ("a", "b", 4)
        );
        let d = [0.02, -0.04, 0.08, 0.0];
        assert!((p[0].sd - stats::sd(&d)).abs() < 1e-12);
        assert_eq!(p[0].seeds, Some(seeds_for_80pct_power(stats::sd(&d), 0.03)));
        assert_eq!((p[1].pilot_pairs, p[1].seeds), (1, None));
    }
}
