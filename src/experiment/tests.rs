use std::path::{Path, PathBuf};

use super::plan::DEFAULT_MARGIN;
use super::{
    compare::*, entrant::*, exec::*, lock::*, plan::*, pool::*, report::*, runs::*, verdict::*,
};
use crate::policy::Policy;
use crate::util::stats;
use std::time::Instant;

/// A run's row, one at a time, without the referee's columns.
pub(super) fn row(entrant: &str, seed: u64, share: f64) -> Run {
    Run {
        entrant: entrant.into(),
        seed,
        repeat: 0,
        share,
        penalty_bytes: 10,
        penalty_source: "server".into(),
        late_pieces: 1,
        my_client_exit: "exit code 0".into(),
        seconds: 9.5,
        startup_pieces: 3,
        placement: Placement::Local,
        jobs: 1,
        first_piece_at: None,
        upload_peak: None,
        upload_over_cap: false,
        world_share: None,
        wasted_share: None,
        build: "0123456789ab".into(),
        engine: "real".into(),
        cpu_busy: None,
    }
}

/// A real run on a machine over 90 % busy is left out of every figure and counted; with
/// `--keep-busy` it stays; a simulation is never flagged, however busy its machine.
#[test]
fn runs_on_a_busy_machine_are_left_out_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let c = Comparison {
        repeat: 1,
        ..deadline_vs_sequential(d.path())
    };
    let mut runs = Vec::new();
    for seed in 42..46 {
        runs.push(row("deadline", seed, 0.1));
        runs.push(row("sequential", seed, 0.2));
    }
    runs[0].cpu_busy = Some(0.95);
    runs[1].cpu_busy = Some(0.5);
    for (e, share) in [("deadline", 0.1), ("sequential", 0.2)] {
        runs.push(Run {
            engine: "shadow".into(),
            cpu_busy: Some(1.0),
            ..row(e, 46, share)
        });
    }
    assert!(runs[0].busy() && !runs[1].busy() && !runs[8].busy());
    let runs_of = |entrant: &str| -> u64 {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
                .unwrap();
        let e = json["entrants"].as_array().unwrap();
        e.iter().find(|x| x["entrant"] == entrant).unwrap()["runs"]
            .as_u64()
            .unwrap()
    };
    let md = report(&c, &runs);
    assert!(md.contains("1 runs left out of every figure"), "{md}");
    assert_eq!((runs_of("deadline"), runs_of("sequential")), (4, 5));
    let keep = Comparison {
        keep_busy: true,
        ..c
    };
    let md = report(&keep, &runs);
    assert!(
        md.contains("1 runs on a machine over 90 % busy, kept"),
        "{md}"
    );
    assert_eq!(runs_of("deadline"), 5);
}

/// The first `n` columns of [`FORMAT1_COLUMNS`]: the header of an older build.
fn format1_header(n: usize) -> String {
    FORMAT1_COLUMNS[..n].join(",")
}

/// `r` as the last build of format 1 wrote it: seventeen fields, 0 jobs for a Slurm task.
fn format1(r: &Run) -> String {
    let opt = |x: Option<f64>, places: usize| x.map_or(String::new(), |x| format!("{x:.places$}"));
    format!(
        "{},{},{},{:.6},{},{},{},{},{:.1},{},{},{},{},{},{},{},{}\n",
        r.entrant,
        r.seed,
        r.repeat,
        r.share,
        r.penalty_bytes,
        r.penalty_source,
        r.late_pieces,
        r.my_client_exit,
        r.seconds,
        r.startup_pieces,
        if r.placement == Placement::Slurm {
            0
        } else {
            r.jobs
        },
        opt(r.first_piece_at, 2),
        opt(r.upload_peak, 1),
        r.upload_over_cap as u8,
        opt(r.world_share, 6),
        opt(r.wasted_share, 6),
        r.build,
    )
}

/// The first `n` fields of a row: a row of an older build, or one cut short.
fn first_fields(row: &str, n: usize) -> String {
    row.trim_end()
        .split(',')
        .take(n)
        .collect::<Vec<_>>()
        .join(",")
}

/// The `compare.md` in `out`, with the scratch folders' names (new each run) as `[tmp]`: what
/// a snapshot keeps.
fn compare_md(out: &Path) -> String {
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    let tmp = std::env::temp_dir().join(".tmp").display().to_string();
    let mut parts = md.split(tmp.as_str());
    let mut redacted = parts.next().unwrap_or_default().to_string();
    for p in parts {
        redacted.push_str("[tmp]");
        redacted.push_str(p.trim_start_matches(|c: char| c.is_ascii_alphanumeric()));
    }
    redacted
}

/// The `compare.md` that `c` writes of `runs`, as [`compare_md`] gives it.
fn report(c: &Comparison, runs: &[Run]) -> String {
    write_outputs(c, runs).unwrap();
    compare_md(&c.out)
}

/// deadline against sequential, written to `out`.
fn deadline_vs_sequential(out: &Path) -> Comparison {
    Comparison {
        out: out.into(),
        ..cmp(vec![
            Entrant::Policy(Policy::Deadline),
            Entrant::Policy(Policy::Sequential),
        ])
    }
}

fn cmp(entrants: Vec<Entrant>) -> Comparison {
    Comparison {
        config: crate::lab::config::Source::file("c.yaml"),
        seeds: 42..=43,
        repeat: 2,
        entrants,
        out: "o".into(),
        jobs: 1,
        slurm: None,
        pooled_from: Vec::new(),
        config_sha1: None,
        margin: super::plan::DEFAULT_MARGIN,
        keep_busy: false,
    }
}

