//! `make bench`: the lab's speed and scale figures beside their anchors, measured in one run on
//! this machine, written to `run/bench.json`, recorded by section in `benches/results.json`, and
//! tabled in BENCHMARKS.md from that record.
//!
//! Sections, each bounded in time and on loopback only:
//! * `sha1`: piece hashing, the sha1 crate against the machine's openssl.
//! * `tracker`: our tracker as the lab runs it (access log on, into a file) and with the log
//!   off, against aquatic_http (the strongest open HTTP tracker) and opentracker under the same
//!   wrk load (one torrent, 5000 peer ids, numwant=50, compact); three rounds in turn.
//! * `wire`: one torrent (1 GiB) from a seed process to a leecher process, ours against
//!   libtorrent (TCP only), every piece hash-checked, the result compared byte for byte.
//! * `cap`: upload-cap accuracy, measured by a raw wire leecher in this harness.
//! * `scale`: worlds of 200 and 500 clients: start, stop, memory and idle CPU, and the status
//!   page with that many clients: server render and a refresh in headless Chromium.
//! * `netem`: the cost of network emulation: a world of 500 clients downloading through the
//!   link stage (configs/network.yaml's profile) against the same world without it: time until
//!   every client completes, the CPU of all processes, and the stage thread's own.
//! * `shadow`: the standard experiment's world (tracker, 2 seeds, 20 leechers) under Shadow:
//!   wall time for 130 s simulated, and whether two simulations are byte-identical.
//! * `vod`: `testbed compare` of the three policies on `configs/default.yaml`,
//!   `configs/scarce.yaml` and `configs/network.yaml`, five seeds each, one experiment at a time: mean server share with its
//!   95 % interval, and the paired verdict of deadline against sequential. About an hour, so it
//!   runs only when named: `make bench BENCH=vod` (`VOD_SEEDS=N`, `VOD_SECS=S` for a prefix of
//!   the movie).
//! * `clients`: the league table (issue 18): every installable real client's streaming mode
//!   (its wrapper in examples/) and our three policies, one `testbed compare` on the standard
//!   experiment's first 60 s (`CLIENTS_SECS=S`, 0 for the whole movie), five seeds
//!   (`CLIENTS_SEEDS=N`); rows here, the table in BENCHMARKS.md and docs/clients.md, every run's
//!   dots in benches/clients.svg. Long (about 65 minutes): `make bench BENCH=clients`.
//!
//! `QUICK=1` shortens every section (under 3 minutes); `BENCH=tracker,cap` runs only those.
//!
//! One file a section (`hash` is the `sha1` section), beside `procs` (processes, waiting,
//! /proc figures), `page` (the status page's timings, for `scale`) and `results` (bench.json,
//! the record and the table made from it); this file holds the figures, the sections' order and `main`.
//! Run through `make bench`, which installs the anchors first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use rand::{RngCore, SeedableRng};
use serde::Serialize;

#[allow(dead_code)] // the page test takes screenshots; the bench only times
#[path = "../../tests/it/webdriver.rs"]
mod webdriver;

// Processes, ports, HTTP and scenarios, shared with the integration tests.
#[path = "../../tests/it/support.rs"]
mod support;

use support::{free_port, wait_for, Proc, Scenario};

mod cap;
mod clients;
mod hash;
mod netem;
mod page;
mod procs;
mod results;
mod scale;
mod shadow;
mod tracker;
mod vod;
mod wire;

use cap::*;
use clients::*;
use hash::*;
use netem::*;
use page::*;
use procs::*;
use results::*;
use scale::*;
use shadow::*;
use tracker::*;
use vod::*;
use wire::*;

use testbed::metainfo::Torrent;
use testbed::wire::{BlockRef, Decoder, Handshake, Message, BLOCK_SIZE};

const TESTBED: &str = env!("CARGO_BIN_EXE_testbed");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Serialize, Clone)]
struct Figure {
    section: &'static str,
    name: String,
    value: f64,
    unit: &'static str,
    /// The anchor's figure for the same measure, when there is one.
    anchor: Option<f64>,
    anchor_name: Option<&'static str>,
    /// value / anchor (for figures where more is better) or anchor / value (less is better).
    ratio: Option<f64>,
    target: Option<String>,
    pass: Option<bool>,
}

/// The sections, in the order they run and are tabled.
const SECTIONS: [&str; 9] = [
    "sha1", "tracker", "wire", "cap", "scale", "netem", "shadow", "vod", "clients",
];

