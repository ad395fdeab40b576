//! The session's shared state: what we have, what is under way, who is connected, and the
//! decisions that need all of it at once (which blocks to ask a peer for, what a finished piece
//! means, whom to ban). Connections call in here under one short lock; hashing and disk writes
//! happen outside it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha1::{Digest, Sha1};
use tokio::sync::{broadcast, mpsc, watch, Notify};

use super::rate::{Limiter, Measure};
use super::storage::{PieceBuf, Storage};
use crate::metainfo::Torrent;
use crate::policy::{ChokeCandidate, PeerView, PickView, PiecePicker, PieceStatus, Playback};
use crate::util::Locked;
use crate::wire::{Bitfield, BlockRef, BLOCK_SIZE};

/// Pieces up to this size are hashed and written where their last block arrives. Hashing
/// 32 KiB takes about 20 µs, less than a trip to the blocking pool and back: a thread switch
/// each way, and every connection's HAVE sent from another thread, a wake-up of the runtime
/// each. Under Shadow each of those is a simulated system call; in the standard world they
/// were a fifth of all.
pub const CHECK_IN_PLACE: usize = 64 << 10;

pub type ConnId = u64;
pub type PeerId = [u8; 20];

/// What the session tells a connection to do.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// We verified a piece: tell the peer.
    Have(u32),
    Choke,
    Unchoke,
    /// Pace the blocks we send this peer at most at this many bytes/s (`None`: only the
    /// session's cap), as the choker asks ([`crate::policy::Choker::upload_cap`]).
    Cap(Option<u32>),
    /// Another peer delivered this block first (endgame).
    Cancel(BlockRef),
    /// Blocks were released: try to request more.
    Fill,
    Close(&'static str),
}

/// Per-connection figures the choker and status read.
pub struct ConnEntry {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub peer_id: PeerId,
    pub addr: SocketAddr,
    /// The peer's stable name for the choker's random draws (see [`peer_key`]).
    pub key: u64,
    pub connected_at: Instant,
    pub interested: bool,
    pub choked: bool,
    pub is_seed: bool,
    /// The peer has unchoked us (it lets us request).
    pub unchokes_us: bool,
    /// Our per-connection upload cap in bytes/s, as last sent to the connection.
    pub cap: Option<u32>,
    pub down: Measure,
    pub up: Measure,
    /// The pieces the peer has announced (for the choker's view of who can serve what).
    pub has: Bitfield,
}

struct Block {
    done: bool,
    requesters: Vec<ConnId>,
    from: Option<PeerId>,
}

struct Partial {
    buf: PieceBuf,
    blocks: Vec<Block>,
    received: u32,
}

impl Partial {
    fn new(len: u32) -> Self {
        let n = len.div_ceil(BLOCK_SIZE);
        Partial {
            buf: PieceBuf::zeroed(len as usize),
            blocks: (0..n)
                .map(|_| Block {
                    done: false,
                    requesters: Vec::new(),
                    from: None,
                })
                .collect(),
            received: 0,
        }
    }
    /// Store block `b`; returns the connections also asked for it (to be cancelled).
    fn fill(&mut self, b: usize, data: &[u8], from: Option<PeerId>) -> Vec<ConnId> {
        let begin = b * BLOCK_SIZE as usize;
        self.buf[begin..begin + data.len()].copy_from_slice(data);
        let block = &mut self.blocks[b];
        block.done = true;
        block.from = from;
        self.received += 1;
        std::mem::take(&mut block.requesters)
    }
    fn is_full(&self) -> bool {
        self.received as usize == self.blocks.len()
    }
    fn has_free(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| !b.done && b.requesters.is_empty())
    }
}

/// Rate caps of a session, shared by all its connections.
pub struct Caps {
    pub up: Option<Limiter>,
    pub down: Option<Limiter>,
}

/// Limits and knobs of a session.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Hash failures a peer may cause before it is banned.
    pub ban_after: u32,
    /// Most block requests queued from one peer; more are dropped (or rejected).
    pub max_queued_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 60,
            ban_after: 3,
            max_queued_requests: 512,
        }
    }
}

pub(crate) struct State {
    pub have: Bitfield,
    status: Vec<PieceStatus>,
    availability: Vec<u16>,
    partials: BTreeMap<u32, Partial>,
    picker: Box<dyn PiecePicker>,
    pub conns: HashMap<ConnId, ConnEntry>,
    strikes: HashMap<PeerId, u32>,
    pub banned: HashSet<PeerId>,
    pub connecting: HashSet<SocketAddr>,
    /// Connections registered so far from each address (for [`peer_key`]).
    arrivals: HashMap<std::net::IpAddr, usize>,
    /// The playback clock of a VoD client: its start and its model.
    pub playback: Option<(Instant, Playback)>,
}

impl State {
    /// The playback model read at this instant (`now` = seconds since playback started).
    fn playback_now(&self) -> Option<Playback> {
        self.playback.map(|(start, p)| Playback {
            now: start.elapsed().as_secs_f64(),
            ..p
        })
    }
}

