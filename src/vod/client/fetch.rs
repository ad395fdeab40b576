//! Completing a piece from the VoD server at its deadline: wait for a check under way, fetch
//! only the blocks peers have not delivered (HTTP `Range`, retried), book them, insert them;
//! the whole piece again if the mix of peers' and server's blocks fails its check.

use std::sync::Arc;
use std::time::Duration;

use super::book::Book;
use crate::metainfo::Torrent;
use crate::peer::session::Session;

/// Tries per range before a fetch is given up.
const TRIES: u32 = 3;
/// Longest wait for one answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a check under way at the deadline.
const CHECK_WAIT: Duration = Duration::from_secs(2);

/// The VoD server of one torrent, as this client calls it.
#[derive(Clone)]
pub struct VodServer {
    http: reqwest::Client,
    url: String,
    /// The name the server counts our bytes under.
    client: String,
}

impl VodServer {
    pub fn new(url: &str, client: &str) -> anyhow::Result<VodServer> {
        Ok(VodServer {
            http: reqwest::Client::builder().no_proxy().build()?,
            url: url.to_string(),
            client: client.to_string(),
        })
    }

    /// GET `len` bytes at `start` of the torrent's file; a request with no answer or an error
    /// status is tried again, with a short backoff. `counted` is told each time the server
    /// answers with the bytes (it has counted them then, whether or not the body then arrives
    /// whole), so that our report books what the server counts.
    pub async fn get(
        &self,
        start: u64,
        len: u32,
        counted: &(dyn Fn(u64) + Sync),
    ) -> anyhow::Result<Vec<u8>> {
        let end = start + len as u64 - 1;
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let client_q =
            percent_encoding::utf8_percent_encode(&self.client, percent_encoding::NON_ALPHANUMERIC);
        let url = format!("{}{sep}client={client_q}", self.url);
        let mut last = None;
        for attempt in 0..TRIES {
            let r = self
                .http
                .get(&url)
                .header("Range", format!("bytes={start}-{end}"))
                .timeout(TIMEOUT)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().is_success() => {
                    counted(len as u64);
                    let body = resp.bytes().await?;
                    if body.len() != len as usize {
                        anyhow::bail!("asked for {len} bytes at {start}, got {}", body.len());
                    }
                    return Ok(body.to_vec());
                }
                Ok(resp) => last = Some(anyhow::anyhow!("HTTP {}", resp.status())),
                Err(e) => last = Some(e.into()),
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")))
    }

    /// Byte ranges `(begin, length)` of piece `i`, one request each; `counted` as in
    /// [`Self::get`].
    async fn ranges(
        &self,
        t: &Torrent,
        i: u32,
        ranges: &[(u32, u32)],
        counted: &(dyn Fn(u64) + Sync),
    ) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
        let mut out = Vec::with_capacity(ranges.len());
        for &(begin, len) in ranges {
            let data = self
                .get(t.piece_offset(i) + begin as u64, len, counted)
                .await?;
            out.push((begin, data));
        }
        Ok(out)
    }
}

/// Piece `i` is due: complete it from the server unless peers did. Runs as a task of its own,
/// so that a slow fetch never delays a later piece's deadline.
pub async fn complete_late_piece(
    session: Arc<Session>,
    server: VodServer,
    book: Arc<Book>,
    torrent: Arc<Torrent>,
    i: u32,
) {
    // A piece whose last block just came is being checked: its outcome first.
    let _ = tokio::time::timeout(CHECK_WAIT, session.until_checked(i)).await;
    let mut ranges = session.missing_ranges(i);
    let mut whole = false;
    let mut before = 0; // server bytes of an attempt whose mix failed
    let len = torrent.piece_len(i) as u64;
    while !ranges.is_empty() {
        // Booked as the server counts them: before the insert (which announces the piece, and
        // the arrivals must not take it for a peer's), even when a body then fails to arrive.
        let booked = std::sync::atomic::AtomicU64::new(0);
        let counted = |n: u64| {
            booked.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            book.got_from_server(i, n);
        };
        let got = match server.ranges(&torrent, i, &ranges, &counted).await {
            Ok(got) => got,
            Err(e) => {
                tracing::error!(piece = i, "VoD server fetch failed: {e:#}");
                book.server_discarded(before + booked.load(std::sync::atomic::Ordering::Relaxed));
                return;
            }
        };
        let n = booked.load(std::sync::atomic::Ordering::Relaxed);
        let parts: Vec<(u32, &[u8])> = got.iter().map(|(b, d)| (*b, d.as_slice())).collect();
        match session.insert_blocks(i, &parts) {
            Ok(true) => {
                book.server_completed(i, n, len, before);
                return;
            }
            Ok(false) | Err(_) if !whole => {
                // A peer's block failed the check with ours: fetch it all.
                whole = true;
                before = n;
                ranges = vec![(0, torrent.piece_len(i))];
            }
            Ok(false) => {
                tracing::error!(piece = i, "server piece did not verify");
                book.server_discarded(before + n);
                return;
            }
            Err(e) => {
                tracing::error!(piece = i, "server piece rejected: {e:#}");
                book.server_discarded(before + n);
                return;
            }
        }
    }
}