struct Bench {
    quick: bool,
    /// Only some sections were asked for (BENCH=...).
    partial: bool,
    /// BENCH=... named the sections.
    named: bool,
    sections_run: Vec<&'static str>,
    /// Sections that stopped with an error (or were stopped): BENCHMARKS.md keeps their rows
    /// from their last complete run, and says so.
    failed: Vec<&'static str>,
    dir: PathBuf,
    figures: Vec<Figure>,
    errors: Vec<String>,
}

impl Bench {
    fn add(&mut self, section: &'static str, name: &str, value: f64, unit: &'static str) -> usize {
        println!("  {name}: {value:.3} {unit}");
        self.figures.push(Figure {
            section,
            name: name.to_string(),
            value,
            unit,
            anchor: None,
            anchor_name: None,
            ratio: None,
            target: None,
            pass: None,
        });
        self.figures.len() - 1
    }

    fn anchor(&mut self, i: usize, name: &'static str, anchor: f64, more_is_better: bool) {
        let f = &mut self.figures[i];
        f.anchor = Some(anchor);
        f.anchor_name = Some(name);
        f.ratio = Some(if more_is_better {
            f.value / anchor
        } else {
            anchor / f.value
        });
        println!(
            "    {name}: {anchor:.3} {} (ratio {:.2})",
            f.unit,
            f.ratio.unwrap()
        );
    }

    /// [`Self::anchor`] (more is better) with the target of at least `min` times the anchor.
    fn at_least(&mut self, i: usize, name: &'static str, anchor: f64, min: f64) {
        self.anchor(i, name, anchor, true);
        let r = self.figures[i].ratio.unwrap_or(0.0);
        self.target(i, &format!(">= {min}x {name}"), r >= min);
    }

    fn target(&mut self, i: usize, target: &str, pass: bool) {
        let f = &mut self.figures[i];
        f.target = Some(target.to_string());
        f.pass = Some(pass);
        println!(
            "    target {target}: {}",
            if pass { "pass" } else { "MISS" }
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--table") {
        // The table again from the record, measuring nothing (after editing the record).
        let none = Bench {
            quick: false,
            partial: true,
            named: true,
            sections_run: Vec::new(),
            failed: Vec::new(),
            dir: PathBuf::new(),
            figures: Vec::new(),
            errors: Vec::new(),
        };
        if let Err(e) = write_table(&none) {
            eprintln!("lab bench: {e:#}");
            std::process::exit(1);
        }
        println!("lab bench: BENCHMARKS.md's table made from benches/results.json");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs bench targets too: there it checks how a
        // run's figures are recorded and tabled, and measures nothing.
        check_results();
        println!("lab bench: results record checked; run the bench with `make bench`");
        return;
    }
    let quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let only: Option<Vec<String>> = std::env::var("BENCH")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let dir = Path::new(ROOT).join("run/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create run/bench");
    let mut b = Bench {
        quick,
        partial: only.is_some(),
        named: only.is_some(),
        sections_run: Vec::new(),
        failed: Vec::new(),
        dir,
        figures: Vec::new(),
        errors: Vec::new(),
    };
    let started = Instant::now();
    type Section = fn(&mut Bench) -> Result<()>;
    /// Sections left out of a plain `make bench` (which stays under 15 minutes): the VoD
    /// comparison and the league table are hours of experiments one at a time; `make bench
    /// BENCH=vod` (or `clients`) runs them.
    const LONG: [&str; 2] = ["vod", "clients"];
    let sections: [(&str, Section); 9] = [
        ("sha1", sha1),
        ("tracker", tracker),
        ("wire", wire),
        ("cap", cap),
        ("scale", scale),
        ("netem", netem),
        ("shadow", shadow),
        ("vod", vod),
        ("clients", clients),
    ];
    for (name, run) in sections {
        let named = only.as_ref().map(|o| o.iter().any(|s| s == name));
        // A long section runs only when named: its rows in BENCHMARKS.md are kept otherwise.
        if named == Some(false) || (named.is_none() && LONG.contains(&name)) {
            b.partial |= named.is_none();
            continue;
        }
        println!("== {name}");
        b.sections_run.push(name);
        let t = Instant::now();
        if let Err(e) = run(&mut b) {
            println!("  {name} failed: {e:#}");
            b.errors.push(format!("{name}: {e:#}"));
            b.failed.push(name);
        }
        println!("  ({:.0} s)", t.elapsed().as_secs_f64());
    }
    let total = started.elapsed().as_secs_f64();
    if let Err(e) = write_results(&b, total) {
        eprintln!("lab bench: writing results: {e:#}");
        std::process::exit(1);
    }
    println!("== {total:.0} s in all; run/bench.json written");
    if !b.errors.is_empty() {
        std::process::exit(1);
    }
}