/// One torrent being shared: storage, state, caps, and the channels that report progress.
pub struct Session {
    pub torrent: Arc<Torrent>,
    pub peer_id: PeerId,
    pub storage: Storage,
    pub(crate) state: Mutex<State>,
    pub up_limit: Option<Limiter>,
    pub down_limit: Option<Limiter>,
    pub limits: Limits,
    pub uploaded: AtomicU64,
    pub downloaded: AtomicU64,
    /// Bytes received that were discarded (duplicates, hash failures).
    pub wasted: AtomicU64,
    pub hash_failures: AtomicU64,
    pub listen_port: AtomicU16,
    /// The address this peer listens on, dials from and announces from, when it was given one
    /// (a world client's own address); `None`: any.
    pub local_ip: std::sync::OnceLock<std::net::IpAddr>,
    /// The referee's record of what we give peers that are not world clients.
    pub referee: std::sync::OnceLock<super::referee::Log>,
    next_conn: AtomicU64,
    /// Every verified piece, as it happens.
    pub pieces_tx: broadcast::Sender<u32>,
    /// True once every piece is held.
    pub complete: watch::Sender<bool>,
    /// Poked when a connection comes or goes or an unchoked peer's interest changes, so the
    /// choker need not wait for its round.
    pub rechoke: Notify,
    /// Poked when a choked peer turns interested (for a choker that fills free slots at once).
    pub choked_interested: Notify,
    /// Notified each time a piece's check ends (see [`Session::until_checked`]).
    checked: Notify,
}

/// What became of a received block.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Stored; the piece still has blocks to come.
    Stored,
    /// Not wanted (duplicate, unknown piece, bad offset): counted as waste.
    Unwanted,
    /// The block completed its piece, now being hashed and written apart.
    Checking(u32),
    /// The block completed its piece, which verified.
    PieceVerified(u32),
    /// The block completed its piece, which failed its hash: the piece starts over.
    PieceFailed(u32),
}

