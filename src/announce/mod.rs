//! The HTTP tracker protocol (BEP 3, 23, 48) on both sides, without I/O: one [`Announce`],
//! which a peer turns into its announce URL ([`Announce::url`], in [`request`], with the
//! answer's parser) and the tracker reads back from the query ([`query`]). Both halves share
//! the type, and a test checks that what one writes the other reads.

pub mod query;
pub mod request;

use std::net::IpAddr;

/// One announce, as a peer sends it and the tracker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    /// `None` for a regular announce (no event, `empty` or `paused`).
    pub event: Option<Event>,
    pub numwant: usize,
    pub compact: bool,
    pub no_peer_id: bool,
    /// The `ip` the client claims (used only as the lab allows: see the tracker's docs).
    pub ip: Option<IpAddr>,
}

/// An announce's `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}
