//! Gathering the referee's evidence: the world clients' records (`run/referee/*.jsonl`, see
//! `peer::referee`) and the VoD server's log, turned into a [`Verdict`] by
//! [`crate::vod::referee`].
//!
//! Which peer is my client: in the lab's namespace whatever comes from 10.77.0.2 (the source
//! address of any socket that binds none; the world's are bound to their own), on the host's
//! loopback whatever comes from 127.0.0.1. When nothing comes from there (a client that binds
//! an address of its own), or on other hosts (`shared`), the first peer that is not a world
//! client, and then whatever comes from its address. Several peer ids from that address (a
//! client that restarted) all count, and say so in a note; any other unknown peer is left out,
//! and says so too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::peer::referee::{Event, Line};
use crate::vod::referee::{Referee, Verdict};
use crate::vod::server::Sent;
use crate::vod::Model;

/// What the verdict needs to know of the run.
pub struct Case<'a> {
    /// `run/referee`.
    pub dir: &'a Path,
    /// The swarm of my client's torrent (records are named `SWARM-SLOT-gGEN.jsonl`).
    pub swarm: usize,
    pub model: Model,
    /// Unix time when my client was started: its clock's zero.
    pub my_start: f64,
    /// My client's address, where the addressing tells it.
    pub my_ip: Option<IpAddr>,
    /// What the VoD server sent of my torrent.
    pub sent: &'a [Sent],
    /// My client's upload cap, bytes/s (`my_client.max_upload_rate`).
    pub upload_cap: f64,
}

/// Read the records and judge.
pub fn judge(case: &Case<'_>) -> Verdict {
    let mut lines: Vec<(String, Line)> = Vec::new();
    let prefix = format!("{}-", case.swarm);
    for e in std::fs::read_dir(case.dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || !name.ends_with(".jsonl") {
            continue;
        }
        let who = name.trim_end_matches(".jsonl").to_string();
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        // A client killed mid-write leaves at most a torn last line: skip what does not parse.
        lines.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Line>(l).ok())
                .map(|l| (who.clone(), l)),
        );
    }
    lines.sort_by(|a, b| a.1.t.total_cmp(&b.1.t));
    let ip_of = |l: &Line| l.addr.parse::<SocketAddr>().ok().map(|a| a.ip());
    let mut notes = Vec::new();
    // The expected address if anything came from it, else the first stranger's.
    let my_ip = case
        .my_ip
        .filter(|ip| lines.iter().any(|(_, l)| ip_of(l) == Some(*ip)))
        .or_else(|| lines.first().and_then(|(_, l)| ip_of(l)));
    let mut ids = BTreeSet::new();
    let mut others: BTreeMap<String, String> = BTreeMap::new();
    let mut r = Referee::new(case.model).with_upload_cap(case.upload_cap);
    for (who, l) in &lines {
        if my_ip.is_none() || ip_of(l) != my_ip {
            others.insert(l.peer.clone(), l.addr.clone());
            continue;
        }
        ids.insert(l.peer.clone());
        let t = l.t - case.my_start;
        match &l.event {
            Event::Connect => r.connected(who),
            Event::Block { piece, begin, len } => r.world_block(t, *piece, *begin, *len),
            Event::Have { piece } => r.have(t, *piece),
            Event::Bitfield { have } => {
                let bytes = crate::util::unhex(have).unwrap_or_default();
                for (k, byte) in bytes.iter().enumerate() {
                    for bit in 0..8 {
                        if byte & (0x80 >> bit) != 0 {
                            r.have(t, (k * 8 + bit) as u32);
                        }
                    }
                }
            }
            Event::Got { len, .. } => r.my_upload(t, *len),
            // Traces of how the world treated it: not part of the score.
            Event::Request { .. } | Event::Interest { .. } | Event::Choke { .. } => {}
        }
    }
    for s in case.sent {
        r.server_range(s.t - case.my_start, s.start, s.len);
    }
    if ids.len() > 1 {
        notes.push(format!(
            "my client appeared under {} peer ids (restarts, or a new peer id per connection); all are counted",
            ids.len()
        ));
    }
    for (id, addr) in &others {
        notes.push(format!(
            "another unknown peer {} at {addr} met the world; not counted",
            printable(id)
        ));
    }
    r.verdict(notes)
}