/// A long client line is shown whole: its label starts inside the chart.
#[test]
fn the_chart_makes_room_for_the_longest_entrant() {
    let name = "/home/someone/lab/examples/libtorrent_vod.py --mode time-critical [web seed]";
    let stats = |entrant: &str| EntrantStats {
        entrant: entrant.into(),
        runs: 1,
        mean: 0.1,
        median: 0.1,
        sd: 0.0,
        ci95: (0.1, 0.1),
        same_seed_sd: None,
        world_share: None,
        wasted_share: None,
        wasted_sd: None,
        wasted_same_seed_sd: None,
    };
    let chart = svg(&[stats("deadline"), stats(name)], &[]);
    let label_end: f64 = chart
        .split("<text x=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    // End-anchored at label_end: at 6 px a character it must not start left of 0.
    assert!(
        label_end >= 6.0 * name.chars().count() as f64,
        "label ends at {label_end}"
    );
    // Short names keep the old layout.
    assert!(svg(&[stats("deadline")], &[]).contains("width=\"720\""));
}

#[test]
fn runs_are_paired_and_interleaved() {
    let c = cmp(vec![
        Entrant::Policy(Policy::Rarest),
        Entrant::Policy(Policy::Deadline),
    ]);
    let s = schedule(&c);
    assert_eq!(s.len(), 8, "2 entrants x 2 seeds x 2 repeats");
    let names: Vec<String> = s.iter().map(|(e, _, _)| e.name()).collect();
    // The first entrant alternates, so neither always runs first.
    assert_eq!(names[0], "rarest");
    assert_eq!(names[2], "deadline");
    assert_eq!(names[4], "rarest");
    for e in ["rarest", "deadline"] {
        for seed in [42, 43] {
            assert_eq!(
                s.iter()
                    .filter(|(x, sd, _)| x.name() == e && *sd == seed)
                    .count(),
                2
            );
        }
    }
}

/// Two finished compares of the same seeds read as one: each seed twice, the entrants as
/// asked, and what cannot be pooled refused with one line.
#[test]
fn pooled_folders_count_a_seed_twice_and_refuse_what_does_not_pool() {
    let d = tempfile::tempdir().unwrap();
    let folder = |name: &str, config: &str, offset: f64| {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!("{HEADER}\n");
        for seed in [42, 43] {
            for (e, share) in [("deadline", 0.05), ("sequential", 0.15), ("mine", 0.30)] {
                text.push_str(&row(e, seed, share + offset).csv());
            }
        }
        std::fs::write(dir.join("runs.csv"), text).unwrap();
        let summary = serde_json::json!({
            "config": config,
            "commands": {"mine": "vod-client --choker tyrant {torrent}"},
        });
        std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
        dir
    };
    let (a, b) = (folder("a", "x.yaml", 0.0), folder("b", "x.yaml", 0.01));
    let out = d.path().join("pooled");
    pool(&[a.clone(), b.clone()], Vec::new(), &out, DEFAULT_MARGIN).unwrap();
    let runs = read_runs(&out.join("runs.csv")).unwrap();
    assert_eq!(runs.len(), 12);
    assert_eq!(
        runs.iter().filter(|r| r.repeat == 1).count(),
        6,
        "b's runs come after a's"
    );
    let md = compare_md(&out);
    insta::assert_snapshot!(md);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["pooled_from"][1]["runs"], 6);
    assert_eq!(json["config"], "x.yaml");
    // Two of the three, a client picked by its name in the tables.
    let two = vec![
        Entrant::Policy(Policy::Sequential),
        Entrant::Client("mine".into()),
    ];
    pool(&[a.clone(), b.clone()], two, &out, DEFAULT_MARGIN).unwrap();
    let runs = read_runs(&out.join("runs.csv")).unwrap();
    assert_eq!(runs.len(), 8);
    assert!(runs.iter().all(|r| r.entrant != "deadline"));
    // What does not pool.
    let err = |from: &[PathBuf], out: &Path, entrants: Vec<Entrant>| {
        format!(
            "{:#}",
            pool(from, entrants, out, DEFAULT_MARGIN).unwrap_err()
        )
    };
    let other = folder("c", "y.yaml", 0.02);
    let e = err(&[a.clone(), other], &out, Vec::new());
    assert!(e.contains("different configs (x.yaml and y.yaml)"), "{e}");
    let e = err(&[a.clone(), b.clone()], &a, Vec::new());
    assert!(e.contains("it is also --out"), "{e}");
    let e = err(&[a.clone(), d.path().join("a/../a")], &out, Vec::new());
    assert!(e.contains("given twice"), "{e}");
    let e = err(&[a.clone(), d.path().join("nowhere")], &out, Vec::new());
    assert!(e.contains("nowhere: no runs.csv there"), "{e}");
    let e = err(
        std::slice::from_ref(&a),
        &out,
        vec![
            Entrant::Policy(Policy::Rarest),
            Entrant::Client("mine".into()),
        ],
    );
    assert!(e.contains("no folder has a run of \"rarest\""), "{e}");
    // The sources are read, never written.
    assert_eq!(read_runs(&a.join("runs.csv")).unwrap().len(), 6);
}