impl Session {
    pub fn new(
        torrent: Arc<Torrent>,
        peer_id: PeerId,
        storage: Storage,
        have: Bitfield,
        picker: Box<dyn PiecePicker>,
        caps: Caps,
        limits: Limits,
    ) -> Session {
        let n = torrent.num_pieces() as usize;
        let status = (0..n as u32)
            .map(|i| {
                if have.get(i) {
                    PieceStatus::Have
                } else {
                    PieceStatus::Missing
                }
            })
            .collect();
        let complete = have.is_complete();
        Session {
            torrent,
            peer_id,
            storage,
            state: Mutex::new(State {
                have,
                status,
                availability: vec![0; n],
                partials: BTreeMap::new(),
                picker,
                conns: HashMap::new(),
                strikes: HashMap::new(),
                banned: HashSet::new(),
                connecting: HashSet::new(),
                arrivals: HashMap::new(),
                playback: None,
            }),
            up_limit: caps.up,
            down_limit: caps.down,
            limits,
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
            hash_failures: AtomicU64::new(0),
            listen_port: AtomicU16::new(0),
            local_ip: std::sync::OnceLock::new(),
            referee: std::sync::OnceLock::new(),
            next_conn: AtomicU64::new(1),
            pieces_tx: broadcast::channel(1024).0,
            complete: watch::channel(complete).0,
            rechoke: Notify::new(),
            choked_interested: Notify::new(),
            checked: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    pub fn have(&self) -> Bitfield {
        self.lock().have.clone()
    }

    pub fn is_complete(&self) -> bool {
        *self.complete.borrow()
    }

    /// Bytes still missing (the tracker's `left`).
    pub fn left(&self) -> u64 {
        let st = self.lock();
        st.have
            .iter_ones()
            .fold(self.torrent.total_length, |left, i| {
                left - self.torrent.piece_len(i) as u64
            })
    }

    /// Make the session a VoD client: `p.now` is ignored, time runs from `start`.
    pub fn set_playback(&self, start: Instant, p: Playback) {
        self.lock().playback = Some((start, p));
    }

    /// Register a connection after its handshake. `None`: refused (banned, duplicate, full).
    pub fn register(
        &self,
        peer_id: PeerId,
        addr: SocketAddr,
        tx: mpsc::UnboundedSender<Cmd>,
    ) -> Result<ConnId, &'static str> {
        let mut st = self.lock();
        if peer_id == self.peer_id {
            return Err("connected to ourselves");
        }
        if st.banned.contains(&peer_id) {
            return Err("peer is banned");
        }
        if st.conns.values().any(|c| c.peer_id == peer_id) {
            return Err("already connected to this peer id");
        }
        if st.conns.len() >= self.limits.max_connections {
            return Err("connection limit reached");
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let before = st.arrivals.entry(addr.ip()).or_default();
        let key = peer_key(addr.ip(), *before);
        *before += 1;
        st.conns.insert(
            id,
            ConnEntry {
                tx,
                peer_id,
                addr,
                key,
                connected_at: Instant::now(),
                interested: false,
                choked: true,
                is_seed: false,
                unchokes_us: false,
                cap: None,
                down: Measure::new(std::time::Duration::from_secs(20)),
                up: Measure::new(std::time::Duration::from_secs(20)),
                has: Bitfield::new(self.torrent.num_pieces()),
            },
        );
        drop(st);
        tracing::debug!(conn = id, %addr, "registered");
        // BitTornado rechokes when a connection is made: a newcomer may get a slot at once.
        self.rechoke.notify_one();
        Ok(id)
    }

    /// A connection ended: forget its pieces and give back the blocks it was asked for.
    pub fn unregister(&self, id: ConnId, peer_has: &Bitfield) {
        let mut st = self.lock();
        let was_unchoked = st.conns.remove(&id).is_some_and(|c| !c.choked);
        drop(st);
        if was_unchoked {
            self.rechoke.notify_one();
        }
        self.peer_lost(peer_has.iter_ones());
        release_all(&mut self.lock(), id);
    }

    /// The peer announced pieces (bitfield, have-all, or one have).
    pub fn peer_has(&self, id: ConnId, pieces: impl Iterator<Item = u32>, is_seed: bool) {
        let mut st = self.lock();
        let st = &mut *st;
        let mut conn = st.conns.get_mut(&id);
        for i in pieces {
            if let Some(a) = st.availability.get_mut(i as usize) {
                *a = a.saturating_add(1);
            }
            if let Some(c) = conn.as_mut() {
                c.has.set(i);
            }
        }
        if let Some(c) = conn {
            c.is_seed = is_seed;
        }
    }

    /// Pieces a peer no longer counts for (its bitfield was replaced).
    pub fn peer_lost(&self, pieces: impl Iterator<Item = u32>) {
        let mut st = self.lock();
        for i in pieces {
            if let Some(a) = st.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// The peer turned interested or not. As in BitTornado, an unchoked peer's change moves
    /// the slots at once; a choked one waits for the next round, unless the choker fills free
    /// slots at once ([`Session::choked_interested`]).
    pub fn set_interested(&self, id: ConnId, interested: bool) {
        let choked = match self.lock().conns.get_mut(&id) {
            Some(c) if c.interested != interested => {
                c.interested = interested;
                Some(c.choked)
            }
            _ => None,
        };
        match choked {
            Some(false) => self.rechoke.notify_one(),
            Some(true) if interested => self.choked_interested.notify_one(),
            _ => {}
        }
    }

    pub fn note_upload(&self, id: ConnId, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.up.update(bytes);
        }
    }

    /// Choose up to `want` blocks to request from connection `id`, whose peer has `peer`.
    /// Blocks already outstanding at this peer (`outstanding`) are not asked again.
    pub fn pick_blocks(
        &self,
        id: ConnId,
        peer: &Bitfield,
        outstanding: &HashSet<BlockRef>,
        down_rate: f64,
        max: usize,
    ) -> Vec<BlockRef> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let want = st
            .picker
            .backlog(down_rate)
            .min(max)
            .saturating_sub(outstanding.len());
        let mut out = Vec::new();
        while out.len() < want {
            let partial_list: Vec<u32> = st.partials.keys().copied().collect();
            let view = PickView {
                status: &st.status,
                availability: &st.availability,
                partials: &partial_list,
                playback: st.playback_now(),
            };
            let pv = PeerView {
                has: peer,
                rate: down_rate,
                outstanding: outstanding.len() + out.len(),
            };
            let Some(i) = st.picker.next(&view, &pv) else {
                break;
            };
            let slack = view.playback.map(|p| p.slack(i));
            if !view.requestable(i, peer) {
                tracing::error!(
                    piece = i,
                    policy = st.picker.name(),
                    "picker chose a piece it may not request"
                );
                break;
            }
            let len = self.torrent.piece_len(i);
            let partial = st.partials.entry(i).or_insert_with(|| Partial::new(len));
            claim_free_blocks(partial, i, len, id, want, &mut out);
            st.status[i as usize] = if partial.has_free() {
                PieceStatus::Partial
            } else {
                PieceStatus::Requested
            };
            tracing::debug!(
                conn = id,
                piece = i,
                rate = down_rate as u64,
                queued = pv.outstanding,
                slack,
                "picked"
            );
        }
        // Rescue: the policy may want blocks that another peer is slow with asked of this one.
        if out.len() < want {
            let view = PickView {
                status: &st.status,
                availability: &st.availability,
                partials: &[],
                playback: st.playback_now(),
            };
            let pv = PeerView {
                has: peer,
                rate: down_rate,
                outstanding: outstanding.len() + out.len(),
            };
            let rescue = st.picker.rescue(&view, &pv);
            self.ask_again(
                st,
                id,
                rescue.into_iter(),
                peer,
                outstanding,
                want,
                &mut out,
            );
        }
        // Endgame: nothing left that nobody was asked for; ask this peer too for blocks that
        // are outstanding elsewhere.
        let endgame = out.is_empty()
            && !st
                .status
                .iter()
                .any(|s| matches!(s, PieceStatus::Missing | PieceStatus::Partial));
        if endgame {
            let all: Vec<u32> = st.partials.keys().copied().collect();
            self.ask_again(st, id, all.into_iter(), peer, outstanding, want, &mut out);
        }
        out
    }

    /// Add to `out` (up to `want`) the blocks of `pieces` still missing that connection `id` has
    /// not asked for and at most one other connection has.
    #[allow(clippy::too_many_arguments)]
    fn ask_again(
        &self,
        st: &mut State,
        id: ConnId,
        pieces: impl Iterator<Item = u32>,
        peer: &Bitfield,
        outstanding: &HashSet<BlockRef>,
        want: usize,
        out: &mut Vec<BlockRef>,
    ) {
        for i in pieces {
            let Some(partial) = st.partials.get_mut(&i) else {
                continue;
            };
            if !peer.get(i) {
                continue;
            }
            let len = self.torrent.piece_len(i);
            for (b, block) in partial.blocks.iter_mut().enumerate() {
                if out.len() >= want {
                    return;
                }
                let begin = b as u32 * BLOCK_SIZE;
                let r = BlockRef {
                    index: i,
                    begin,
                    length: BLOCK_SIZE.min(len - begin),
                };
                if block.done
                    || block.requesters.contains(&id)
                    || block.requesters.len() >= 2
                    || outstanding.contains(&r)
                    || out.contains(&r)
                {
                    continue;
                }
                block.requesters.push(id);
                out.push(r);
            }
        }
    }

    /// Give back blocks this connection will not deliver (choked, rejected, timed out).
    pub fn release(&self, id: ConnId, blocks: impl Iterator<Item = BlockRef>) {
        let mut st = self.lock();
        let mut freed = false;
        for b in blocks {
            freed |= release_block(&mut st, id, b);
        }
        if freed {
            poke_others(&st, id);
        }
    }

    /// A block arrived from connection `id`. The block that completes a large piece hands it
    /// to tokio's blocking pool to be hashed and written ([`BlockOutcome::Checking`]), so that
    /// the connection goes on reading meanwhile. A small piece (at most [`CHECK_IN_PLACE`]),
    /// and any piece outside a runtime, is done on the spot.
    pub fn on_block(
        self: &Arc<Self>,
        id: ConnId,
        from: PeerId,
        index: u32,
        begin: u32,
        data: &[u8],
    ) -> BlockOutcome {
        let finished = {
            let mut st = self.lock();
            let len = data.len() as u64;
            let Some(partial) = st.partials.get_mut(&index) else {
                self.wasted.fetch_add(len, Ordering::Relaxed);
                return BlockOutcome::Unwanted;
            };
            let b = (begin / BLOCK_SIZE) as usize;
            let expected =
                BLOCK_SIZE.min(partial.buf.len() as u32 - begin.min(partial.buf.len() as u32));
            if !begin.is_multiple_of(BLOCK_SIZE)
                || b >= partial.blocks.len()
                || data.len() as u32 != expected
                || partial.blocks[b].done
            {
                self.wasted.fetch_add(len, Ordering::Relaxed);
                return BlockOutcome::Unwanted;
            }
            let others = partial.fill(b, data, Some(from));
            let done = partial.is_full();
            cancel_at(&st, index, begin, data.len() as u32, others, id);
            if let Some(c) = st.conns.get_mut(&id) {
                c.down.update(len);
            }
            self.downloaded.fetch_add(len, Ordering::Relaxed);
            if !done {
                return BlockOutcome::Stored;
            }
            // Out of the map while we hash and write, so nobody requests it meanwhile.
            st.status[index as usize] = PieceStatus::Checking;
            st.partials.remove(&index).expect("present")
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if finished.buf.len() > CHECK_IN_PLACE => {
                let me = self.clone();
                rt.spawn_blocking(move || me.finish_piece(index, finished));
                BlockOutcome::Checking(index)
            }
            _ => self.finish_piece(index, finished),
        }
    }

    fn finish_piece(&self, index: u32, p: Partial) -> BlockOutcome {
        let outcome = self.check_and_write(index, p);
        self.checked.notify_waiters();
        outcome
    }

    fn check_and_write(&self, index: u32, p: Partial) -> BlockOutcome {
        let ok = Sha1::digest(&*p.buf).as_slice() == self.torrent.pieces[index as usize].0;
        let written = ok
            && match self.storage.write(self.torrent.piece_offset(index), &p.buf) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(piece = index, "write failed: {e}");
                    false
                }
            };
        let mut st = self.lock();
        if written {
            self.mark_have(&mut st, index);
            return BlockOutcome::PieceVerified(index);
        }
        st.status[index as usize] = PieceStatus::Missing;
        if ok {
            // Disk trouble, not the peers' fault.
            return BlockOutcome::PieceFailed(index);
        }
        self.hash_failures.fetch_add(1, Ordering::Relaxed);
        self.wasted.fetch_add(p.buf.len() as u64, Ordering::Relaxed);
        let senders: HashSet<PeerId> = p.blocks.iter().filter_map(|b| b.from).collect();
        for peer in senders {
            let strikes = st.strikes.entry(peer).or_insert(0);
            *strikes += 1;
            let strikes = *strikes;
            tracing::warn!(piece = index, peer = %crate::util::hex(&peer), strikes, "piece failed its hash check");
            if strikes >= self.limits.ban_after && st.banned.insert(peer) {
                tracing::warn!(peer = %crate::util::hex(&peer), "banned after {strikes} bad pieces");
                for c in st.conns.values().filter(|c| c.peer_id == peer) {
                    let _ = c.tx.send(Cmd::Close("banned: sent corrupt data"));
                }
            }
        }
        poke_others(&st, 0);
        BlockOutcome::PieceFailed(index)
    }

