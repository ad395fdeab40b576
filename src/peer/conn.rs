//! One peer connection: the handshake, then a reader that decodes messages and acts on them,
//! and a writer that batches outgoing messages and serves blocks under the upload cap.
//!
//! Under the fast extension (BEP 6, when both sides announce it) every request the peer makes
//! gets exactly one answer: its piece, or a reject when we choke, cannot serve it, or it is
//! cancelled while still queued.
//!
//! Every connection ends with one log line saying why (peer closed, protocol error, timeout,
//! banned...), so that an interop failure can be read from both sides' logs.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use super::rate::Limiter;
use super::referee;
use super::session::{BlockOutcome, Cmd, ConnId, PeerId, Session};
use crate::util::Locked;
use crate::wire::{Bitfield, BlockRef, Decoder, Handshake, Message, MAX_REQUEST_LEN};

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Duration,
    /// Close when nothing at all has arrived for this long (peers send keep-alives every 2 min).
    pub idle: Duration,
    /// Give back our requests when a peer that owes us blocks sends nothing for this long.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(180),
            request: Duration::from_secs(30),
        }
    }
}

/// State shared by a connection's reader and writer.
struct Shared {
    /// Requests the peer made that we will serve, in order.
    uploads: Mutex<VecDeque<BlockRef>>,
    upload_ready: Notify,
    uploaded: AtomicU64,
    /// This connection's own upload cap, when the choker gives it one (under the session's).
    cap: Mutex<Option<Arc<Limiter>>>,
    /// Set when the peer is not a world client and the session keeps a referee record: its
    /// peer id (hex) and address.
    foreign: Option<(String, SocketAddr)>,
}

impl Shared {
    /// Nothing asked yet; `foreign` as in [`Shared::foreign`].
    fn new(foreign: Option<(String, SocketAddr)>) -> Arc<Shared> {
        Arc::new(Shared {
            uploads: Mutex::new(VecDeque::new()),
            upload_ready: Notify::new(),
            uploaded: AtomicU64::new(0),
            cap: Mutex::new(None),
            foreign,
        })
    }

    /// The referee's tap on this connection, if it has one.
    fn tap<'a>(&'a self, session: &'a Session) -> Option<referee::Tap<'a>> {
        let (peer, addr) = self.foreign.as_ref()?;
        Some(referee::Tap {
            log: session.referee.get()?,
            peer: peer.clone(),
            addr: *addr,
        })
    }
}

/// Why a connection ended.
type Reason = String;

/// Batches of messages (everything one pass of the connection loop produced: haves, rejects,
/// chokes...) waiting for the writer. When the peer does not read, the writer stalls, this
/// queue fills, and the connection stops reading the peer's requests (so a peer that never
/// reads cannot make us queue a Reject per request it sends); after the idle timeout it is
/// closed. The session's commands to a connection (`Cmd`) stay unbounded: one per session
/// event (a piece verified, a choke round, a cancel), drained by this loop between writes.
const WRITE_QUEUE: usize = 32;

/// Run a connection to its end. `outgoing`: we dialled, so we speak first.
pub async fn run(
    session: Arc<Session>,
    stream: TcpStream,
    addr: SocketAddr,
    outgoing: bool,
    timeouts: Timeouts,
) {
    let _ = stream.set_nodelay(true);
    let mut peer_id_hex = String::from("?");
    let reason = match handshake(&session, stream, outgoing, timeouts).await {
        Ok((stream, peer, inbuf)) => {
            peer_id_hex = crate::util::hex(&peer.peer_id);
            let (tx, rx) = mpsc::unbounded_channel();
            match session.register(peer.peer_id, addr, tx) {
                Ok(id) => {
                    tracing::info!(%addr, peer = %peer_id_hex, outgoing, "connected");
                    let mut conn = Conn::new(
                        session.clone(),
                        id,
                        peer.peer_id,
                        addr,
                        peer.supports_fast(),
                    );
                    conn.record(referee::Event::Connect);
                    let r = conn.run(stream, inbuf, rx, timeouts).await;
                    session.unregister(id, &conn.peer_has);
                    r
                }
                Err(why) => why.to_string(),
            }
        }
        Err(e) => e,
    };
    tracing::info!(%addr, peer = %peer_id_hex, "disconnected: {reason}");
}

