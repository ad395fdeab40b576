//! What a compare writes in its `--out`: `compare.md` (the tables and what they mean),
//! `summary.json` (the same figures for a script, and what `--from` reads back) and
//! `compare.svg` (each run a dot, each interval a bar).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::plan::Comparison;
use super::runs::{Placement, Run};
use super::summary::{PooledFrom, Summary};
use super::verdict::{paired, pairs, startup, table, EntrantStats, PairStats, Startup};
use crate::util::fs::write_atomic;
use crate::util::html::esc;

pub(super) fn write_outputs(c: &Comparison, all: &[Run]) -> anyhow::Result<()> {
    // Runs on a machine too busy to trust their timing are left out, unless asked for.
    let busy = all.iter().filter(|r| r.busy()).count();
    let kept: Vec<Run> = all
        .iter()
        .filter(|r| c.keep_busy || !r.busy())
        .cloned()
        .collect();
    let runs = &kept[..];
    let g = Grouping::of(runs);
    let summary = Summary {
        runs_busy: busy,
        busy_left_out: busy > 0 && !c.keep_busy,
        ..summarize(c, runs, g)
    };
    let md = markdown(c, runs, &summary, g);
    write_atomic(&c.out.join("compare.md"), md.as_bytes())?;
    write_atomic(
        &c.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    write_atomic(
        &c.out.join("compare.svg"),
        svg(&summary.entrants, runs).as_bytes(),
    )?;
    crate::util::out!("{md}");
    crate::util::outln!("compare: {}", c.out.display());
    Ok(())
}

/// How the runs fall on seeds: how many seeds, and whether some entrant ran a seed more than
/// once (then the intervals resample seeds, each with all its runs).
#[derive(Clone, Copy)]
struct Grouping {
    seeds: usize,
    seed_again: bool,
}

impl Grouping {
    fn of(runs: &[Run]) -> Grouping {
        let mut per_seed: BTreeMap<(&str, u64), usize> = BTreeMap::new();
        for r in runs {
            *per_seed.entry((r.entrant.as_str(), r.seed)).or_default() += 1;
        }
        let seeds: BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
        Grouping {
            seeds: seeds.len(),
            seed_again: per_seed.values().any(|&n| n > 1),
        }
    }
}

/// The figures of a compare, before any of its text: what summary.json holds and compare.md
/// shows.
fn summarize(c: &Comparison, runs: &[Run], g: Grouping) -> Summary {
    let t = table(c, runs);
    let start: Vec<Startup> = t.iter().filter_map(|s| startup(&s.entrant, runs)).collect();
    // The builds runs.csv records, and the runs from before it recorded them.
    let mut builds: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs.iter().filter(|r| !r.build.is_empty()) {
        *builds.entry(r.build.clone()).or_default() += 1;
    }
    Summary {
        config: c.config.path.clone(),
        config_sha1: c.config_sha1.clone(),
        builds,
        runs_without_build: runs.iter().filter(|r| r.build.is_empty()).count(),
        seeds: (*c.seeds.start(), *c.seeds.end()),
        repeat: c.repeat,
        jobs: c.jobs,
        // A simulation has no CPU to share: side by side changes nothing in it.
        runs_side_by_side: runs
            .iter()
            .filter(|r| r.jobs > 1 && r.engine != "shadow")
            .count(),
        runs_simulated: runs.iter().filter(|r| r.engine == "shadow").count(),
        runs_busy: 0,
        busy_left_out: false,
        runs_on_slurm: runs
            .iter()
            .filter(|r| r.placement == Placement::Slurm)
            .count(),
        pooled_from: c
            .pooled_from
            .iter()
            .map(|(out, runs)| PooledFrom {
                out: out.clone(),
                runs: *runs,
            })
            .collect(),
        intervals_resample: if g.seed_again && g.seeds > 1 {
            "seeds"
        } else {
            "runs"
        }
        .to_string(),
        entrants: t,
        commands: c
            .entrants
            .iter()
            .filter_map(|e| e.line().map(|(l, _)| (e.name(), l.cmd.clone())))
            .collect(),
        pairs: pairs(c, runs),
        waste_pairs: paired(c, runs, |r| r.wasted_share),
        startup: start,
    }
}

/// compare.md: one part after the other, each from the figures.
fn markdown(c: &Comparison, runs: &[Run], s: &Summary, g: Grouping) -> String {
    [
        header(c, runs, s, g),
        entrant_table(&s.entrants),
        reruns(&s.entrants),
        startup_note(&s.startup),
        supply_and_waste(&s.entrants, &s.waste_pairs),
        over_cap(&s.entrants, runs),
        legend(c),
        pair_table(&s.pairs),
    ]
    .concat()
}

/// How the runs ran: side by side, flagged busy, simulated, on Slurm; empty for one real
/// experiment at a time.
fn how_they_ran(runs: &[Run], s: &Summary) -> Vec<String> {
    let (side_by_side, on_slurm) = (s.runs_side_by_side, s.runs_on_slurm);
    let mut how = Vec::new();
    if side_by_side > 0 {
        how.push(format!(
            "{side_by_side} of the {} runs side by side (--jobs up to {}): experiments that share \
             the CPU are noisier than one at a time",
            runs.len(),
            runs.iter().map(|r| r.jobs).max().unwrap_or(1)
        ));
    }
    if s.runs_busy > 0 {
        how.push(match s.busy_left_out {
            true => format!(
                "{} runs left out of every figure: their machine was over {:.0} % busy \
                 (threshold fixed in advance; --keep-busy keeps them)",
                s.runs_busy,
                super::runs::BUSY * 100.0
            ),
            false => format!(
                "{} runs on a machine over {:.0} % busy, kept (--keep-busy)",
                s.runs_busy,
                super::runs::BUSY * 100.0
            ),
        });
    }
    if s.runs_simulated > 0 {
        how.push(format!(
            "{} of the {} runs simulated by the Shadow engine (deterministic: a seed run again \
             is the same run; no CPU contention)",
            s.runs_simulated,
            runs.len()
        ));
    }
    if on_slurm > 0 {
        how.push(format!(
            "{on_slurm} of the {} runs as Slurm array tasks (what shared a node was the \
             scheduler's choice)",
            runs.len()
        ));
    }
    how
}

/// The title, where the runs come from (pooled folders, builds) and how they ran.
fn header(c: &Comparison, runs: &[Run], s: &Summary, g: Grouping) -> String {
    let how = how_they_ran(runs, s);
    let how = if how.is_empty() {
        "one experiment at a time".to_string()
    } else {
        how.join("; ")
    };
    let pooled = if c.pooled_from.is_empty() {
        String::new()
    } else {
        let from: Vec<String> = c
            .pooled_from
            .iter()
            .map(|(d, n)| format!("{} ({n} runs)", md_code(&d.display().to_string())))
            .collect();
        format!(
            "Pooled from {}: nothing was run again; a folder's runs of a seed count as more runs \
             of that seed.\n\n",
            from.join(", ")
        )
    };
    let (builds, unknown) = (&s.builds, s.runs_without_build);
    let plural = |n: usize| format!("{n} run{}", if n == 1 { "" } else { "s" });
    let builds_line = if builds.len() > 1 || (unknown > 0 && !builds.is_empty()) {
        let each: Vec<String> = builds
            .iter()
            .map(|(b, n)| format!("`{b}` ({})", plural(*n)))
            .collect();
        let old = if unknown > 0 {
            format!(
                "; {} from before runs.csv recorded the build",
                plural(unknown)
            )
        } else {
            String::new()
        };
        format!(
            "Builds that ran these runs (the first 12 hex digits of the SHA-1 of `testbed` and \
             the `vod-client` beside it): {}{old}. A build that changed the world's clients makes another \
             world; pool them only if it did not.\n\n",
            each.join(", ")
        )
    } else if unknown > 0 && !c.pooled_from.is_empty() {
        "These runs are from before runs.csv recorded the build: whether the folders ran one \
         build is not known. A build that changed the world's clients makes another world; \
         pool them only if it did not.\n\n"
            .to_string()
    } else {
        String::new()
    };
    let grouping = match (g.seed_again, g.seeds) {
        (false, _) => String::new(),
        (true, 1) => " One seed: the intervals resample its runs, and speak for this one world \
                      only."
            .to_string(),
        (true, n) => format!(
            " Runs of one seed share its world, so the intervals resample the {n} seeds, each \
             with all its runs, not the runs one by one."
        ),
    };
    format!(
        "# testbed compare\n\n{pooled}{builds_line}Penalty as a share of the file (lower is better), {how}.{grouping}\n\n"
    )
}

/// Per entrant: runs, mean, median, sd and the 95 % interval of the mean.
fn entrant_table(t: &[EntrantStats]) -> String {
    let mut md = String::from(
        "| entrant | runs | mean | median | sd | 95 % CI of the mean |\n|---|---|---|---|---|---|\n",
    );
    for s in t {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} .. {} |",
            md_text(&s.entrant),
            s.runs,
            pct(s.mean),
            pct(s.median),
            pct(s.sd),
            pct(s.ci95.0),
            pct(s.ci95.1)
        );
    }
    md
}