    fn mark_have(&self, st: &mut State, index: u32) {
        if !st.have.set(index) {
            return;
        }
        st.status[index as usize] = PieceStatus::Have;
        for c in st.conns.values() {
            let _ = c.tx.send(Cmd::Have(index));
        }
        let _ = self.pieces_tx.send(index);
        if st.have.is_complete() {
            self.complete.send_replace(true);
        }
    }

    /// Whether piece `index` has all its blocks and is being hashed and written right now (on
    /// the blocking pool): held in a moment, or missing again if it fails its check.
    pub fn checking(&self, index: u32) -> bool {
        let st = self.lock();
        index < self.torrent.num_pieces() && st.status[index as usize] == PieceStatus::Checking
    }

    /// Wait until piece `index` is not [`checking`](Self::checking) (held, or missing again).
    /// Woken by each check that ends, never by polling.
    pub async fn until_checked(&self, index: u32) {
        loop {
            let ended = self.checked.notified();
            tokio::pin!(ended);
            // Registered before the test, so a check that ends in between still wakes us.
            ended.as_mut().enable();
            if !self.checking(index) {
                return;
            }
            ended.await;
        }
    }

    /// The byte ranges `(begin, length)` of piece `index` not received yet, adjacent blocks
    /// merged: what the VoD server must send to complete it. Empty when the piece is held.
    pub fn missing_ranges(&self, index: u32) -> Vec<(u32, u32)> {
        let st = self.lock();
        if index >= self.torrent.num_pieces() || st.have.get(index) {
            return Vec::new();
        }
        let len = self.torrent.piece_len(index);
        let Some(partial) = st.partials.get(&index) else {
            return vec![(0, len)];
        };
        let mut out: Vec<(u32, u32)> = Vec::new();
        for (b, _) in partial.blocks.iter().enumerate().filter(|(_, b)| !b.done) {
            let begin = b as u32 * BLOCK_SIZE;
            let n = BLOCK_SIZE.min(len - begin);
            match out.last_mut() {
                Some((s, l)) if *s + *l == begin => *l += n,
                _ => out.push((begin, n)),
            }
        }
        out
    }