/// Pooling never replaces a compare's own runs, never counts one run twice (a copy, or a
/// pooled folder beside its source), and never pools two command lines, or two versions of
/// one config, under one name.
#[test]
fn pooling_refuses_to_lose_or_double_count_runs() {
    let d = tempfile::tempdir().unwrap();
    let folder = |name: &str, summary: serde_json::Value, offset: f64| {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!("{HEADER}\n");
        for seed in [42, 43] {
            for (e, share) in [("deadline", 0.05), ("mine", 0.30)] {
                text.push_str(&row(e, seed, share + offset).csv());
            }
        }
        std::fs::write(dir.join("runs.csv"), text).unwrap();
        std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
        dir
    };
    let summary = |sha: &str, cmd: &str| serde_json::json!({"config": "x.yaml", "config_sha1": sha, "commands": {"mine": cmd}});
    let a = folder("a", summary("1111", "mine-client"), 0.0);
    let b = folder("b", summary("1111", "mine-client"), 0.01);
    let err = |from: &[PathBuf], out: &Path| {
        format!(
            "{:#}",
            pool(from, Vec::new(), out, DEFAULT_MARGIN).unwrap_err()
        )
    };
    // A compare's own folder as --out (the default run/compare often is one).
    let own = folder("own", summary("1111", "mine-client"), 0.02);
    let before = std::fs::read(own.join("runs.csv")).unwrap();
    let e = err(&[a.clone(), b.clone()], &own);
    assert!(e.contains("holds a compare's own runs.csv"), "{e}");
    assert_eq!(
        std::fs::read(own.join("runs.csv")).unwrap(),
        before,
        "nothing lost"
    );
    // A pooled folder as --out is made again.
    let pooled = d.path().join("pooled");
    pool(&[a.clone(), b.clone()], Vec::new(), &pooled, DEFAULT_MARGIN).unwrap();
    pool(&[a.clone(), b.clone()], Vec::new(), &pooled, DEFAULT_MARGIN).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pooled.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["config_sha1"], "1111",
        "the sources' config digest is kept"
    );
    // The same runs twice: a copy, or the pool beside one of its sources.
    let copy = d.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(a.join("runs.csv"), copy.join("runs.csv")).unwrap();
    let e = err(&[a.clone(), copy.clone()], &d.path().join("p2"));
    assert!(e.contains("both hold the same runs (4 of them"), "{e}");
    let e = err(&[pooled.clone(), b.clone()], &d.path().join("p3"));
    assert!(e.contains("pooled from the second already"), "{e}");
    // One name, two command lines; one config path, edited between two compares.
    let other = folder("other", summary("1111", "another-client"), 0.03);
    let e = err(&[a.clone(), other], &d.path().join("p4"));
    assert!(
        e.contains("the entrant \"mine\" ran \"mine-client\" in one and \"another-client\""),
        "{e}"
    );
    let edited = folder("edited", summary("2222", "mine-client"), 0.04);
    let e = err(&[a.clone(), edited], &d.path().join("p5"));
    assert!(
        e.contains("different configs (x.yaml and x.yaml, edited in between)"),
        "{e}"
    );
    // A runs.csv that is there but cannot be read is an error, not "no runs".
    let broken = d.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("runs.csv"), [0xff, 0xfe, 0x00]).unwrap();
    let e = err(&[a.clone(), broken], &d.path().join("p6"));
    assert!(e.contains("broken/runs.csv"), "{e}");
    // A client named like a policy would come back from runs.csv as that policy.
    let e = entrants(
        Vec::new(),
        vec!["my-client".into()],
        Vec::new(),
        vec!["deadline".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("named like a built-in policy"), "{e}");
}

/// Under today's header a row cut short is told from a whole one by its last field, the
/// format's version: the last row, with no end of line, is a run to do again (and refused by
/// a pool); a short row in the middle is refused with the line and the reason.
#[test]
fn a_row_cut_short_is_told_from_an_older_row() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("runs.csv");
    let whole = [
        row("deadline", 42, 0.05).csv(),
        row("sequential", 42, 0.1).csv(),
    ];
    let head_cut = |n: usize| first_fields(&whole[1], n);
    // Cut at a comma, in the build, in the engine, or just before the version.
    let in_build = whole[1].trim_end().replace("0123456789ab,real,,2", "0123");
    let in_engine = whole[1].trim_end().replace("real,,2", "re");
    let no_version = whole[1].trim_end().trim_end_matches('2').to_string();
    for cut in [
        head_cut(20),
        head_cut(19),
        head_cut(18),
        in_engine,
        head_cut(14),
        head_cut(10),
        in_build,
        no_version,
    ] {
        std::fs::write(&csv, format!("{HEADER}\n{}{cut}", whole[0])).unwrap();
        let rows = scan_runs(&csv).unwrap();
        assert_eq!(
            (rows.runs.len(), rows.cut, rows.current),
            (1, Some(3), false),
            "{cut}"
        );
        let e = read_runs(&csv).unwrap_err().to_string();
        assert!(e.contains("line 3: a row cut short"), "{e}");
    }
    // The whole row with no end of line reads, but is not ready to append to.
    std::fs::write(
        &csv,
        format!("{HEADER}\n{}{}", whole[0], whole[1].trim_end()),
    )
    .unwrap();
    let rows = scan_runs(&csv).unwrap();
    assert_eq!((rows.runs.len(), rows.cut, rows.current), (2, None, false));
    std::fs::write(&csv, format!("{HEADER}\n{}{}", whole[0], whole[1])).unwrap();
    assert!(scan_runs(&csv).unwrap().current);
    // The same cut in the middle of the file is an error.
    std::fs::write(&csv, format!("{HEADER}\n{}\n{}", head_cut(12), whole[0])).unwrap();
    let e = scan_runs(&csv).err().unwrap().to_string();
    assert!(
        e.contains("line 2: not a run row (12 fields; the header has 21)"),
        "{e}"
    );
    // A row that ends its line with no build is a pooled row from before the column.
    let no_build = Run {
        build: String::new(),
        ..row("deadline", 43, 0.05)
    };
    std::fs::write(&csv, format!("{HEADER}\n{}{}", no_build.csv(), whole[0])).unwrap();
    let rows = scan_runs(&csv).unwrap();
    assert_eq!(
        (rows.runs[0].build.as_str(), rows.cut, rows.current),
        ("", None, true)
    );
}

