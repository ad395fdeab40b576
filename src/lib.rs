//! # testbed: a lab for video-on-demand over BitTorrent
//!
//! One program replaces the old course's `run_all_vod.sh`: an HTTP tracker with a live status
//! page, a world of throttled BitTorrent clients spawned as child processes, the experimenter's
//! own client, and a VoD server whose byte count is the score.
//!
//! The modules are the parts of the lab, bottom up:
//!
//! * [`bencode`], [`metainfo`]: the file formats (torrents, tracker answers);
//! * [`wire`]: the peer protocol as a sans-io codec;
//! * [`policy`]: piece picking and choking, the lab's subject, one file per policy;
//! * [`peer`]: a BitTorrent peer (session, connections, storage, caps, tracker client);
//! * [`tracker`]: the HTTP tracker with its status page and JSON API;
//! * [`vod`]: the deadline model, the counting VoD server, `vod-client`;
//! * [`orchestrator`]: config, world, process tree: `testbed start | stop | status | run`;
//! * [`cli`]: the command line of the `testbed` binary.

pub mod bencode;
pub mod cli;
pub mod metainfo;
pub mod orchestrator;
pub mod peer;
pub mod policy;
pub mod tracker;
pub mod vod;
pub mod wire;
