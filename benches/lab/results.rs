//! Results: `run/bench.json` (this run, as measured), `benches/results.json` (the committed
//! record: each section's figures from its last complete run, with when, where and by which
//! command), and BENCHMARKS.md's table between its bench markers, generated from that record
//! alone. A run replaces the sections it measured; a partial run (`BENCH=...`), a long section
//! left out, or a section that failed keeps its record from its last complete run.

use super::*;
use serde::Deserialize;

/// `benches/results.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Results {
    /// The file's format.
    pub format: u32,
    /// By section.
    pub sections: BTreeMap<String, Measured>,
}

/// One section's figures, and the run that measured them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Measured {
    pub date: String,
    pub machine: String,
    pub command: String,
    /// How long the whole run took (a plain `make bench`; not for a named section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    pub figures: Vec<Row>,
}

/// One figure as recorded: a row of the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
}

impl From<&Figure> for Row {
    fn from(f: &Figure) -> Row {
        Row {
            name: f.name.clone(),
            value: f.value,
            unit: f.unit.to_string(),
            anchor_name: f.anchor_name.map(str::to_string),
            anchor: f.anchor,
            ratio: f.ratio,
            target: f.target.clone(),
            pass: f.pass,
        }
    }
}

/// The committed record.
const RESULTS: &str = "benches/results.json";
/// The record's format.
const FORMAT: u32 = 1;

impl Results {
    fn read(path: &Path) -> Result<Results> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Results {
                format: FORMAT,
                ..Results::default()
            }),
            Err(e) => Err(e).with_context(|| format!("{}", path.display())),
        }
    }

    /// The sections `b` measured whole replace theirs; the others stay as they were.
    fn record(&mut self, b: &Bench, run: &Measured) {
        for &sec in b.sections_run.iter().filter(|s| !b.failed.contains(s)) {
            let figures = b.figures.iter().filter(|f| f.section == sec).map(Row::from);
            let measured = Measured {
                figures: figures.collect(),
                ..run.clone()
            };
            self.sections.insert(sec.to_string(), measured);
        }
    }

    /// BENCHMARKS.md's table: which run measured which sections, then every row in the
    /// sections' order, then what failed in the run `b` (if any).
    fn table(&self, b: &Bench) -> String {
        let mut t = format!(
            "Generated from `{RESULTS}`: each section's rows are from its last complete run.\n\n"
        );
        let mut runs: Vec<(&Measured, Vec<&str>)> = Vec::new();
        for sec in SECTIONS {
            let Some(m) = self.sections.get(sec) else {
                continue;
            };
            let same = |r: &Measured| {
                (&r.command, &r.date, &r.machine) == (&m.command, &m.date, &m.machine)
            };
            match runs.iter_mut().find(|(r, _)| same(r)) {
                Some((_, secs)) => secs.push(sec),
                None => runs.push((m, vec![sec])),
            }
        }
        for (m, secs) in &runs {
            let took = m
                .seconds
                .map(|s| format!(", in {s:.0} s"))
                .unwrap_or_default();
            t.push_str(&format!(
                "- {}: `{}` on {}, {}{took}.\n",
                secs.join(", "),
                m.command,
                m.date,
                m.machine
            ));
        }
        t.push_str("\n| section | figure | value | anchor | ratio | target | result |\n");
        t.push_str("|---|---|---|---|---|---|---|\n");
        for sec in SECTIONS {
            for f in self.sections.get(sec).iter().flat_map(|m| &m.figures) {
                t.push_str(&row(sec, f));
            }
        }
        for e in &b.errors {
            t.push_str(&format!("\nFailed: {e}\n"));
        }
        if !b.failed.is_empty() {
            t.push_str(&format!(
                "\nThe rows of {} are from their last complete run.\n",
                b.failed.join(", ")
            ));
        }
        t
    }
}

/// A figure's row of the table.
fn row(section: &str, f: &Row) -> String {
    let anchor = match (f.anchor, &f.anchor_name) {
        (Some(a), Some(n)) => format!("{n}: {} {}", num(a), f.unit),
        _ => String::new(),
    };
    format!(
        "| {section} | {} | {} {} | {anchor} | {} | {} | {} |\n",
        f.name,
        num(f.value),
        f.unit,
        f.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
        f.target.clone().unwrap_or_default(),
        match f.pass {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "",
        }
    )
}

