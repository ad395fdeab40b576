//! The VoD server: HTTP Range requests for the testbed's own files, counted per client.
//!
//! `GET /vod/{info_hash_hex}?client=NAME` (or header `X-Testbed-Client: NAME`) with
//! `Range: bytes=A-B` answers 206 with those bytes of the file in `fresh-files/`. Every byte sent
//! is added to NAME's count: that count is the penalty, kept by the server so the score does not
//! rest on the client's word. Only the torrents the testbed made are served (any other hash is
//! 404); a range outside the file is 416; a request that names no client is 400.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::util::{Locked, PeerAddr};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// What one client was served.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Served {
    pub bytes: u64,
    pub requests: u64,
}

pub struct VodServer {
    /// info hash (hex) -> (file in fresh-files, size).
    files: HashMap<String, (PathBuf, u64)>,
    counts: Mutex<BTreeMap<String, Served>>,
    /// Every range sent, for the referee.
    sent: Mutex<Vec<Sent>>,
    /// Requests that name no client are counted under their source address (a BEP 19 web
    /// seed request names none) instead of being refused.
    by_address: bool,
    /// Where every range sent is also appended, one JSON line each, as it is sent (see
    /// [`VodServer::log_to`]).
    log: Mutex<Option<std::fs::File>>,
}

/// One range the server sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// Unix time, seconds (the clock the world's referee records use).
    pub t: f64,
    pub client: String,
    /// The torrent's info hash, hex.
    pub hash: String,
    pub start: u64,
    pub len: u64,
}

/// Most bytes one request may ask for.
pub const MAX_RANGE: u64 = 16 << 20;

impl VodServer {
    /// A server of `files` (info hash, path, size). `by_address`: it is also a web seed, and a
    /// request naming no client is counted under its source address.
    pub fn new(
        files: impl IntoIterator<Item = (String, PathBuf, u64)>,
        by_address: bool,
    ) -> Arc<VodServer> {
        Arc::new(VodServer {
            files: files.into_iter().map(|(h, p, s)| (h, (p, s))).collect(),
            counts: Mutex::new(BTreeMap::new()),
            sent: Mutex::new(Vec::new()),
            by_address,
            log: Mutex::new(None),
        })
    }

    /// Append every range sent from now on to `path`, one JSON [`Sent`] a line, written before
    /// the bytes go out: a server that is killed (as Shadow ends a simulation) leaves its
    /// count on disk. [`read_log`] reads it back.
    pub fn log_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *self.log.locked() = Some(f);
        Ok(())
    }

    /// Count what another server sent (its [`read_log`]), as if this one had sent it.
    pub fn replay(&self, sent: impl IntoIterator<Item = Sent>) {
        for s in sent {
            self.record(s);
        }
    }

    /// Count a range sent to `client`.
    fn record(&self, sent: Sent) {
        let mut c = self.counts.locked();
        let e = c.entry(sent.client.clone()).or_default();
        e.bytes += sent.len;
        e.requests += 1;
        drop(c);
        if let Some(f) = self.log.locked().as_mut() {
            use std::io::Write;
            let line = serde_json::to_string(&sent).unwrap_or_default() + "\n";
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::error!("the VoD server's log: {e}");
            }
        }
        self.sent.locked().push(sent);
    }

    /// Bytes served so far, per client.
    pub fn served(&self) -> BTreeMap<String, Served> {
        self.counts.locked().clone()
    }

    /// Every range sent of torrent `hash`, in order.
    pub fn sent(&self, hash: &str) -> Vec<Sent> {
        self.sent
            .locked()
            .iter()
            .filter(|s| s.hash == hash)
            .cloned()
            .collect()
    }

    pub fn total_bytes(&self) -> u64 {
        self.served().values().map(|s| s.bytes).sum()
    }
}

/// What a server's log ([`VodServer::log_to`]) says it sent: the count per client and every
/// range, as [`VodServer::served`] and [`VodServer::sent`] would have. A missing log is a
/// server that sent nothing; a line cut short by a kill is left out.
pub fn read_log(path: &std::path::Path) -> (BTreeMap<String, Served>, Vec<Sent>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let sent: Vec<Sent> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut served: BTreeMap<String, Served> = BTreeMap::new();
    for s in &sent {
        let e = served.entry(s.client.clone()).or_default();
        e.bytes += s.len;
        e.requests += 1;
    }
    (served, sent)
}

/// A `Range` header that cannot be served (answered 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRange;