    /// Complete piece `index` with bytes obtained elsewhere (the VoD server): `data` starts at
    /// byte `begin` of the piece and covers whole blocks. Blocks a peer delivered meanwhile are
    /// kept and requests still out for the others are cancelled; once every block is there the
    /// piece is verified like any other (a failure counts against the peers that sent blocks).
    /// `Ok(true)`: the piece is held now (or already was).
    pub fn insert_blocks(&self, index: u32, ranges: &[(u32, &[u8])]) -> anyhow::Result<bool> {
        if index >= self.torrent.num_pieces() {
            anyhow::bail!("piece {index}: no such piece");
        }
        let len = self.torrent.piece_len(index);
        for &(begin, data) in ranges {
            let end = begin as u64 + data.len() as u64;
            if !begin.is_multiple_of(BLOCK_SIZE)
                || end > len as u64
                || (!(end as u32).is_multiple_of(BLOCK_SIZE) && end != len as u64)
            {
                anyhow::bail!("piece {index}: bytes {begin}..{end} are not whole blocks");
            }
        }
        let finished = {
            let mut guard = self.lock();
            let st = &mut *guard;
            if st.have.get(index) {
                return Ok(true);
            }
            let partial = st
                .partials
                .entry(index)
                .or_insert_with(|| Partial::new(len));
            let mut cancels = Vec::new();
            for &(begin, data) in ranges {
                for (k, chunk) in data.chunks(BLOCK_SIZE as usize).enumerate() {
                    let b = (begin / BLOCK_SIZE) as usize + k;
                    if !partial.blocks[b].done {
                        let others = partial.fill(b, chunk, None);
                        cancels.push((b as u32 * BLOCK_SIZE, chunk.len() as u32, others));
                    }
                }
            }
            let full = partial.is_full();
            for (begin, n, others) in cancels {
                cancel_at(st, index, begin, n, others, 0);
            }
            if !full {
                return Ok(false);
            }
            st.status[index as usize] = PieceStatus::Checking;
            st.partials.remove(&index).expect("present")
        };
        Ok(matches!(
            self.finish_piece(index, finished),
            BlockOutcome::PieceVerified(_)
        ))
    }

    /// Candidates for the choker. For a VoD client, each also says how many of the pieces we
    /// still need in the next [`Playback::WINDOW`] seconds of playback it has.
    pub fn choke_candidates(&self) -> Vec<ChokeCandidate> {
        let mut st = self.lock();
        let st = &mut *st;
        let window: Vec<u32> = match st.playback_now() {
            Some(pb) => pb
                .window(self.torrent.num_pieces())
                .filter(|&i| !st.have.get(i))
                .collect(),
            None => Vec::new(),
        };
        let mut candidates: Vec<ChokeCandidate> = st
            .conns
            .iter_mut()
            .map(|(&id, c)| ChokeCandidate {
                id,
                key: c.key,
                interested: c.interested,
                choked: c.choked,
                download_rate: c.down.rate(),
                upload_rate: c.up.rate(),
                is_seed: c.is_seed,
                unchokes_us: c.unchokes_us,
                connected_for: c.connected_at.elapsed(),
                window_pieces: window.iter().filter(|&&i| c.has.get(i)).count() as u32,
            })
            .collect();
        // By key, not in the hash map's order (a new draw in every process): a choker's ties
        // and seeded draws over the list then make the same choices in every rerun.
        candidates.sort_by_key(|c| c.key);
        candidates
    }

    /// Apply the choker's decision: unchoke `unchoke`, each with its own upload cap if the
    /// choker gives one, and choke every other connection.
    pub fn apply_choke(&self, unchoke: &[(ConnId, Option<u32>)]) {
        let mut st = self.lock();
        for (id, c) in st.conns.iter_mut() {
            let cap = unchoke.iter().find(|(u, _)| u == id).map(|&(_, cap)| cap);
            let choke = cap.is_none();
            if choke != c.choked {
                c.choked = choke;
                let _ = c.tx.send(if choke { Cmd::Choke } else { Cmd::Unchoke });
            }
            let cap = cap.flatten();
            if !choke && cap != c.cap {
                c.cap = cap;
                let _ = c.tx.send(Cmd::Cap(cap));
            }
        }
    }

    /// The peer choked us (`true`) or unchoked us.
    pub fn set_peer_choking(&self, id: ConnId, choking: bool) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.unchokes_us = !choking;
        }
    }

    pub fn have_piece(&self, i: u32) -> bool {
        self.lock().have.get(i)
    }

    /// Whether a peer with `peer` has something we lack.
    pub fn lacks_any_of(&self, peer: &Bitfield) -> bool {
        self.lock().have.lacks_any_of(peer)
    }

    /// Bytes/s connection `id` sends us.
    pub fn down_rate(&self, id: ConnId) -> f64 {
        self.lock()
            .conns
            .get_mut(&id)
            .map_or(0.0, |c| c.down.rate())
    }

    /// Bytes/s connection `id` sends us and we send it.
    pub fn rates(&self, id: ConnId) -> (f64, f64) {
        self.lock()
            .conns
            .get_mut(&id)
            .map_or((0.0, 0.0), |c| (c.down.rate(), c.up.rate()))
    }

    pub fn num_conns(&self) -> usize {
        self.lock().conns.len()
    }
}

/// A connection's stable name for the choker's random draws: the peer's IP address, and how
/// many connections from that address came before (the k-th connection from an address gets
/// draw k, so reconnecting still draws afresh, as in BitTornado). Not the connection's id,
/// which counts arrivals from every address and so changes with timing, nor the peer id,
/// which many clients draw afresh each run: in a seeded world where each peer has an address
/// of its own (the lab's namespace), the same peer lands at the same place in a world client's
/// order in every rerun, and every entrant of a compare meets the same luck on the same seed.
pub fn peer_key(ip: std::net::IpAddr, before: usize) -> u64 {
    let bits = match ip {
        std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a),
    };
    (bits as u64) ^ ((bits >> 64) as u64) ^ ((before as u64) << 48)
}