pub(crate) fn write_results(b: &Bench, total_secs: f64) -> Result<()> {
    let machine = machine();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let command = match (b.quick, b.named) {
        (true, _) => "make bench QUICK=1".to_string(),
        (false, true) => format!("make bench BENCH={}", b.sections_run.join(",")),
        (false, false) => "make bench".to_string(),
    };
    let json = serde_json::json!({
        "date": date,
        "machine": machine,
        "command": command,
        "quick": b.quick,
        "seconds": total_secs,
        "figures": b.figures,
        "errors": b.errors,
    });
    let run = Path::new(ROOT).join("run");
    std::fs::write(run.join("bench.json"), serde_json::to_string_pretty(&json)?)?;
    if b.quick {
        // Short measurements are for a quick look; the record is of full runs only.
        println!("QUICK: {RESULTS} and BENCHMARKS.md left as they are");
        return Ok(());
    }
    let path = Path::new(ROOT).join(RESULTS);
    let mut results = Results::read(&path)?;
    results.record(
        b,
        &Measured {
            date,
            machine,
            command,
            seconds: (!b.named).then_some(total_secs),
            figures: Vec::new(),
        },
    );
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
    write_table(b)
}

/// BENCHMARKS.md's table from the record, with what failed in `b`.
pub(crate) fn write_table(b: &Bench) -> Result<()> {
    let results = Results::read(&Path::new(ROOT).join(RESULTS))?;
    replace_between(
        &Path::new(ROOT).join("BENCHMARKS.md"),
        "<!-- bench:begin -->",
        "<!-- bench:end -->",
        &results.table(b),
    )
}

/// Which rows a run keeps: a partial run keeps the sections it did not run, a failed section
/// keeps its rows from its last complete run, and a section that ran replaces its rows; the
/// table is the record's, whatever BENCHMARKS.md held.
pub(crate) fn check_results() {
    let old_run = |figure: &str| Measured {
        date: "d0".into(),
        machine: "m".into(),
        command: "make bench".into(),
        seconds: Some(1.0),
        figures: vec![Row {
            name: figure.into(),
            value: 1.0,
            unit: "x".into(),
            anchor_name: None,
            anchor: None,
            ratio: None,
            target: None,
            pass: None,
        }],
    };
    let old = Results {
        format: FORMAT,
        sections: [
            ("wire", "old wire"),
            ("vod", "old vod"),
            ("clients", "old clients"),
        ]
        .into_iter()
        .map(|(s, f)| (s.to_string(), old_run(f)))
        .collect(),
    };
    let figure = Figure {
        section: "vod",
        name: "new vod".into(),
        value: 9.0,
        unit: "%",
        anchor: None,
        anchor_name: None,
        ratio: None,
        target: None,
        pass: None,
    };
    let stopped = Bench {
        quick: false,
        partial: true,
        named: true,
        sections_run: vec!["vod"],
        failed: vec!["vod"],
        dir: PathBuf::new(),
        figures: vec![figure],
        errors: vec!["vod: compare stopped by a signal".into()],
    };
    let run = Measured {
        date: "d1".into(),
        machine: "m".into(),
        command: "make bench BENCH=vod".into(),
        seconds: None,
        figures: Vec::new(),
    };
    let mut results = old.clone();
    results.record(&stopped, &run);
    assert_eq!(results, old, "a stopped section keeps its record");
    let table = results.table(&stopped);
    for kept in [
        "| wire | old wire |",
        "| vod | old vod |",
        "| clients | old clients |",
    ] {
        assert!(
            table.contains(kept),
            "a stopped vod section lost {kept:?}:\n{table}"
        );
    }
    assert!(
        !table.contains("new vod"),
        "a stopped section's figures were tabled:\n{table}"
    );
    assert!(
        table.contains("Failed: vod: compare stopped by a signal"),
        "{table}"
    );
    assert!(
        table.contains("The rows of vod are from their last complete run."),
        "{table}"
    );
    let measured = Bench {
        failed: Vec::new(),
        errors: Vec::new(),
        ..stopped
    };
    results.record(&measured, &run);
    let table = results.table(&measured);
    assert!(table.contains("| vod | new vod | 9.00 % |"), "{table}");
    assert!(
        !table.contains("old vod") && !table.contains("Failed"),
        "{table}"
    );
    assert!(table.contains("| wire | old wire |") && table.contains("| clients | old clients |"));
    assert!(
        table.contains("- wire, clients: `make bench` on d0, m, in 1 s.\n")
            && table.contains("- vod: `make bench BENCH=vod` on d1, m.\n"),
        "{table}"
    );
    let back: Results = serde_json::from_str(&serde_json::to_string(&results).unwrap()).unwrap();
    assert_eq!(back, results, "the record reads back as written");
}

pub(crate) fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}