/// The same-seed spread, where the compare has reruns.
fn reruns(t: &[EntrantStats]) -> String {
    let mut md = String::new();
    let points = |x: f64| format!("{:.1} points", x * 100.0);
    let reruns: Vec<String> = t
        .iter()
        .filter_map(|s| {
            Some(format!(
                "{} {}",
                md_text(&s.entrant),
                points(s.same_seed_sd?)
            ))
        })
        .collect();
    if !reruns.is_empty() {
        let _ = writeln!(
            md,
            "\nSame-seed spread (the sd of a seed's runs about their own mean, pooled over the \
             seeds): {}. It is what reruns of one world differ by; the rest of an entrant's sd \
             is its seeds'.",
            reruns.join(", ")
        );
    }
    md
}

/// How much of the spread the runs' starts explain.
fn startup_note(start: &[Startup]) -> String {
    let mut md = String::new();
    if !start.is_empty() {
        let each: Vec<String> = start
            .iter()
            .map(|s| {
                let split = match s.mean_share_above {
                    Some(above) => format!(
                        " (its runs with at most {:.0} such pieces, the median, paid {} on \
                         average, the others {})",
                        s.median_pieces,
                        pct(s.mean_share_at_or_below),
                        pct(above)
                    ),
                    None => String::new(),
                };
                let within = s
                    .within_seed_correlation
                    .map(|w| format!(", within seeds {w:.2}"))
                    .unwrap_or_default();
                format!(
                    "{} r = {:.2}{within}{split}",
                    md_text(&s.entrant),
                    s.correlation
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "\nStart-up: the pieces the world delivered in my client's first 10 s \
             (`startup_pieces`) against the share, over each entrant's runs: {}. Where r is \
             strongly negative, a run's start decides much of its share, and only more runs \
             (seeds or `--repeat`) average it out. Within seeds (with reruns: each run against \
             its seed's means) r tells the start's own part from the seeds': a poor world gives \
             both fewer pieces at the start and a higher share.",
            each.join("; ")
        );
    }
    md
}

/// What the world sent and what my client wasted of it, per entrant and per pair.
fn supply_and_waste(t: &[EntrantStats], waste_pairs: &[PairStats]) -> String {
    let mut md = String::new();
    if t.iter().any(|s| s.world_share.is_some()) {
        md.push_str(
            "\nWhere the penalty comes from (the referee's counts, as shares of the file; for a \
             client that completes the file, share = 100 % − sent by the world + wasted). What \
             the world sends is bounded by the world (which of its clients unchoke my client, \
             and for how long; my client's uploads buy some of it) and by what my client asks \
             of it before the server sends a piece at its deadline. What is wasted is my \
             client's: a block it asked of two peers, or one a peer delivered after the server \
             had sent it. Waste costs server bytes while the world sends less than my client \
             plays; a second copy from peers with bandwidth to spare costs nothing.\n\n\
             | entrant | sent by the world | wasted | sd of wasted | same-seed sd of wasted \
             |\n|---|---|---|---|---|\n",
        );
        let or_dash = |x: Option<f64>| x.map_or_else(|| "–".to_string(), pct);
        for s in t {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                md_text(&s.entrant),
                or_dash(s.world_share),
                or_dash(s.wasted_share),
                or_dash(s.wasted_sd),
                or_dash(s.wasted_same_seed_sd)
            );
        }
        if !waste_pairs.is_empty() {
            md.push_str(
                "\n| wasted: A − B | pairs | mean difference | 95 % CI | verdict |\n\
                 |---|---|---|---|---|\n",
            );
            for q in waste_pairs {
                let verdict = q
                    .verdict
                    .strip_suffix(" better")
                    .map_or_else(|| q.verdict.clone(), |n| format!("{n} wastes less"));
                let _ = writeln!(md, "{} {} |", pair_cells(q), md_text(&verdict));
            }
        }
    }
    md
}

/// A note per entrant that uploaded above its cap.
fn over_cap(t: &[EntrantStats], runs: &[Run]) -> String {
    let mut md = String::new();
    for s in t {
        let over: Vec<&Run> = runs
            .iter()
            .filter(|r| r.entrant == s.entrant && r.upload_over_cap)
            .collect();
        if let Some(peak) = over.iter().filter_map(|r| r.upload_peak).reduce(f64::max) {
            let _ = writeln!(
                md,
                "\n**{}** uploaded above its cap in {} of its {} runs (up to {peak:.0} KB/s over {window:.0} s, \
                 the world's count): uploads buy the world's unchokes, so those runs are not \
                 comparable with a capped client's.",
                md_text(&s.entrant),
                over.len(),
                s.runs,
                window = crate::vod::referee::UPLOAD_WINDOW,
            );
        }
    }
    md
}

/// The command lines of the entrants named with `--name`.
fn legend(c: &Comparison) -> String {
    let mut md = String::new();
    let legend: Vec<String> = c
        .entrants
        .iter()
        .filter_map(|e| e.line())
        .filter_map(|(l, web_seed)| {
            let name = l.name.as_deref()?;
            Some(format!(
                "- **{}**: {}{}",
                md_text(name),
                md_code(&l.cmd),
                if web_seed {
                    ", with the VoD server as its web seed"
                } else {
                    ""
                }
            ))
        })
        .collect();
    if !legend.is_empty() {
        let _ = write!(md, "\nNamed entrants:\n\n{}\n", legend.join("\n"));
    }
    md
}

/// Per pair: the paired difference, its interval, the verdict and the pairs for 90 % power.
fn pair_table(p: &[PairStats]) -> String {
    let mut md = String::new();
    // With repeats, the seeds a compare at the same --repeat would need.
    let repeated = p.iter().any(|q| q.runs_per_seed.is_some());
    md.push_str(if repeated {
        "\n| A − B | pairs | mean difference | 95 % CI | σ_d | verdict | pairs for 90 % power | seeds for 90 % power at its repeats |\n\
         |---|---|---|---|---|---|---|---|\n"
    } else {
        "\n| A − B | pairs | mean difference | 95 % CI | σ_d | verdict | pairs for 90 % power |\n\
         |---|---|---|---|---|---|---|\n"
    });
    let or_dash = |n: Option<usize>| n.map_or_else(|| "–".to_string(), |n| n.to_string());
    for q in p {
        let seeds = if repeated {
            match (q.runs_per_seed, q.seeds_for_90pct_power) {
                (Some(k), Some(n)) => format!(" {n} × {k} runs |"),
                _ => " – |".to_string(),
            }
        } else {
            String::new()
        };
        let sd = match q.pairs > 1 {
            true => pct(q.sd_difference),
            false => "–".into(),
        };
        let _ = writeln!(
            md,
            "{} {sd} | {} | {} |{seeds}",
            pair_cells(q),
            md_text(&q.verdict),
            or_dash(q.pairs_for_90pct_power)
        );
    }
    if !p.is_empty() {
        let margin = p[0].margin * 100.0;
        let _ = write!(
            md,
            "\nA verdict is one of three: *A better* where the 95 % interval of A − B excludes \
             0; *equivalent within ±{margin:.1} points* where the 90 % interval lies inside \
             ±{margin:.1} (two one-sided tests at 5 %, `--margin`); *inconclusive* where \
             neither holds: the pairs run cannot tell. σ_d is the sd of the paired \
             differences: what the pair's verdict must see through.\n"
        );
        md.push_str(
            "\nPairs for 90 % power: how many pairs (seeds, at --repeat 1) a compare needs to \
             settle that pair nine times in ten, if the difference and its spread are what \
             these pairs show (normal approximation; – where there are under three pairs, or \
             the difference is too close to 0 for any number). Where it is above the pairs \
             run, the same compare run again may well give another verdict. It is an estimate \
             for planning the next compare: fix its seeds before it runs, not by watching the \
             interval.\n",
        );
    }
    if repeated {
        md.push_str(
            "\nSeeds for 90 % power at its repeats: where each seed has the same number of \
             runs, how many seeds a compare with that many runs a seed needs, from the spread \
             of the seeds' mean differences (– where seeds have uneven runs, there are under three \
             seeds, or the difference is too close to 0 for any number). Repeats shrink only \
             the part of the spread that differs between a seed's runs; the seeds' own part \
             stays.\n",
        );
    }
    md
}

/// A share as compare.md shows it: "12.3 %".
pub(super) fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// A pair's first cells in compare.md: "| A − B | pairs | mean difference | low .. high |".
pub(super) fn pair_cells(q: &PairStats) -> String {
    format!(
        "| {} − {} | {} | {} | {} .. {} |",
        md_text(&q.a),
        md_text(&q.b),
        q.pairs,
        pct(q.mean_difference),
        pct(q.ci95.0),
        pct(q.ci95.1)
    )
}

/// `s` as plain Markdown text (no emphasis, no table cell break).
pub(super) fn md_text(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, ch| {
        if matches!(ch, '\\' | '*' | '_' | '|' | '`') {
            out.push('\\');
        }
        out.push(ch);
        out
    })
}

