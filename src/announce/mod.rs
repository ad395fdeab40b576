//! The HTTP tracker protocol (BEP 3, 23, 48) on both sides, without I/O: the tracker parses
//! announce and scrape queries with [`query`]; a peer builds its announce URL and reads the
//! answer with [`request`]. The tracker and the peer's tracker client share these types, so the
//! two halves cannot drift apart.

pub mod query;
pub mod request;

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