/// A column too many, a column this build does not know, a row of a newer format or a field
/// that does not read is refused with the line and the reason.
#[test]
fn rows_of_a_newer_testbed_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("runs.csv");
    let whole = [
        row("deadline", 42, 0.05).csv(),
        row("sequential", 42, 0.1).csv(),
    ];
    // A row of a newer build: a field too many, a column this one does not know, or a
    // newer format.
    std::fs::write(
        &csv,
        format!("{HEADER}\n{},new\n{}", whole[0].trim_end(), whole[1]),
    )
    .unwrap();
    let e = scan_runs(&csv).err().unwrap().to_string();
    assert!(
        e.contains("line 2: not a run row (22 fields; the header has 21)"),
        "{e}"
    );
    std::fs::write(&csv, format!("{HEADER},new\n{}", whole[0])).unwrap();
    let e = scan_runs(&csv).err().unwrap().to_string();
    assert!(
        e.contains("runs.csv: line 1: column `new` is not one this testbed knows"),
        "{e}"
    );
    let newer = format!("{}3\n", whole[1].trim_end().trim_end_matches('2'));
    std::fs::write(&csv, format!("{HEADER}\n{}{newer}", whole[0])).unwrap();
    let e = scan_runs(&csv).err().unwrap().to_string();
    assert!(
        e.contains("line 3: a row of format 3, written by a newer testbed"),
        "{e}"
    );
    // A field that does not read names its column.
    let bad = whole[1].replace(",0.1,", ",lots,");
    std::fs::write(&csv, format!("{HEADER}\n{bad}")).unwrap();
    let e = scan_runs(&csv).err().unwrap().to_string();
    assert!(e.contains("line 2: not a run row (column share:"), "{e}");
}

/// Under a header of format 1 only a row that ends its line is whole; a cut one is dropped,
/// and kept beside the file.
#[test]
fn under_format_1_only_a_row_that_ends_its_line_is_whole() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("runs.csv");
    // Under a header of format 1, twelve fields are a row of an older build.
    let old = first_fields(&format1(&row("sequential", 42, 0.1)), 12);
    std::fs::write(&csv, format!("{}\n{old}\n", format1_header(12))).unwrap();
    let rows = scan_runs(&csv).unwrap();
    assert_eq!((rows.runs.len(), rows.cut, rows.current), (1, None, false));
    // ... but with no end of line they may be a longer row cut at a comma: cut short.
    std::fs::write(&csv, format!("{}\n{old}", format1_header(12))).unwrap();
    let rows = scan_runs(&csv).unwrap();
    assert_eq!((rows.runs.len(), rows.cut), (0, Some(2)));
    let kept = drop_cut_row(&csv).unwrap();
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        format!("{}\n", format1_header(12)),
        "only the cut row dropped, the header as it was"
    );
    // The dropped line is kept beside it (it may be a whole row an editor left unended),
    // each drop after the one before.
    assert_eq!(kept, d.path().join(CUT));
    std::fs::write(
        &csv,
        format!("{}\n{}", format1_header(12), first_fields(&old, 3)),
    )
    .unwrap();
    drop_cut_row(&csv).unwrap();
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        format!("{old}\n{}\n", first_fields(&old, 3))
    );
}

/// The first row a compare records upgrades a file from before a column (every row it
/// had, under today's header, then the new one); the rows after it are appended.
#[test]
fn the_first_row_recorded_upgrades_an_old_file() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("runs.csv");
    let c = deadline_vs_sequential(d.path());
    let old = format!(
        "{}\n",
        first_fields(&format1(&row("deadline", 42, 0.05)), 14)
    );
    std::fs::write(&path, format!("{}\n{old}", format1_header(14))).unwrap();
    let Rows {
        mut runs, current, ..
    } = scan_runs(&path).unwrap();
    assert!(!current);
    let csv = RunsFile {
        path: path.clone(),
        ready: current.into(),
    };
    let progress = Progress {
        already: runs.len(),
        todo: 2,
        t0: Instant::now(),
    };
    for (e, share) in [("sequential", 0.1), ("deadline", 0.06)] {
        let new = Run {
            seed: 43,
            ..row(e, 43, share)
        };
        record(&c, &csv, &mut runs, new, progress).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let upgraded = Run {
        build: String::new(),
        ..row("deadline", 42, 0.05)
    };
    assert_eq!(
        text,
        format!(
            "{HEADER}\n{}{}{}",
            upgraded.csv(),
            row("sequential", 43, 0.1).csv(),
            row("deadline", 43, 0.06).csv()
        )
    );
    assert!(scan_runs(&path).unwrap().current);
}

/// A compare stops before its next run when `testbed` or `vod-client` is rebuilt under
/// it: a new file in its place (as `cargo build` writes it), or the same file written over
/// (as `cp` does), whether its length changes or only its modification time.
#[test]
fn a_rebuild_under_a_compare_is_seen() {
    let d = tempfile::tempdir().unwrap();
    let (testbed, vod) = (d.path().join("testbed"), d.path().join("vod-client"));
    let fresh = || {
        std::fs::write(&testbed, b"testbed build 1").unwrap();
        std::fs::write(&vod, b"vod-client build 1").unwrap();
        Live::of(testbed.clone()).unwrap()
    };
    let live = fresh();
    live.same_build().unwrap();
    assert_eq!(live.build.len(), 12);
    let replaced = |live: &Live, path: &Path| {
        let e = live.same_build().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{} was replaced", path.display())),
            "{e}"
        );
    };
    // A new file renamed over testbed.
    std::fs::write(d.path().join("new"), b"testbed build 1").unwrap();
    std::fs::rename(d.path().join("new"), &testbed).unwrap();
    replaced(&live, &testbed);
    // vod-client written over in place: a new length ...
    let live = fresh();
    std::fs::write(&vod, b"vod-client build 22").unwrap();
    replaced(&live, &vod);
    // ... or the same length and a new modification time.
    let live = fresh();
    let f = std::fs::OpenOptions::new().write(true).open(&vod).unwrap();
    std::io::Write::write_all(&mut &f, b"vod-client build 2").unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    replaced(&live, &vod);
    // The build is of both files.
    let other = {
        std::fs::write(&vod, b"vod-client build 2").unwrap();
        Live::of(testbed.clone()).unwrap().build
    };
    assert_ne!(fresh().build, other);
}