async fn handshake(
    session: &Session,
    mut stream: TcpStream,
    outgoing: bool,
    t: Timeouts,
) -> Result<(TcpStream, Handshake, BytesMut), Reason> {
    let ours = Handshake::new(session.torrent.info_hash.0, session.peer_id);
    let mut out = BytesMut::with_capacity(68);
    ours.encode(&mut out);
    let work = async {
        if outgoing {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let mut buf = BytesMut::with_capacity(1024);
        let theirs = loop {
            match Handshake::parse(&mut buf).map_err(|e| e.to_string())? {
                Some(h) => break h,
                None => {
                    if stream
                        .read_buf(&mut buf)
                        .await
                        .map_err(|e| format!("read: {e}"))?
                        == 0
                    {
                        return Err("closed during handshake".to_string());
                    }
                }
            }
        };
        if theirs.info_hash != ours.info_hash {
            return Err(format!(
                "wrong info hash {}",
                crate::util::hex(&theirs.info_hash)
            ));
        }
        if !outgoing {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        Ok((theirs, buf))
    };
    match tokio::time::timeout(t.handshake, work).await {
        Ok(Ok((h, buf))) => Ok((stream, h, buf)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("handshake timed out".into()),
    }
}

struct Conn {
    session: Arc<Session>,
    id: ConnId,
    peer_id: PeerId,
    fast: bool,
    peer_has: Bitfield,
    am_interested: bool,
    peer_choking: bool,
    am_choking: bool,
    outstanding: HashSet<BlockRef>,
    last_block: Instant,
    out: BytesMut,
    shared: Arc<Shared>,
}

impl Conn {
    fn new(
        session: Arc<Session>,
        id: ConnId,
        peer_id: PeerId,
        addr: SocketAddr,
        fast: bool,
    ) -> Self {
        let n = session.torrent.num_pieces();
        let foreign = (session.referee.get().is_some() && !referee::is_world_id(&peer_id))
            .then(|| (crate::util::hex(&peer_id), addr));
        Conn {
            session,
            id,
            peer_id,
            fast,
            peer_has: Bitfield::new(n),
            am_interested: false,
            peer_choking: true,
            am_choking: true,
            outstanding: HashSet::new(),
            last_block: Instant::now(),
            out: BytesMut::with_capacity(4096),
            shared: Shared::new(foreign),
        }
    }

    fn send(&mut self, m: Message) {
        m.encode(&mut self.out);
    }

    async fn run(
        &mut self,
        stream: TcpStream,
        mut inbuf: BytesMut,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        t: Timeouts,
    ) -> Reason {
        let (mut rd, wr) = stream.into_split();
        let (ctl_tx, ctl_rx) = mpsc::channel::<BytesMut>(WRITE_QUEUE);
        let writer = tokio::spawn(writer(
            self.session.clone(),
            self.id,
            wr,
            ctl_rx,
            self.shared.clone(),
        ));

        self.send_our_pieces();

        let decoder = Decoder::for_pieces(self.session.torrent.num_pieces());
        // A VoD client's deadlines move with time, so it re-picks four times a second; others
        // only need the tick for timeouts (and idle worlds of hundreds of clients stay cheap).
        let period = if self.session.lock().playback.is_some() {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        };
        let mut tick = tokio::time::interval(period);
        let mut last_recv = Instant::now();
        let mut last_sent = Instant::now();
        let reason: Reason = 'conn: loop {
            // Act on every complete message buffered (the handshake may have brought some).
            if let Err(r) = self.handle_buffered(&decoder, &mut inbuf) {
                break 'conn r;
            }
            if !self.out.is_empty() {
                last_sent = Instant::now();
                let buf = self.out.split();
                // A full queue means the peer does not read what we send: stop reading it too
                // (its requests wait in the kernel), and close it if it stays so.
                match tokio::time::timeout(t.idle, ctl_tx.send(buf)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break "connection write failed".into(),
                    Err(_) => break "peer does not read what we send".into(),
                }
            }
            tokio::select! {
                r = rd.read_buf(&mut inbuf) => match r {
                    Ok(0) => break "peer closed the connection".into(),
                    Ok(n) => {
                        last_recv = Instant::now();
                        if let Some(l) = &self.session.down_limit { l.take(n as u32).await; }
                        if inbuf.capacity() - inbuf.len() < 16 * 1024 { inbuf.reserve(256 * 1024); }
                    }
                    Err(e) => break format!("read error: {e}"),
                },
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Close(why)) => break why.to_string(),
                    Some(c) => self.command(c),
                    None => break "session ended".into(),
                },
                _ = tick.tick() => {
                    if let Err(r) = self.on_tick(&t, last_recv, last_sent) {
                        break r;
                    }
                }
            }
        };
        // Send what is pending (e.g. a last have), then stop the writer.
        if !self.out.is_empty() {
            let _ = ctl_tx.try_send(self.out.split());
        }
        drop(ctl_tx);
        let mut writer = writer;
        if tokio::time::timeout(Duration::from_millis(200), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        reason
    }

    /// Our pieces, first on the connection: have-all or have-none where the fast extension
    /// allows, else a bitfield (none for no piece).
    fn send_our_pieces(&mut self) {
        let have = self.session.have();
        if self.fast && have.is_complete() {
            self.send(Message::HaveAll);
        } else if self.fast && have.count() == 0 {
            self.send(Message::HaveNone);
        } else if have.count() > 0 {
            self.send(Message::Bitfield(have.as_bytes().to_vec().into()));
        }
    }

    /// Acts on every complete message in `inbuf`. `Err`: close the connection for that reason.
    fn handle_buffered(&mut self, decoder: &Decoder, inbuf: &mut BytesMut) -> Result<(), Reason> {
        while let Some(m) = decoder
            .decode(inbuf)
            .map_err(|e| format!("protocol error: {e}"))?
        {
            self.handle(m)?;
        }
        Ok(())
    }

    /// The connection's clock: timeouts, a snubbing peer, keep-alives, and a new pick (time
    /// moves deadlines). `Err`: close the connection for that reason.
    fn on_tick(
        &mut self,
        t: &Timeouts,
        last_recv: Instant,
        last_sent: Instant,
    ) -> Result<(), Reason> {
        let now = Instant::now();
        if now - last_recv > t.idle {
            return Err("idle timeout".into());
        }
        // Two seeds have nothing to give each other: free both slots (as BitTornado and
        // libtorrent do), so that an idle world of seeds costs nothing.
        if self.peer_has.is_complete() && self.session.is_complete() {
            return Err("both seeds".into());
        }
        if !self.outstanding.is_empty() && now - self.last_block > t.request {
            // Snubbed: let other peers have these blocks.
            let blocks: Vec<BlockRef> = self.outstanding.drain().collect();
            self.session.release(self.id, blocks.into_iter());
            self.last_block = now;
        }
        if now - last_sent > Duration::from_secs(90) {
            self.send(Message::KeepAlive);
        }
        // Time moves deadlines: a policy that declined to pick a second ago may pick now,
        // with no message from the peer to prompt it.
        self.fill();
        Ok(())
    }

    /// Act on one message from the peer. `Err`: close the connection for that reason.
    fn handle(&mut self, m: Message) -> Result<(), Reason> {
        let n = self.session.torrent.num_pieces();
        match m {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Extended(_)
            | Message::Suggest(_)
            | Message::AllowedFast(_) => {}
            Message::Choke => {
                tracing::debug!(conn = self.id, "choked by the peer");
                self.peer_choking = true;
                self.session.set_peer_choking(self.id, true);
                // BEP 3: a choke discards our requests. (With BEP 6 the peer rejects each one;
                // giving them back now is the same, and late blocks are still accepted.)
                let blocks: Vec<BlockRef> = self.outstanding.drain().collect();
                self.session.release(self.id, blocks.into_iter());
            }
            Message::Unchoke => {
                tracing::debug!(conn = self.id, "unchoked by the peer");
                self.peer_choking = false;
                self.session.set_peer_choking(self.id, false);
                self.fill();
            }
            Message::Interested | Message::NotInterested => {
                let on = matches!(m, Message::Interested);
                self.record(referee::Event::Interest { on });
                self.session.set_interested(self.id, on);
            }
            Message::Have(i) => {
                if i >= n {
                    return Err(format!("have for piece {i} of {n}"));
                }
                self.record(referee::Event::Have { piece: i });
                if self.peer_has.set(i) {
                    self.session
                        .peer_has(self.id, std::iter::once(i), self.peer_has.is_complete());
                    self.update_interest();
                }
            }
            // BEP 3 wants the bitfield first; real clients send it after an extension handshake
            // or (aria2c) after have-none. Like libtorrent, a later one replaces what we knew.
            Message::Bitfield(b) => {
                let bf = Bitfield::from_wire(&b, n)
                    .ok_or_else(|| format!("bitfield of {} bytes for {n} pieces", b.len()))?;
                self.set_all(bf);
            }
            Message::HaveAll | Message::HaveNone => {
                if !self.fast {
                    return Err("have-all/none without the fast extension".into());
                }
                let all = matches!(m, Message::HaveAll);
                self.set_all(if all {
                    Bitfield::full(n)
                } else {
                    Bitfield::new(n)
                });
            }
            Message::Request(b) => self.on_request(b)?,
            Message::Cancel(b) => self.on_cancel(b),
            Message::Reject(b) => {
                if self.outstanding.remove(&b) {
                    self.session.release(self.id, std::iter::once(b));
                }
            }
            Message::Piece { index, begin, data } => self.on_piece(index, begin, &data),
        }
        Ok(())
    }

    /// A cancel: a request still queued is dropped, and refused. One the writer has already
    /// taken is answered by its piece. Without the reject, a peer that waits for it (as BEP 6
    /// allows) holds the block until its request times out.
    fn on_cancel(&mut self, b: BlockRef) {
        let mut q = self.shared.uploads.locked();
        let queued = q.len();
        q.retain(|q| *q != b);
        let dropped = q.len() < queued;
        drop(q);
        if dropped {
            self.refuse(b);
        }
    }

    /// A block arrived: recorded, stored (and its piece checked when whole), and the next
    /// requests picked.
    fn on_piece(&mut self, index: u32, begin: u32, data: &[u8]) {
        self.record(referee::Event::Got {
            piece: index,
            begin,
            len: data.len() as u32,
        });
        let r = BlockRef {
            index,
            begin,
            length: data.len() as u32,
        };
        self.outstanding.remove(&r);
        self.last_block = Instant::now();
        match self
            .session
            .on_block(self.id, self.peer_id, index, begin, data)
        {
            BlockOutcome::PieceFailed(i) => {
                tracing::debug!(piece = i, "piece failed its hash")
            }
            BlockOutcome::PieceVerified(_)
            | BlockOutcome::Checking(_)
            | BlockOutcome::Stored
            | BlockOutcome::Unwanted => {}
        }
        self.fill();
    }

    fn set_all(&mut self, bf: Bitfield) {
        if let Some(t) = self.shared.tap(&self.session) {
            t.bitfield(&bf);
        }
        self.session
            .peer_has(self.id, bf.iter_ones(), bf.is_complete());
        self.peer_has = bf;
        self.update_interest();
    }

    fn on_request(&mut self, b: BlockRef) -> Result<(), Reason> {
        let t = &self.session.torrent;
        if b.index >= t.num_pieces()
            || b.length == 0
            || b.length > MAX_REQUEST_LEN
            || b.begin as u64 + b.length as u64 > t.piece_len(b.index) as u64
        {
            return Err(format!("bad request {b:?}"));
        }
        self.record(referee::Event::Request {
            piece: b.index,
            begin: b.begin,
            len: b.length,
        });
        let mut q = self.shared.uploads.locked();
        let serve = !self.am_choking
            && q.len() < self.session.limits.max_queued_requests
            && self.session.have_piece(b.index);
        if serve {
            q.push_back(b);
            drop(q);
            self.shared.upload_ready.notify_one();
        } else {
            drop(q);
            self.refuse(b);
        }
        Ok(())
    }

    /// A request of the peer's that we will not serve. Under the fast extension every request
    /// gets exactly one answer (BEP 6), so this one gets a reject; without it, nothing.
    fn refuse(&mut self, b: BlockRef) {
        if self.fast {
            self.send(Message::Reject(b));
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Have(i) => {
                self.send(Message::Have(i));
                if self.am_interested {
                    self.update_interest();
                }
            }
            Cmd::Choke => {
                self.am_choking = true;
                self.record_choke(true);
                let dropped: Vec<BlockRef> = self.shared.uploads.locked().drain(..).collect();
                self.send(Message::Choke);
                for b in dropped {
                    self.refuse(b);
                }
            }
            Cmd::Unchoke => {
                self.am_choking = false;
                self.record_choke(false);
                self.send(Message::Unchoke);
            }
            Cmd::Cancel(b) => {
                if self.outstanding.remove(&b) {
                    self.send(Message::Cancel(b));
                }
            }
            Cmd::Cap(bps) => {
                *self.shared.cap.locked() =
                    bps.and_then(|b| Limiter::kbps(b as f64 / 1024.0).map(Arc::new));
            }
            Cmd::Fill => self.fill(),
            Cmd::Close(_) => {}
        }
    }

    /// Write `event` to the referee's record, if this connection has a tap (a peer that is not
    /// a world client, and a session that keeps a record).
    fn record(&self, event: referee::Event) {
        if let Some(t) = self.shared.tap(&self.session) {
            t.record(event);
        }
    }

    /// For the referee's trace: we choke (or unchoke) a peer that is not a world client.
    fn record_choke(&self, on: bool) {
        if let Some(t) = self.shared.tap(&self.session) {
            let (down, up) = self.session.rates(self.id);
            t.record(referee::Event::Choke {
                on,
                down: down as u64,
                up: up as u64,
            });
        }
    }

    fn update_interest(&mut self) {
        let want = self.session.lacks_any_of(&self.peer_has);
        if want != self.am_interested {
            self.am_interested = want;
            self.send(if want {
                Message::Interested
            } else {
                Message::NotInterested
            });
        }
        if want {
            self.fill();
        }
    }

    /// Keep the request pipeline full.
    fn fill(&mut self) {
        if self.peer_choking || !self.am_interested {
            return;
        }
        let rate = self.session.down_rate(self.id);
        let blocks =
            self.session
                .pick_blocks(self.id, &self.peer_has, &self.outstanding, rate, usize::MAX);
        if !blocks.is_empty() && self.outstanding.is_empty() {
            self.last_block = Instant::now();
        }
        for b in blocks {
            self.outstanding.insert(b);
            self.send(Message::Request(b));
        }
    }
}

/// The writing half: control messages as they come, and blocks the peer asked for, read from
/// storage and paced by the session's upload cap.
async fn writer(
    session: Arc<Session>,
    id: ConnId,
    wr: OwnedWriteHalf,
    ctl: mpsc::Receiver<BytesMut>,
    shared: Arc<Shared>,
) {
    let mut w = Writer {
        session,
        id,
        wr,
        ctl,
        shared,
        buf: BytesMut::with_capacity(512 * 1024),
        open: true,
        sent: Vec::new(),
    };
    // Each step returns `None` once the connection is done with (a write or a read failed, or
    // the control channel closed with nothing left to send).
    while w.step().await.is_some() {}
}

/// Bytes in a batch of blocks written at once when nothing paces the upload.
const MAX_BATCH: usize = 256 * 1024;

/// A connection's writing half: control messages from the connection, then the blocks of its
/// upload queue, each paced by the caps and read from storage.
struct Writer {
    session: Arc<Session>,
    id: ConnId,
    wr: OwnedWriteHalf,
    ctl: mpsc::Receiver<BytesMut>,
    shared: Arc<Shared>,
    buf: BytesMut,
    /// The control channel is open.
    open: bool,
    /// Blocks in `buf` for the referee: recorded once written to the socket, not before.
    sent: Vec<BlockRef>,
}

impl Writer {
    /// Writes what is queued: control messages first (they are small and some, have and
    /// choke, are urgent), then the next block, or waits for either.
    async fn step(&mut self) -> Option<()> {
        while let Ok(m) = self.ctl.try_recv() {
            self.buf.extend_from_slice(&m);
        }
        let next = self.shared.uploads.locked().pop_front();
        match next {
            Some(b) => {
                let cap = self.shared.cap.locked().clone();
                let paced = cap.is_some() || self.session.up_limit.is_some();
                if paced {
                    self.flush().await?;
                    self.pace(cap.as_deref(), b.length + 13).await?;
                }
                self.append(b)?;
                if !paced && self.buf.len() < MAX_BATCH {
                    return Some(());
                }
            }
            None if self.buf.is_empty() => return self.wait().await,
            None => {}
        }
        self.flush().await
    }

    /// Writes `buf` to the socket, then records its blocks.
    async fn flush(&mut self) -> Option<()> {
        if self.buf.is_empty() {
            return Some(());
        }
        self.wr.write_all(&self.buf).await.ok()?;
        self.buf.clear();
        if let Some(t) = self.shared.tap(&self.session) {
            for b in &self.sent {
                t.record(referee::Event::Block {
                    piece: b.index,
                    begin: b.begin,
                    len: b.length,
                });
            }
        }
        self.sent.clear();
        Some(())
    }

    /// Waits for `len` bytes of the caps, letting control messages through meanwhile: they
    /// are not paced (BitTornado writes a choke at once), and a choke or unchoke held behind a
    /// block the cap delays (up to a second with four slots) left the peer asking one that had
    /// choked it, or idle at one that had unchoked it.
    async fn pace(&mut self, cap: Option<&Limiter>, len: u32) -> Option<()> {
        let session = self.session.clone();
        let take = async {
            if let Some(c) = cap {
                c.take(len).await;
            }
            if let Some(l) = &session.up_limit {
                l.take(len).await;
            }
        };
        tokio::pin!(take);
        loop {
            tokio::select! {
                biased;
                () = &mut take => return Some(()),
                m = self.ctl.recv(), if self.open => match m {
                    Some(m) => self.wr.write_all(&m).await.ok()?,
                    None => {
                        self.open = false;
                        self.shared.uploads.locked().clear();
                    }
                },
            }
        }
    }

    /// Appends block `b`, read from storage, to `buf`.
    fn append(&mut self, b: BlockRef) -> Option<()> {
        Message::piece_header(b.index, b.begin, b.length, &mut self.buf);
        let start = self.buf.len();
        self.buf.resize(start + b.length as usize, 0);
        let at = self.session.torrent.piece_offset(b.index) + b.begin as u64;
        if let Err(e) = self.session.storage.read(at, &mut self.buf[start..]) {
            tracing::error!(piece = b.index, "read failed: {e}");
            return None;
        }
        self.shared
            .uploaded
            .fetch_add(b.length as u64, Ordering::Relaxed);
        self.session.note_upload(self.id, b.length as u64);
        if self.shared.foreign.is_some() {
            self.sent.push(b);
        }
        Some(())
    }

    /// Nothing to write: waits for a control message or a block to upload.
    async fn wait(&mut self) -> Option<()> {
        if !self.open {
            return None;
        }
        tokio::select! {
            m = self.ctl.recv() => match m {
                Some(m) => self.buf.extend_from_slice(&m),
                None => {
                    self.open = false;
                    self.shared.uploads.locked().clear();
                }
            },
            _ = self.shared.upload_ready.notified() => {}
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::session::Caps;
    use crate::wire::BLOCK_SIZE;

    /// The next message's payload (its id first).
    async fn next_message(s: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut m = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut m).await.unwrap();
        m
    }

    /// A cancelled request is answered once under the fast extension: a reject while it is
    /// queued, nothing once its piece has gone (the piece was the answer); without the
    /// extension a cancel is never answered.
    #[test]
    fn a_cancel_gets_a_reject_under_the_fast_extension_only_while_queued() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            up: None,
            down: None,
        };
        let (session, data) = crate::peer::session::tests::session_with(dir.path(), caps);
        assert!(session.insert_blocks(0, &[(0, &data[..32768])]).unwrap());
        let session = Arc::new(session);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b = BlockRef {
            index: 0,
            begin: 0,
            length: BLOCK_SIZE,
        };
        let mut reject = BytesMut::new();
        Message::Reject(b).encode(&mut reject);
        for fast in [true, false] {
            let mut conn = Conn::new(session.clone(), 1, [2; 20], addr, fast);
            conn.am_choking = false;
            conn.handle(Message::Request(b)).unwrap();
            assert_eq!(conn.shared.uploads.locked().len(), 1, "served");
            conn.handle(Message::Cancel(b)).unwrap();
            assert!(conn.shared.uploads.locked().is_empty(), "dropped");
            let want = if fast {
                reject.clone()
            } else {
                BytesMut::new()
            };
            assert_eq!(conn.out, want, "fast extension: {fast}");
            // Already sent (no longer queued): no second answer.
            conn.out.clear();
            conn.handle(Message::Cancel(b)).unwrap();
            assert!(conn.out.is_empty(), "fast extension: {fast}");
        }
    }

    /// Two blocks queued at a writer under `session_cap` and, if given, `conn_cap`; a choke sent
    /// once the first block has arrived. The ids of the next two messages the peer reads.
    async fn choke_after_first_block(
        session_cap: Option<crate::peer::rate::Limiter>,
        conn_cap: Option<crate::peer::rate::Limiter>,
    ) -> (u8, u8) {
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            up: session_cap,
            down: None,
        };
        let (session, _) = crate::peer::session::tests::session_with(dir.path(), caps);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        let (_rd, wr) = ours.into_split();
        let shared = Shared::new(None);
        *shared.cap.locked() = conn_cap.map(Arc::new);
        shared.uploads.locked().extend((0..2).map(|b| BlockRef {
            index: 0,
            begin: b * BLOCK_SIZE,
            length: BLOCK_SIZE,
        }));
        let (ctl, ctl_rx) = mpsc::channel(8);
        let writing = tokio::spawn(writer(Arc::new(session), 1, wr, ctl_rx, shared));
        assert_eq!(next_message(&mut peer).await[0], 7, "the first block");
        // One thread: the writer has gone on to wait for a cap, if any, before this runs.
        let mut choke = BytesMut::new();
        Message::Choke.encode(&mut choke);
        ctl.send(choke).await.unwrap();
        let next = next_message(&mut peer).await;
        let last = next_message(&mut peer).await;
        writing.abort();
        (next[0], last[0])
    }

    /// A choke is written at once, even while a block waits for the upload cap: a peer told
    /// late goes on asking (and waiting on) one that has choked it. (16 KB/s with a one-block
    /// bucket: the first block goes at once, the second a second later.)
    #[tokio::test]
    async fn a_choke_is_not_held_behind_a_block_the_cap_delays() {
        let order = choke_after_first_block(crate::peer::rate::Limiter::kbps(16.0), None).await;
        assert_eq!(
            order,
            (0, 7),
            "the choke must come before the block the cap delays"
        );
    }

    /// A connection's own cap (the tyrant choker's price) paces its blocks when the session
    /// has no cap: the second block waits, and the choke overtakes it. Uncapped, both blocks
    /// go in one write.
    #[tokio::test]
    async fn a_connection_s_own_cap_paces_its_blocks() {
        let order = choke_after_first_block(None, crate::peer::rate::Limiter::kbps(16.0)).await;
        assert_eq!(
            order,
            (0, 7),
            "the connection's own cap must hold the second block"
        );
        assert_eq!(
            choke_after_first_block(None, None).await,
            (7, 0),
            "uncapped"
        );
    }
}
