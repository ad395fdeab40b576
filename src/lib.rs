//! # testbed: a lab for video-on-demand over BitTorrent
//!
//! One program replaces the old course's `run_all_vod.sh`: an HTTP tracker with a live status
//! page, a world of throttled BitTorrent clients spawned as child processes, the experimenter's
//! own client, and a VoD server whose byte count is the score.
//!
//! The modules are the parts of the lab in layers; a module uses only the layers below it
//! (the test `layers::dependencies_run_one_way` checks every `crate::` path of the source):
//!
//! 1. [`util`]: helpers with no knowledge of the lab (atomic files, HTML escaping, hex, the
//!    runtime, signals, logging, a process's exit); [`sys`]: the operating system's plumbing
//!    (route netlink, the process tree);
//! 2. protocol, pure and without tokio: [`bencode`], [`metainfo`] (torrents), [`wire`] (the
//!    peer protocol as a sans-io codec), [`announce`] (the tracker protocol, both sides);
//! 3. [`policy`]: piece picking and choking, the lab's subject, one file per policy;
//! 4. [`peer`]: a BitTorrent peer (session, connections, storage, caps, tracker client);
//! 5. [`tracker`] (the HTTP tracker, its status page and JSON API) and [`vod`] (the deadline
//!    model, the counting VoD server, the score, `vod-client`) and [`netem`] (network
//!    emulation: per-link delay, jitter, loss and download caps through a TUN link stage);
//! 6. [`lab`]: one testbed: config, world, supervisor, its web page, one file per command:
//!    `testbed start | stop | status | run`;
//! 7. [`experiment`]: many runs: `testbed compare`, its statistics and report, executed here
//!    or as a Slurm array;
//! 8. [`cli`]: the command line of the `testbed` binary, parsing and dispatch only.

// The library's public face: the protocol (fuzzed and benched from outside), the policies,
// `vod-client` and the `testbed` command line. The rest is the lab's own (`pub(crate)`), so
// that rustc reports what nobody uses.
pub mod announce;
pub mod bencode;
pub mod cli;
pub(crate) mod experiment;
pub(crate) mod lab;
pub mod metainfo;
pub(crate) mod netem;
pub(crate) mod peer;
pub mod policy;
pub(crate) mod sys;
pub(crate) mod tracker;
pub(crate) mod util;
pub mod vod;
pub mod wire;

#[cfg(test)]
mod layers;