/// One compare at a time in a folder: a second compare, or a pool into it, is refused
/// while the first holds it, and the folder is free again once it lets go.
#[test]
fn one_compare_at_a_time_holds_a_folder() {
    let d = tempfile::tempdir().unwrap();
    let c = Comparison {
        config: crate::lab::config::Source::file(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/default.yaml"),
        ),
        ..deadline_vs_sequential(d.path())
    };
    assert!(!folder_in_use(d.path()));
    let held = hold_folder(d.path()).unwrap();
    assert!(folder_in_use(d.path()));
    let e = compare(&c).unwrap_err().to_string();
    assert!(e.contains("another compare is using this folder"), "{e}");
    assert!(!d.path().join("runs.csv").exists(), "nothing written");
    let e = pool(&[], vec![], d.path(), DEFAULT_MARGIN)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another compare is using this folder"), "{e}");
    drop(held);
    assert!(!folder_in_use(d.path()));
    // A compare of a build before 7566ff7 locked the folder itself: seen, and refused.
    let older = nix::fcntl::Flock::lock(
        std::fs::File::open(d.path()).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    assert!(folder_in_use(d.path()));
    let e = hold_folder(d.path()).err().unwrap().to_string();
    assert!(e.contains("another compare is using this folder"), "{e}");
    drop(older);
    assert!(!folder_in_use(d.path()));
    // Free: a compare with every run done takes it, and writes only its tables.
    let mut text = format!("{}\n", format1_header(14));
    for seed in 42..=43 {
        for r in 0..2 {
            for (e, share) in [("deadline", 0.05), ("sequential", 0.1)] {
                let row = format1(&Run {
                    repeat: r,
                    ..row(e, seed, share)
                });
                text.push_str(&format!("{}\n", first_fields(&row, 14)));
            }
        }
    }
    std::fs::write(d.path().join("runs.csv"), &text).unwrap();
    compare(&c).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("runs.csv")).unwrap(),
        text,
        "nothing to run: runs.csv as it was, readable by the build that wrote it"
    );
    assert!(d.path().join("compare.md").exists());
    // A row cut short there while a compare still holds the folder (it is writing it):
    // a pool takes the rows before it. Once the folder is free, a compare with nothing
    // to run drops the cut row, and the file is whole again.
    let cut = &text.lines().nth(1).unwrap()[..20];
    std::fs::write(d.path().join("runs.csv"), format!("{text}{cut}")).unwrap();
    let pooled = tempfile::tempdir().unwrap();
    let held = hold_folder(d.path()).unwrap();
    pool(&[d.path().into()], vec![], pooled.path(), DEFAULT_MARGIN).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pooled.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["pooled_from"][0]["runs"], 8);
    drop(held);
    let e = pool(&[d.path().into()], vec![], pooled.path(), DEFAULT_MARGIN).unwrap_err();
    assert!(e.to_string().contains("line 10: a row cut short"), "{e}");
    compare(&c).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("runs.csv")).unwrap(),
        text
    );
    pool(&[d.path().into()], vec![], pooled.path(), DEFAULT_MARGIN).unwrap();
}

/// With reruns, compare.md gives each entrant's same-seed spread; from six runs on, how
/// the start-up pieces go with the share. Without reruns, or with a start that does not
/// vary, neither line.
#[test]
fn the_tables_say_how_much_reruns_and_starts_spread_the_runs() {
    let d = tempfile::tempdir().unwrap();
    let c = deadline_vs_sequential(d.path());
    // Seed 42 far from seed 43; a bad start (4 pieces) costs 10 points.
    let mut runs = Vec::new();
    for (seed, base) in [(42, 0.02), (43, 0.2), (44, 0.08)] {
        for (r, pieces) in [(0, 30), (1, 4)] {
            for e in ["deadline", "sequential"] {
                runs.push(Run {
                    repeat: r,
                    startup_pieces: pieces,
                    ..row(e, seed, base + if pieces < 10 { 0.1 } else { 0.0 })
                });
            }
        }
    }
    // Each seed's two runs are 0.1 apart: sd 0.0707 about their mean, pooled the same
    // (7.1 points). The sequential runs are the deadline runs': the second entrant's r is
    // the same, -0.56 (-1.00 within seeds).
    insta::assert_snapshot!(report(&c, &runs));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
            .unwrap();
    let r = json["startup"][1]["correlation"].as_f64().unwrap();
    assert!((-0.6..-0.5).contains(&r), "{r}");
    let within = json["startup"][1]["within_seed_correlation"]
        .as_f64()
        .unwrap();
    assert!((within + 1.0).abs() < 1e-9, "{within}");
    assert!(json["entrants"][0]["same_seed_sd"].as_f64().is_some());
    // One run a seed, one start for every run: neither line.
    let firsts: Vec<Run> = runs
        .iter()
        .filter(|r| r.repeat == 0)
        .cloned()
        .chain((45..48).map(|s| Run {
            startup_pieces: 30,
            ..row("deadline", s, 0.1)
        }))
        .collect();
    insta::assert_snapshot!(report(&c, &firsts));
}

