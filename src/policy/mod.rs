//! Policies: which piece to ask a peer for next, how many requests to keep in flight, and whom
//! to upload to. These are the lab's subject, the places where students and researchers change
//! behaviour, so each policy is one file behind one small trait:
//!
//! | trait | BitTornado counterpart | implementations |
//! |---|---|---|
//! | [`PiecePicker::next`] | `PiecePicker.next` | [`rarest::RarestFirst`], [`sequential::Sequential`], [`deadline::Deadline`] |
//! | [`PiecePicker::backlog`] | `Downloader._request_more` (how deep to pipeline) | default method |
//! | [`Choker::rechoke`] | `Choker._rechoke` / `_round_robin` | [`tit_for_tat::TitForTat`], [`window_choker::WindowChoker`], [`tyrant::Tyrant`] |
//!
//! A picker never sees sockets or buffers: the session hands it a [`PickView`] of the swarm
//! (what we have, which pieces are under way, how many peers have each piece, and, for a VoD
//! client, where playback is) and the bitfield of the peer that has a free request slot. To add
//! a policy, add a file here, implement the trait, and give it a variant of [`Policy`] in
//! `registry.rs`. The traits live in [`picker`] and [`choker`]; this file only names the parts.

pub mod choker;
pub mod deadline;
pub mod picker;
pub mod rarest;
pub mod sequential;
pub mod tit_for_tat;
pub mod tyrant;
pub mod window_choker;

mod registry;

pub(crate) use choker::seeded_rank;
pub use choker::{ChokeCandidate, Choker, GATHER};
pub use picker::{PeerView, PickView, PiecePicker, PieceStatus, Playback};
pub use registry::{ChokerKind, Policy, UnknownPolicy};