/// Cancel a block at the connections in `others` (but `except`): it arrived from elsewhere.
fn cancel_at(st: &State, index: u32, begin: u32, length: u32, others: Vec<ConnId>, except: ConnId) {
    let cancel = BlockRef {
        index,
        begin,
        length,
    };
    for c in others.into_iter().filter(|&c| c != except) {
        if let Some(conn) = st.conns.get(&c) {
            let _ = conn.tx.send(Cmd::Cancel(cancel));
        }
    }
}

fn release_block(st: &mut State, id: ConnId, b: BlockRef) -> bool {
    let Some(partial) = st.partials.get_mut(&b.index) else {
        return false;
    };
    let Some(block) = partial.blocks.get_mut((b.begin / BLOCK_SIZE) as usize) else {
        return false;
    };
    block.requesters.retain(|&c| c != id);
    if !block.done && block.requesters.is_empty() {
        if st.status[b.index as usize] == PieceStatus::Requested {
            st.status[b.index as usize] = PieceStatus::Partial;
        }
        return true;
    }
    false
}

fn release_all(st: &mut State, id: ConnId) {
    let mut freed = false;
    let State {
        partials, status, ..
    } = st;
    for (&i, partial) in partials.iter_mut() {
        for block in partial.blocks.iter_mut() {
            let before = block.requesters.len();
            block.requesters.retain(|&c| c != id);
            if before != block.requesters.len() && !block.done && block.requesters.is_empty() {
                freed = true;
                if status[i as usize] == PieceStatus::Requested {
                    status[i as usize] = PieceStatus::Partial;
                }
            }
        }
    }
    if freed {
        poke_others(st, id);
    }
}

/// Blocks came free: let the other connections ask for them.
fn poke_others(st: &State, except: ConnId) {
    for (&c, conn) in &st.conns {
        if c != except {
            let _ = conn.tx.send(Cmd::Fill);
        }
    }
}