/// The world's supply and my client's waste: a table of their means (a dash for an
/// entrant with no such rows), a paired verdict on the waste, and neither without the
/// columns.
#[test]
fn the_tables_split_the_penalty_into_supply_and_waste() {
    let d = tempfile::tempdir().unwrap();
    let c = deadline_vs_sequential(d.path());
    let mut runs = Vec::new();
    for seed in 42..48 {
        // The world sends both 95 % (plus the seed's 0..5 points); sequential wastes 3
        // points more than deadline, give or take 0.1.
        let world = 0.95 + (seed - 42) as f64 * 0.01;
        let jitter = if seed % 2 == 0 { 0.001 } else { -0.001 };
        for (e, wasted) in [("deadline", 0.01), ("sequential", 0.04 + jitter)] {
            runs.push(Run {
                world_share: Some(world),
                wasted_share: Some(wasted),
                ..row(e, seed, 1.0 - world + wasted)
            });
        }
    }
    insta::assert_snapshot!(report(&c, &runs));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["waste_pairs"][0]["verdict"], "deadline better");
    assert!((json["entrants"][1]["wasted_share"].as_f64().unwrap() - 0.04).abs() < 1e-9);
    // A rerun of every seed, deadline's waste 0.5 points above its first: a same-seed sd
    // of 0.5 / √2 points; sequential's the same both times.
    let rerun: Vec<Run> = runs
        .iter()
        .cloned()
        .chain(runs.iter().map(|r| {
            Run {
                repeat: 1,
                wasted_share: r
                    .wasted_share
                    .map(|w| w + if r.entrant == "deadline" { 0.005 } else { 0.0 }),
                ..r.clone()
            }
        }))
        .collect();
    write_outputs(&c, &rerun).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
            .unwrap();
    let same = |k: usize| json["entrants"][k]["wasted_same_seed_sd"].as_f64().unwrap();
    assert!((same(0) - 0.005 / 2f64.sqrt()).abs() < 1e-9, "{}", same(0));
    assert!(same(1).abs() < 1e-9, "{}", same(1));
    let md = compare_md(d.path());
    insta::assert_snapshot!(md);
    // An entrant whose rows are from before the columns gets dashes; with no such row at
    // all, no table.
    for r in runs.iter_mut().filter(|r| r.entrant == "sequential") {
        (r.world_share, r.wasted_share) = (None, None);
    }
    insta::assert_snapshot!(report(&c, &runs));
    for r in &mut runs {
        (r.world_share, r.wasted_share) = (None, None);
    }
    insta::assert_snapshot!(report(&c, &runs));
}

/// Runs of two builds are named in compare.md and summary.json (rows from before the
/// column counted apart); runs of one build add no line, unless they are pooled and
/// their build is not known.
#[test]
fn runs_of_two_builds_are_named_in_the_tables() {
    let d = tempfile::tempdir().unwrap();
    let c = deadline_vs_sequential(d.path());
    let mut runs = Vec::new();
    for seed in [42, 43] {
        runs.push(row("deadline", seed, 0.05));
        runs.push(row("sequential", seed, 0.15));
    }
    insta::assert_snapshot!(report(&c, &runs));
    runs[3].build = "fedcba987654".into();
    runs[2].build = String::new();
    insta::assert_snapshot!(report(&c, &runs));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["builds"]["0123456789ab"], 2);
    assert_eq!(json["builds"].as_object().unwrap().len(), 2, "{json}");
    assert_eq!(json["runs_without_build"], 1);
    // Runs of one unknown build: nothing to say of a compare, but a pool of such folders
    // cannot tell whether they ran one build.
    for r in &mut runs {
        r.build.clear();
    }
    insta::assert_snapshot!(report(&c, &runs));
    let pooled = Comparison {
        pooled_from: vec![(d.path().join("a"), 2), (d.path().join("b"), 2)],
        ..c
    };
    insta::assert_snapshot!(report(&pooled, &runs));
}

/// Three runs of each of four seeds, where the runs of a seed agree and the seeds do not:
/// twelve runs one by one would settle it, four seeds do not.
#[test]
fn the_runs_of_a_seed_are_resampled_together() {
    let d = tempfile::tempdir().unwrap();
    let c = Comparison {
        seeds: 42..=45,
        repeat: 3,
        ..deadline_vs_sequential(d.path())
    };
    let mut runs = Vec::new();
    for (seed, diff) in [(42, -0.10), (43, -0.10), (44, -0.10), (45, 0.05)] {
        for repeat in 0..3 {
            let jitter = repeat as f64 * 0.001;
            runs.push(Run {
                repeat,
                ..row("deadline", seed, 0.2 + diff + jitter)
            });
            runs.push(Run {
                repeat,
                ..row("sequential", seed, 0.2)
            });
        }
    }
    let d12: Vec<f64> = runs.chunks(2).map(|w| w[0].share - w[1].share).collect();
    let one_by_one = stats::bootstrap_ci(&d12, RESAMPLES, 2);
    assert!(one_by_one.1 < 0.0, "the runs alone: {one_by_one:?}");
    let p = pairs(&c, &runs);
    assert_eq!(p[0].pairs, 12);
    assert!(p[0].ci95.1 >= 0.0, "by seed: {:?}", p[0].ci95);
    assert_eq!(p[0].verdict, "inconclusive");
    insta::assert_snapshot!(report(&c, &runs));
    let json = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    assert_eq!(json(d.path())["intervals_resample"], "seeds");
    // Seeds for power at three runs a seed, from the seeds' means (-0.099 three times and
    // 0.051: mean -0.0615, sd 0.075, n = (3.2415 · 0.075 / 0.0615)² = 15.6).
    assert_eq!(
        (p[0].runs_per_seed, p[0].seeds_for_90pct_power),
        (Some(3), Some(16))
    );
    assert_eq!(json(d.path())["pairs"][0]["seeds_for_90pct_power"], 16);
    // Uneven runs a seed: no figure.
    let uneven: Vec<Run> = runs
        .iter()
        .filter(|r| r.seed != 45 || r.repeat == 0)
        .cloned()
        .collect();
    assert_eq!(pairs(&c, &uneven)[0].seeds_for_90pct_power, None);
    // One run a seed: the plain bootstrap, and nothing to say about it.
    let firsts: Vec<Run> = runs.iter().filter(|r| r.repeat == 0).cloned().collect();
    insta::assert_snapshot!(report(&c, &firsts));
    assert_eq!(json(d.path())["intervals_resample"], "runs");
    // One seed run again: its runs are all there is to resample, and it says so.
    let one: Vec<Run> = runs.iter().filter(|r| r.seed == 42).cloned().collect();
    assert_eq!(pairs(&c, &one)[0].verdict, "deadline better");
    insta::assert_snapshot!(report(&c, &one));
}