/// Parse a single `bytes=` range against `size`: `Ok(None)` for no header, `Err` for one that
/// cannot be served.
pub fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, BadRange> {
    let Some(h) = h else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(BadRange)?;
    if spec.contains(',') {
        return Err(BadRange); // one range per request
    }
    let (a, b) = spec.split_once('-').ok_or(BadRange)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| BadRange)?;
            if n == 0 {
                return Err(BadRange);
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().map_err(|_| BadRange)?, size.saturating_sub(1)),
        (a, b) => (
            a.parse().map_err(|_| BadRange)?,
            b.parse::<u64>()
                .map_err(|_| BadRange)?
                .min(size.saturating_sub(1)),
        ),
    };
    if size == 0 || start > end || start >= size {
        return Err(BadRange);
    }
    Ok(Some((start, end)))
}

fn client_name(q: &Option<String>, headers: &HeaderMap) -> Option<String> {
    let from_query = q.as_deref().and_then(|q| {
        crate::announce::query::pairs(q)
            .find(|(k, _)| k == b"client")
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
    });
    from_query
        .or_else(|| {
            headers
                .get("x-testbed-client")
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
        .filter(|n| !n.is_empty() && n.len() <= 128)
}

async fn serve(
    State(s): State<Arc<VodServer>>,
    Path(hash): Path<String>,
    RawQuery(q): RawQuery,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    let Some((path, size)) = s.files.get(&hash.to_ascii_lowercase()).cloned() else {
        return (StatusCode::NOT_FOUND, "not a torrent of this testbed\n").into_response();
    };
    // Served by the lab's listener, a request carries its source address.
    let by_address = ext
        .get::<ConnectInfo<PeerAddr>>()
        .filter(|_| s.by_address)
        .map(|ConnectInfo(PeerAddr(a))| a.ip().to_string());
    let Some(client) = client_name(&q, &headers).or(by_address) else {
        return (
            StatusCode::BAD_REQUEST,
            "name your client: ?client=NAME or X-Testbed-Client\n",
        )
            .into_response();
    };
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (start, end) = match range {
        Ok(Some(r)) => r,
        Ok(None) => (0, size - 1),
        Err(BadRange) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                "bad range\n",
            )
                .into_response();
        }
    };
    let len = end - start + 1;
    if len > MAX_RANGE {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            format!("at most {MAX_RANGE} bytes per request\n"),
        )
            .into_response();
    }
    let data = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, start)?;
        std::io::Result::Ok(buf)
    })
    .await;
    let data = match data {
        Ok(Ok(d)) => d,
        _ => return (StatusCode::INTERNAL_SERVER_ERROR, "read failed\n").into_response(),
    };
    s.record(Sent {
        t: crate::util::unix_now(),
        client: client.clone(),
        hash: hash.to_ascii_lowercase(),
        start,
        len,
    });
    tracing::info!(target: "vod", "{client} {hash} bytes {start}-{end} ({len})");
    let status = if range.ok().flatten().is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    (
        status,
        [
            (header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")),
            (header::ACCEPT_RANGES, "bytes".into()),
        ],
        data,
    )
        .into_response()
}

pub fn router(s: Arc<VodServer>) -> axum::Router {
    axum::Router::new()
        .route("/vod/{hash}", axum::routing::get(serve))
        .with_state(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=95-200"), 100), Ok(Some((95, 99))));
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-0",
        ] {
            assert_eq!(parse_range(Some(bad), 100), Err(BadRange), "{bad}");
        }
    }

    /// What the log says is what the server counted, also when its last line was cut.
    #[test]
    fn the_log_reads_back_as_the_count() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("vod.jsonl");
        let s = VodServer::new([("ab".to_string(), d.path().join("f"), 10)], false);
        s.log_to(&log).unwrap();
        for (client, start, len) in [("me", 0, 4), ("other", 2, 3), ("me", 4, 6)] {
            s.record(Sent {
                t: 1.5,
                client: client.into(),
                hash: "ab".into(),
                start,
                len,
            });
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"t\":2.0,\"cli"))
            .unwrap();
        let (served, sent) = read_log(&log);
        assert_eq!(served, s.served());
        assert_eq!(
            served["me"],
            Served {
                bytes: 10,
                requests: 2
            }
        );
        assert_eq!(sent, s.sent("ab"));
        assert_eq!(
            read_log(&d.path().join("none")),
            (BTreeMap::new(), Vec::new())
        );
    }
}