/// Claims for connection `id` the blocks of piece `index` (of `len` bytes) that nobody was
/// asked for, until `out` has `want`.
fn claim_free_blocks(
    partial: &mut Partial,
    index: u32,
    len: u32,
    id: ConnId,
    want: usize,
    out: &mut Vec<BlockRef>,
) {
    for (b, block) in partial.blocks.iter_mut().enumerate() {
        if out.len() >= want {
            break;
        }
        if block.done || !block.requesters.is_empty() {
            continue;
        }
        block.requesters.push(id);
        let begin = b as u32 * BLOCK_SIZE;
        out.push(BlockRef {
            index,
            begin,
            length: BLOCK_SIZE.min(len - begin),
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metainfo::make_torrent;

    /// Pieces of 32 KiB (two blocks) but the last, 14,464 bytes (one block).
    fn session(dir: &std::path::Path) -> (Session, Vec<u8>) {
        session_with(
            dir,
            Caps {
                up: None,
                down: None,
            },
        )
    }

    /// [`session`] with rate caps.
    pub(crate) fn session_with(dir: &std::path::Path, caps: Caps) -> (Session, Vec<u8>) {
        session_of(dir, caps, 32768)
    }

    /// A session of 80 000 bytes in pieces of `piece_length`.
    fn session_of(dir: &std::path::Path, caps: Caps, piece_length: u32) -> (Session, Vec<u8>) {
        let src = dir.join("src.bin");
        let data: Vec<u8> = (0..80_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let t =
            Torrent::from_bytes(&make_torrent(&src, "http://x/a", piece_length).unwrap()).unwrap();
        let (storage, have) = Storage::open(&t, &dir.join("out.bin"), true).unwrap();
        let picker = crate::policy::Policy::Rarest.picker(1);
        let s = Session::new(
            Arc::new(t),
            [1; 20],
            storage,
            have,
            picker,
            caps,
            Limits::default(),
        );
        (s, data)
    }

    #[test]
    fn server_bytes_fill_only_missing_blocks_and_a_bad_mix_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (s, data) = session(dir.path());
        assert_eq!(s.missing_ranges(0), vec![(0, 32768)]);
        assert_eq!(s.missing_ranges(2), vec![(0, 14464)]);
        // One block of piece 1 from elsewhere: the other is what is left.
        assert!(!s.insert_blocks(1, &[(0, &data[32768..49152])]).unwrap());
        assert_eq!(s.missing_ranges(1), vec![(16384, 16384)]);
        // A wrong second block: the piece fails its check and starts over, nothing held.
        let bad = vec![0u8; 16384];
        assert!(!s.insert_blocks(1, &[(16384, &bad)]).unwrap());
        assert!(!s.have_piece(1));
        assert_eq!(s.missing_ranges(1), vec![(0, 32768)]);
        assert!(s.insert_blocks(1, &[(0, &data[32768..65536])]).unwrap());
        assert!(s.have_piece(1) && s.missing_ranges(1).is_empty());
        // Not whole blocks, or past the piece: refused.
        assert!(s.insert_blocks(0, &[(100, &data[100..16484])]).is_err());
        assert!(s
            .insert_blocks(2, &[(0, &data[65536..80000]), (16384, &[0])])
            .is_err());
        assert!(s.insert_blocks(9, &[]).is_err());
    }

    /// The choker's name for a connection follows the peer's address and how many connections
    /// came from it before, not the order of arrivals from everywhere.
    #[test]
    fn a_connection_is_named_by_its_address_and_its_turn_there() {
        let keys = |order: &[(&str, u8)]| {
            let dir = tempfile::tempdir().unwrap();
            let (s, _) = session(dir.path());
            let mut by_peer = std::collections::BTreeMap::new();
            for &(addr, id) in order {
                let (tx, _rx) = mpsc::unbounded_channel();
                let c = s.register([id; 20], addr.parse().unwrap(), tx).unwrap();
                by_peer.insert(id, s.lock().conns[&c].key);
                s.unregister(c, &Bitfield::new(3));
            }
            by_peer
        };
        let one = keys(&[
            ("10.77.1.2:6881", 11),
            ("10.77.0.2:5000", 12),
            ("10.77.0.2:5001", 13),
        ]);
        let two = keys(&[
            ("10.77.0.2:6000", 12),
            ("10.77.0.2:6001", 13),
            ("10.77.1.2:7000", 11),
        ]);
        assert_eq!(one, two, "same addresses, same turns: same names");
        assert_ne!(
            one[&12], one[&13],
            "a reconnection from an address draws afresh"
        );
        assert_ne!(one[&11], one[&12]);
    }

    #[test]
    fn a_block_from_the_server_cancels_the_request_at_the_peer() {
        let dir = tempfile::tempdir().unwrap();
        let (s, data) = session(dir.path());
        let s = Arc::new(s);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = s
            .register([2; 20], "127.0.0.1:1".parse().unwrap(), tx)
            .unwrap();
        let asked = s.pick_blocks(id, &Bitfield::full(3), &HashSet::new(), 1e6, 100);
        assert!(asked.iter().any(|b| b.index == 2), "{asked:?}");
        assert_eq!(s.missing_ranges(2), vec![(0, 14464)], "asked is not held");
        assert!(s.insert_blocks(2, &[(0, &data[65536..])]).unwrap());
        let mut cancelled = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            if let Cmd::Cancel(b) = cmd {
                cancelled.push((b.index, b.begin, b.length));
            }
        }
        assert_eq!(cancelled, vec![(2, 0, 14464)]);
        // The peer's late block is not wanted any more.
        let late = s.on_block(id, [2; 20], 2, 0, &data[65536..]);
        assert_eq!(late, BlockOutcome::Unwanted);
    }

    /// The choker's per-peer caps reach the connection with its unchoke, once per change, and
    /// the peer's own choke and unchoke reach the choker's view.
    #[test]
    fn an_unchoke_carries_its_cap_once_and_the_peer_s_choke_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = session(dir.path());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = s
            .register([2; 20], "127.0.0.1:1".parse().unwrap(), tx)
            .unwrap();
        let mut sent = || {
            let mut v = Vec::new();
            while let Ok(cmd) = rx.try_recv() {
                v.push(format!("{cmd:?}"));
            }
            v
        };
        s.apply_choke(&[(id, Some(8000))]);
        assert_eq!(sent(), ["Unchoke", "Cap(Some(8000))"]);
        s.apply_choke(&[(id, Some(8000))]);
        assert!(sent().is_empty(), "nothing changed, nothing sent");
        s.apply_choke(&[(id, Some(9600))]);
        assert_eq!(sent(), ["Cap(Some(9600))"]);
        s.apply_choke(&[]);
        assert_eq!(sent(), ["Choke"]);
        assert!(!s.choke_candidates()[0].unchokes_us);
        s.set_peer_choking(id, false);
        assert!(s.choke_candidates()[0].unchokes_us);
    }

    #[test]
    fn choke_candidates_come_in_the_order_of_their_keys() {
        // The same eight peers registered in two orders: the choker sees one list.
        let keys = |order: &[u8]| {
            let dir = tempfile::tempdir().unwrap();
            let (s, _) = session(dir.path());
            for &i in order {
                let (tx, _rx) = mpsc::unbounded_channel();
                let addr = SocketAddr::from(([10, 77, 1, i], 6881));
                s.register([i + 100; 20], addr, tx).unwrap();
            }
            let c: Vec<u64> = s.choke_candidates().iter().map(|c| c.key).collect();
            c
        };
        let a = keys(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(a.is_sorted(), "{a:?}");
        assert_eq!(a, keys(&[8, 3, 5, 1, 7, 2, 6, 4]));
    }

    /// A session with one peer connected, and what the session sends that peer.
    fn one_peer() -> (
        tempfile::TempDir,
        Arc<Session>,
        ConnId,
        mpsc::UnboundedReceiver<Cmd>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = session(dir.path());
        let s = Arc::new(s);
        let (tx, rx) = mpsc::unbounded_channel();
        let id = s
            .register([2; 20], "127.0.0.1:1".parse().unwrap(), tx)
            .unwrap();
        (dir, s, id, rx)
    }

    /// How long from now until the peer is sent an unchoke, if within `limit`.
    async fn unchoked_within(
        rx: &mut mpsc::UnboundedReceiver<Cmd>,
        limit: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let start = tokio::time::Instant::now();
        let seen = tokio::time::timeout(limit, async {
            while let Some(cmd) = rx.recv().await {
                if matches!(cmd, Cmd::Unchoke) {
                    return true;
                }
            }
            false
        })
        .await;
        (seen == Ok(true)).then(|| start.elapsed())
    }

    /// A choker that fills free slots at once unchokes a peer as soon as it turns interested;
    /// BitTornado's would leave it to the next 5 s round (its first-round rechoke unchokes the
    /// not-yet-interested peer ahead of time instead).
    #[tokio::test(start_paused = true)]
    async fn a_peer_turning_interested_gets_a_free_slot_at_once() {
        let (_dir, s, id, mut rx) = one_peer();
        let choker = crate::policy::Policy::Deadline.choker(None, 1);
        assert!(choker.fills_free_slots_at_once());
        let zero = std::time::Duration::ZERO;
        let looping = tokio::spawn(crate::peer::choke_loop(s.clone(), choker, zero));
        // Time is paused: it moves only when every task waits, so after this the loop has
        // made its first rechokes and waits for its next round. Not interested, the peer was
        // kept choked.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(s.lock().conns[&id].choked);
        s.set_interested(id, true);
        // Well before the next round (4 s from now).
        let unchoked = unchoked_within(&mut rx, std::time::Duration::from_secs(2)).await;
        looping.abort();
        assert!(unchoked.is_some(), "not unchoked within 2 s");
    }

    /// Peers that one `have` of ours turns interested together get the same slots whatever
    /// order their messages come in: the window choker gathers them before it chooses (issue
    /// 17: filled on the first message, the slots went to whoever came first, new in every
    /// rerun).
    #[tokio::test(start_paused = true)]
    async fn peers_turning_interested_together_get_the_same_slots_in_any_order() {
        let mut chosen = Vec::new();
        for turn in 0..6 {
            let dir = tempfile::tempdir().unwrap();
            let s = Arc::new(session(dir.path()).0);
            let mut peers = Vec::new();
            for i in 0..6u8 {
                let (tx, rx) = mpsc::unbounded_channel();
                let addr = std::net::SocketAddr::from(([10, 0, 0, 1 + i], 6881));
                let id = s.register([10 + i; 20], addr, tx).unwrap();
                peers.push((i, id, rx));
            }
            let choker = crate::policy::Policy::Deadline.choker(None, 7);
            let zero = std::time::Duration::ZERO;
            let looping = tokio::spawn(crate::peer::choke_loop(s.clone(), choker, zero));
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            // One at a time, the loop free to run between them, in a new order each turn.
            peers.rotate_left(turn);
            if turn % 2 == 1 {
                peers.reverse();
            }
            for (_, id, _) in &peers {
                s.set_interested(*id, true);
                tokio::task::yield_now().await;
            }
            // Within the round (the next is 4 s away).
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            looping.abort();
            let mut unchoked: Vec<u8> = {
                let st = s.lock();
                peers
                    .iter()
                    .filter(|(_, id, _)| !st.conns[id].choked)
                    .map(|(i, _, _)| *i)
                    .collect()
            };
            unchoked.sort();
            chosen.push(unchoked);
        }
        assert_eq!(chosen[0].len(), 3, "three slots: {chosen:?}");
        assert!(chosen.iter().all(|c| *c == chosen[0]), "{chosen:?}");
    }

    /// A world client born with the rest of its world keeps everyone choked until its first
    /// rechoke, then chooses among all who came (whom a seed serves first was
    /// whoever connected first).
    #[tokio::test(start_paused = true)]
    async fn nobody_is_unchoked_before_the_first_rechoke() {
        let (_dir, s, id, mut rx) = one_peer();
        s.set_interested(id, true);
        let choker = crate::policy::Policy::Rarest.choker(Some(4), 1);
        let first = std::time::Duration::from_secs(1);
        let looping = tokio::spawn(crate::peer::choke_loop(s.clone(), choker, first));
        let at = unchoked_within(&mut rx, std::time::Duration::from_secs(3)).await;
        looping.abort();
        let at = at.expect("unchoked within 3 s");
        assert!(
            at >= first,
            "unchoked after {at:?}, before the first rechoke"
        );
    }

    /// The block that completes a small piece has it hashed, written and held at once; a
    /// piece over [`CHECK_IN_PLACE`] is checked apart, neither held nor to fetch meanwhile, and
    /// held once the check ends.
    #[test]
    fn small_pieces_are_checked_in_place_large_ones_apart() {
        for (piece_length, apart) in [(32768u32, false), (131072, true)] {
            let dir = tempfile::tempdir().unwrap();
            let caps = Caps {
                up: None,
                down: None,
            };
            let (s, data) = session_of(dir.path(), caps, piece_length);
            let s = Arc::new(s);
            let first_piece = (piece_length as usize).min(data.len());
            crate::util::rt::runtime(1).unwrap().block_on(async {
                let mut held = s.pieces_tx.subscribe();
                let (tx, _rx) = mpsc::unbounded_channel();
                let id = s
                    .register([2; 20], "127.0.0.1:1".parse().unwrap(), tx)
                    .unwrap();
                let mut asked: Vec<BlockRef> = s
                    .pick_blocks(id, &Bitfield::full(3), &HashSet::new(), 1e6, 100)
                    .into_iter()
                    .filter(|b| b.index == 0)
                    .collect();
                asked.sort_by_key(|b| b.begin);
                let (last, rest) = asked.split_last().unwrap();
                let block = |b: &BlockRef| &data[b.begin as usize..(b.begin + b.length) as usize];
                for b in rest {
                    assert_eq!(
                        s.on_block(id, [2; 20], 0, b.begin, block(b)),
                        BlockOutcome::Stored
                    );
                }
                let outcome = s.on_block(id, [2; 20], 0, last.begin, block(last));
                if apart {
                    assert_eq!(outcome, BlockOutcome::Checking(0), "{piece_length}");
                    assert!(s.checking(0) || s.have_piece(0));
                    tokio::time::timeout(std::time::Duration::from_secs(10), s.until_checked(0))
                        .await
                        .expect("the check ends within 10 s");
                } else {
                    assert_eq!(outcome, BlockOutcome::PieceVerified(0), "{piece_length}");
                }
                assert!(!s.checking(0) && s.have_piece(0));
                let got =
                    tokio::time::timeout(std::time::Duration::from_secs(10), held.recv()).await;
                assert_eq!(got.expect("verified within 10 s").unwrap(), 0);
            });
            let mut on_disk = vec![0u8; first_piece];
            s.storage.read(0, &mut on_disk).unwrap();
            assert!(on_disk == data[..first_piece], "{piece_length}");
        }
    }
}