/// sequential against a client line with a comma and quotes in it, on six seeds, every
/// column filled (some fields empty), written to `out`: sequential 25 points better.
fn sequential_vs_a_quoted_line(out: &Path) -> (Comparison, Vec<Run>) {
    let c = Comparison {
        out: out.into(),
        ..cmp(vec![
            Entrant::Policy(Policy::Sequential),
            Entrant::Client("my client, \"v2\"".into()),
        ])
    };
    let mut runs = Vec::new();
    for seed in 42..=47 {
        for (e, share) in [("sequential", 0.05), ("my client, \"v2\"", 0.30)] {
            runs.push(Run {
                first_piece_at: (seed % 2 == 0).then_some(2.5),
                upload_peak: Some(58.5),
                upload_over_cap: seed == 47,
                world_share: Some(0.9 + seed as f64 * 1e-3),
                wasted_share: (seed != 43).then_some(0.02),
                ..row(e, seed, share + seed as f64 * 0.001)
            });
        }
    }
    (c, runs)
}

/// Rows read back as written, quotes and empty fields too; every older form of the file
/// still reads; a file that is not a runs.csv is refused with its line.
#[test]
fn rows_round_trip_in_every_format() {
    let d = tempfile::tempdir().unwrap();
    let (_, runs) = sequential_vs_a_quoted_line(d.path());
    let csv = d.path().join("runs.csv");
    let text: String = std::iter::once(format!("{HEADER}\n"))
        .chain(runs.iter().map(Run::csv))
        .collect();
    std::fs::write(&csv, text).unwrap();
    let back = read_runs(&csv).unwrap();
    assert_eq!(back.len(), runs.len());
    assert_eq!(back[1].entrant, "my client, \"v2\"");
    assert!((back[1].share - runs[1].share).abs() < 1e-6);
    assert_eq!(back[0].first_piece_at, Some(2.5));
    assert_eq!(back[2].first_piece_at, None, "an empty field");
    assert_eq!(back[0].upload_peak, Some(58.5));
    assert!(!back[0].upload_over_cap && back[10].upload_over_cap);
    assert_eq!(back[0].build, "0123456789ab");
    assert_eq!(
        (back[0].world_share, back[0].wasted_share),
        (Some(0.942), Some(0.02))
    );
    assert_eq!(back[2].wasted_share, None, "an empty field");
    // Rows written before the byte counts, the build column, the upload columns, and
    // first_piece_at still read.
    let old_row = format1(&runs[0]);
    let old_file = d.path().join("old.csv");
    let parse_run = |line: &str| {
        std::fs::write(&old_file, format!("{}\n{line}\n", format1_header(17))).unwrap();
        read_runs(&old_file).ok().map(|mut rows| rows.remove(0))
    };
    let fifteen = parse_run(&format!("{},0123456789ab", first_fields(&old_row, 14))).unwrap();
    assert_eq!(
        (
            fifteen.build.as_str(),
            fifteen.world_share,
            fifteen.upload_peak
        ),
        ("0123456789ab", None, Some(58.5))
    );
    let fourteen = parse_run(&first_fields(&old_row, 14)).unwrap();
    assert_eq!(
        (fourteen.build.as_str(), fourteen.upload_peak),
        ("", Some(58.5))
    );
    let twelve = parse_run(&first_fields(&old_row, 12)).unwrap();
    assert_eq!(
        (twelve.first_piece_at, twelve.upload_peak),
        (Some(2.5), None)
    );
    assert_eq!(
        parse_run(&first_fields(&old_row, 11))
            .unwrap()
            .first_piece_at,
        None
    );
    for torn in [13, 16] {
        assert!(
            parse_run(&first_fields(&old_row, torn)).is_none(),
            "{torn} fields: torn"
        );
    }
    // Format 1 told a Slurm task by its 0 jobs.
    let slurm = Run {
        placement: Placement::Slurm,
        ..runs[0].clone()
    };
    let task = parse_run(format1(&slurm).trim_end()).unwrap();
    assert_eq!((task.placement, task.jobs), (Placement::Slurm, 1));
    assert_eq!(
        parse_run(old_row.trim_end()).unwrap().placement,
        Placement::Local
    );
    std::fs::write(&csv, "head\nnot,a,row\n").unwrap();
    let e = read_runs(&csv).unwrap_err().to_string();
    assert!(e.contains("line 1: column `head` is not one"), "{e}");
    std::fs::write(&csv, format!("{HEADER}\nnot,a,row\n")).unwrap();
    assert!(read_runs(&csv).unwrap_err().to_string().contains("line 2"));
}

/// Three verdicts: better where the 95 % interval excludes 0 (a small settled difference is
/// still "better"), equivalent where the 90 % interval lies inside ±δ, inconclusive where
/// neither holds or from one pair; a margin of 0 never says equivalent.
#[test]
fn a_pair_is_better_equivalent_or_inconclusive() {
    let v = |ci95, ci90, margin| super::verdict::verdict("a", "b", 10, (ci95, ci90), margin);
    assert_eq!(v((-0.05, -0.01), (-0.04, -0.02), 0.02), "a better");
    assert_eq!(v((0.01, 0.05), (0.02, 0.04), 0.02), "b better");
    assert_eq!(v((-0.015, -0.001), (-0.012, -0.003), 0.02), "a better");
    let within = "equivalent within ±2.0 points";
    assert_eq!(v((-0.019, 0.018), (-0.015, 0.012), 0.02), within);
    // The 90 % interval decides, not the 95 %: a wider 95 % interval is no obstacle.
    assert_eq!(v((-0.025, 0.022), (-0.018, 0.015), 0.02), within);
    assert_eq!(v((-0.025, 0.01), (-0.021, 0.008), 0.02), "inconclusive");
    assert_eq!(v((-0.019, 0.018), (-0.015, 0.012), 0.0), "inconclusive");
    let one = super::verdict::verdict("a", "b", 1, ((-0.001, 0.001), (-0.001, 0.001)), 0.02);
    assert_eq!(one, "inconclusive");
}