/// A hex peer id as text (printable bytes kept).
fn printable(hex: &str) -> String {
    crate::util::unhex(hex)
        .map(|b| crate::util::html::printable_id(&b))
        .unwrap_or_else(|| hex.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, lines: &[Line]) {
        let text: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect();
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn line(t: f64, peer: &str, addr: &str, event: Event) -> Line {
        Line {
            t,
            peer: crate::util::hex(peer.as_bytes()),
            addr: addr.into(),
            event,
        }
    }

    /// The records of a swarm where two world clients met my client at `me` (and it
    /// uploaded ten blocks within a second), a stranger came by, another swarm's record
    /// names it too, and one record is torn.
    fn records_of_two_clients_and_a_stranger(dir: &Path, me: &str) {
        write(
            dir,
            "0-2-g0.jsonl",
            &[
                line(1001.0, "-TR3000-aaaaaaaaaaaa", me, Event::Connect),
                line(
                    1002.0,
                    "-TR3000-aaaaaaaaaaaa",
                    me,
                    Event::Block {
                        piece: 0,
                        begin: 0,
                        len: 16384,
                    },
                ),
                line(1002.5, "-TR3000-aaaaaaaaaaaa", me, Event::Have { piece: 0 }),
                line(
                    1003.0,
                    "-XX0000-stranger0000",
                    "10.77.9.9:1",
                    Event::Connect,
                ),
            ],
        );
        write(
            dir,
            "0-3-g0.jsonl",
            &[
                line(1001.5, "-TR3000-bbbbbbbbbbbb", me, Event::Connect),
                line(
                    1001.7,
                    "-TR3000-bbbbbbbbbbbb",
                    me,
                    Event::Bitfield { have: "c0".into() },
                ),
                // My client's uploads: 10 blocks within a second, above a 1 KB/s cap and its slack.
                line(
                    1004.0,
                    "-TR3000-bbbbbbbbbbbb",
                    me,
                    Event::Got {
                        piece: 1,
                        begin: 0,
                        len: 16384,
                    },
                ),
            ],
        );
        write(
            dir,
            "0-5-g0.jsonl",
            &(0..9)
                .map(|k| {
                    let ev = Event::Got {
                        piece: 1,
                        begin: 0,
                        len: 16384,
                    };
                    line(1004.1 + k as f64 * 0.1, "-TR3000-bbbbbbbbbbbb", me, ev)
                })
                .collect::<Vec<_>>(),
        );
        // Another swarm's record is not read.
        write(
            dir,
            "1-0-g0.jsonl",
            &[line(1001.0, "-TR3000-aaaaaaaaaaaa", me, Event::Connect)],
        );
        std::fs::write(dir.join("0-4-g0.jsonl"), "{\"t\": 1, torn").unwrap();
    }

    #[test]
    fn my_client_by_address_others_noted() {
        let d = tempfile::tempdir().unwrap();
        let me = "10.77.0.2:6881";
        let start = 1000.0;
        let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        records_of_two_clients_and_a_stranger(d.path(), me);
        let model = Model::new(16.0, 2.0, 0.0, 2 * 16384, 16384);
        let v = judge(&Case {
            dir: d.path(),
            swarm: 0,
            model,
            my_start: start,
            my_ip: Some("10.77.0.2".parse().unwrap()),
            sent: &[Sent {
                t: 1003.1,
                client: "x".into(),
                hash: "h".into(),
                start: 16384,
                len: 16384,
            }],
            upload_cap: 1024.0,
        });
        assert_eq!(v.world_peers_connected, 2, "two world clients met it");
        assert_eq!(
            v.bytes_to_world,
            10 * 16384,
            "what the world received from it"
        );
        assert!(
            v.upload_over_cap,
            "10 blocks in 0.9 s against 10 s of 1 KB/s + 8 blocks"
        );
        assert!(near(v.pieces[0].complete_at, 2.0));
        assert!(near(v.pieces[0].have_at, 1.7), "the bitfield came first");
        assert!(near(v.pieces[1].have_at, 1.7));
        assert!(
            !v.pieces[0].late && !v.pieces[1].late,
            "piece 1 from the server at its deadline"
        );
        assert!(near(v.first_block_at, 2.0));
        assert!(
            v.notes.iter().any(|n| n.contains("2 peer ids")),
            "{:?}",
            v.notes
        );
        assert!(
            v.notes
                .iter()
                .any(|n| n.contains("-XX0000-stranger0000") && n.contains("not counted")),
            "{:?}",
            v.notes
        );
    }

    #[test]
    fn without_an_address_the_first_stranger_is_my_client() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "0-0-g0.jsonl",
            &[
                line(
                    10.0,
                    "-LT2080-aaaaaaaaaaaa",
                    "10.200.0.2:5000",
                    Event::Connect,
                ),
                line(11.0, "-XX-later", "10.200.0.3:5000", Event::Connect),
            ],
        );
        let v = judge(&Case {
            dir: d.path(),
            swarm: 0,
            model: Model::new(16.0, 2.0, 0.0, 16384, 16384),
            my_start: 9.0,
            my_ip: None,
            sent: &[],
            upload_cap: 0.0,
        });
        assert_eq!(v.world_peers_connected, 1);
        assert_eq!(v.notes.len(), 2, "{:?}", v.notes);
    }
}