/// `s` as a Markdown code span, exactly: fenced by one backtick more than its longest run of
/// them, with a space inside the fence where `s` begins or ends with one.
pub(super) fn md_code(s: &str) -> String {
    let longest = s.split(|ch| ch != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Each entrant a row: its runs as dots, its interval as a bar, its mean as a tick.
/// The label column is as wide as the longest entrant's name (about 6.5 px a character at
/// 11 px sans-serif, never under 220 px): a client line with a path was cut at the chart's
/// left edge.
pub(super) fn svg(t: &[EntrantStats], runs: &[Run]) -> String {
    let longest = t
        .iter()
        .map(|e| e.entrant.chars().count())
        .max()
        .unwrap_or(0);
    let left = (16.0 + 6.5 * longest as f64).max(220.0);
    let (w, row) = (left + 500.0, 36.0);
    let h = 50.0 + row * t.len() as f64;
    let max = runs.iter().map(|r| r.share).fold(0.01f64, f64::max) * 1.05;
    let x = |v: f64| left + (v / max).clamp(0.0, 1.0) * (w - left - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"compare\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>"
    );
    for (k, e) in t.iter().enumerate() {
        let y = 42.0 + row * k as f64;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}</text>\
             <line class=\"ci\" x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#27a\" stroke-width=\"4\"/>\
             <line class=\"mean\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#123\" stroke-width=\"2\"/>",
            left - 8.0,
            y + 4.0,
            esc(&e.entrant),
            x(e.ci95.0),
            x(e.ci95.1),
            x(e.mean),
            y - 9.0,
            x(e.mean),
            y + 9.0
        );
        for r in runs.iter().filter(|r| r.entrant == e.entrant) {
            let _ = write!(
                s,
                "<circle class=\"run\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#d33\" fill-opacity=\"0.6\"/>",
                x(r.share),
                y - 12.0
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"14\" fill=\"#555\">penalty, share of the file (0 .. {:.1} %): \
         dots runs, bar 95 % CI, tick mean</text></svg>",
        max * 100.0
    );
    s
}