/// A verdict needs the paired interval apart from zero; the tables say so, and which runs
/// ran side by side.
#[test]
fn verdicts_need_an_interval_apart_from_zero() {
    let d = tempfile::tempdir().unwrap();
    let (c, runs) = sequential_vs_a_quoted_line(d.path());
    let csv = d.path().join("runs.csv");
    std::fs::write(&csv, whole_file(&runs)).unwrap();
    let back = read_runs(&csv).unwrap();
    let p = pairs(&c, &back);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].pairs, 6);
    assert_eq!(p[0].verdict, "sequential better");
    // Two runs each that overlap by far more than the margin: inconclusive.
    let mixed: Vec<Run> = back
        .iter()
        .take(4)
        .cloned()
        .enumerate()
        .map(|(k, mut r)| {
            r.share = [0.1, 0.2, 0.2, 0.1][k];
            r
        })
        .collect();
    assert_eq!(pairs(&c, &mixed)[0].verdict, "inconclusive");
    insta::assert_snapshot!(report(&c, &back));
    // The pairs differ by the same 25 points every seed: no spread, two pairs would do.
    assert_eq!(p[0].pairs_for_90pct_power, Some(2));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["pairs"][0]["pairs_for_90pct_power"], 2);
    let svg = std::fs::read_to_string(d.path().join("compare.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count(),
        12
    );
    // A row from before --jobs (ten fields) reads as one at a time; with a row beside
    // another the tables say so.
    std::fs::write(
        &csv,
        format!("{}\nsequential,42,0,0.05,10,server,1,exit code 0,9.5,3\nsequential,43,0,0.05,10,server,1,exit code 0,9.5,3,2\n", format1_header(11)),
    )
    .unwrap();
    let mixed = read_runs(&csv).unwrap();
    assert_eq!((mixed[0].jobs, mixed[1].jobs), (1, 2));
    insta::assert_snapshot!(report(&c, &mixed));
}

/// A client line is shown in the tables as typed: Markdown in it neither splits a cell
/// nor turns into emphasis; a pair that differs by chance gets a pairs-for-power figure.
#[test]
fn table_cells_show_lines_as_typed() {
    let d = tempfile::tempdir().unwrap();
    let line = "my_client --a *b* | c";
    let c = Comparison {
        out: d.path().into(),
        ..cmp(vec![
            Entrant::Policy(Policy::Deadline),
            Entrant::Client(line.into()),
        ])
    };
    let runs: Vec<Run> = [(0.10, 0.12), (0.20, 0.24), (0.15, 0.15), (0.30, 0.36)]
        .iter()
        .zip(42..)
        .flat_map(|(&(a, b), seed)| [row("deadline", seed, a), row(line, seed, b)])
        .collect();
    insta::assert_snapshot!(report(&c, &runs));
    // Differences −2, −4, 0 and −6 points: mean −3, sd 2.58, so ((1.96 + 1.28) · 2.58 /
    // 3)² = 7.8: eight pairs for a verdict nine times in ten.
    let p = pairs(&c, &runs);
    assert_eq!(p[0].pairs_for_90pct_power, Some(8), "{p:?}");
}

/// `--name` names the command lines in order; a name is the resume key, so two entrants
/// of one name are refused, and the legend under the tables says what each name ran.
#[test]
fn names_go_to_the_lines_in_order_and_must_be_apart() {
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let es = entrants(
        vec![Policy::Deadline],
        v(&[
            "vod-client --choker tyrant {torrent}",
            "my-client {torrent}",
        ]),
        v(&["aria2c {torrent}"]),
        v(&["tyrant", "mine", "ws"]),
    )
    .unwrap();
    let names: Vec<String> = es.iter().map(Entrant::name).collect();
    assert_eq!(names, ["deadline", "tyrant", "mine", "ws"]);
    let err = |p: Vec<Policy>, c: &[&str], n: &[&str]| {
        entrants(p, v(c), vec![], v(n)).unwrap_err().to_string()
    };
    assert!(err(vec![], &["a"], &["x", "y"]).contains("2 names for 1"));
    assert!(err(vec![Policy::Deadline], &["a"], &["deadline"]).contains("\"deadline\""));
    assert!(err(vec![], &["a", "a"], &[]).contains("two entrants"));
    assert!(err(vec![], &["a"], &[" "]).contains("empty"));
    assert!(err(vec![], &[" "], &[]).contains("empty --client line"));
    assert!(err(vec![], &["a"], &["x\ny"]).contains("line break"));
    assert!(err(vec![], &["a\nb"], &[]).contains("give it a --name"));
    assert!(entrants(vec![Policy::Rarest, Policy::Rarest], vec![], vec![], vec![]).is_err());

    let d = tempfile::tempdir().unwrap();
    let c = Comparison {
        out: d.path().into(),
        ..cmp(vec![es[0].clone(), es[1].clone(), es[3].clone()])
    };
    let runs = vec![
        row("deadline", 42, 0.1),
        row("tyrant", 42, 0.05),
        row("ws", 42, 0.2),
    ];
    insta::assert_snapshot!(report(&c, &runs));
    let json = std::fs::read_to_string(d.path().join("summary.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["commands"]["tyrant"],
        "vod-client --choker tyrant {torrent}"
    );
    // A name or a line Markdown would read as markup is shown as typed.
    assert_eq!(md_text("a|b*c_"), "a\\|b\\*c\\_");
    assert_eq!(md_code("echo `date`"), "`` echo `date` ``");
    assert_eq!(md_code("`x`"), "`` `x` ``");
    assert_eq!(md_code("x"), "`x`");
}

#[test]
fn seeds_parse() {
    assert_eq!(parse_seeds("42..51").unwrap(), 42..=51);
    assert_eq!(parse_seeds("7").unwrap(), 7..=7);
    assert!(parse_seeds("51..42").is_err());
    assert!(parse_seeds("x").unwrap_err().contains("--seeds x"));
}
