//! The tracker on the wire: the axum routes (`/announce`, `/scrape`, the status page and its
//! JSON), each request logged in one line, and the listener that serves them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::metainfo::Torrent;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{access, listener, status, swarm, Refusal, Tracker, TrackerConfig};
use crate::announce::query;

fn bencoded(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn announce(
    State(t): State<Arc<Tracker>>,
    ConnectInfo(listener::PeerAddr(from)): ConnectInfo<listener::PeerAddr>,
    RawQuery(q): RawQuery,
) -> Response {
    t.metrics.announces.fetch_add(1, Ordering::Relaxed);
    let q = q.unwrap_or_default();
    let parsed = query::parse_announce(&q);
    let r = match &parsed {
        Ok(a) => t.announce(a, from),
        Err(e) => Err(Refusal::Query(e.clone())),
    };
    let who = parsed.as_ref().ok().map(|a| (&a.peer_id[..], a.event));
    log_request(&t, from, "/announce", &q, who, &r);
    bencoded(r.unwrap_or_else(|e| swarm::failure(&e.to_string())))
}

async fn scrape(
    State(t): State<Arc<Tracker>>,
    ConnectInfo(listener::PeerAddr(from)): ConnectInfo<listener::PeerAddr>,
    RawQuery(q): RawQuery,
) -> Response {
    t.metrics.scrapes.fetch_add(1, Ordering::Relaxed);
    let q = q.unwrap_or_default();
    let r = t.scrape(&q);
    log_request(&t, from, "/scrape", &q, None, &r);
    bencoded(r.unwrap_or_else(|e| swarm::failure(&e.to_string())))
}

/// Counts a failure and writes the access log's line. `who` is the announce's peer id and event
/// when the query parsed; otherwise they are looked for in the raw query.
fn log_request(
    t: &Tracker,
    from: SocketAddr,
    path: &str,
    q: &str,
    who: Option<(&[u8], Option<crate::announce::Event>)>,
    r: &Result<Vec<u8>, Refusal>,
) {
    if r.is_err() {
        t.metrics.failures.fetch_add(1, Ordering::Relaxed);
    }
    if !t.access.is_on() {
        return;
    }
    // Like bttrack's log: who (address and peer id), what, and the answer.
    use std::borrow::Cow;
    let (event, peer): (Cow<str>, Cow<[u8]>) = match who {
        // The usual case: nothing copied.
        Some((id, ev)) => (ev.map_or("", |e| e.as_str()).into(), id.into()),
        None => {
            let (mut event, mut peer) = (Cow::Borrowed(""), Cow::Borrowed(&[][..]));
            for (k, v) in query::pairs(q) {
                match &k[..] {
                    b"event" => event = String::from_utf8_lossy(&v).into_owned().into(),
                    b"peer_id" => peer = v.into(),
                    _ => {}
                }
            }
            (event, peer)
        }
    };
    let peer = crate::util::html::Printable(&peer);
    match r {
        Ok(body) => t.access.line(
            from.ip(),
            &peer,
            path,
            &event,
            &format_args!("200 {}", body.len()),
        ),
        Err(e) => t.access.line(
            from.ip(),
            &peer,
            path,
            &event,
            &format_args!("failure: {e}"),
        ),
    }
}

/// The tracker's routes: `/announce`, `/scrape`, `/`, `/api/status`, `/metrics`.
pub fn router(t: Arc<Tracker>) -> Router {
    api_router(t.clone()).merge(Router::new().route("/", get(status::html)).with_state(t))
}

/// The routes without the page at `/`, for a program that serves its own (the orchestrator).
pub fn api_router(t: Arc<Tracker>) -> Router {
    Router::new()
        .route("/announce", get(announce))
        .route("/scrape", get(scrape))
        .route("/api/status", get(status::json))
        .route("/metrics", get(status::metrics))
        .with_state(t)
}

/// Bind `addr`, with an error that names it.
/// `testbed tracker`: the tracker and its status page alone, on `threads` workers, until
/// SIGINT/SIGTERM. `allowed` non-empty: only these torrents are tracked.
pub fn run_standalone(
    config: TrackerConfig,
    allowed: &[Torrent],
    addr: SocketAddr,
    threads: usize,
) -> anyhow::Result<()> {
    let t = Tracker::new(config)?;
    for a in allowed {
        t.register(a);
    }
    // A multi-thread runtime even with one worker: the accept loop and the connections run on
    // the worker while this thread only waits (measured by `make bench`).
    crate::util::rt::multi_thread(threads)?.block_on(async {
        let listener = bind(addr).await?;
        let local = listener.local_addr()?;
        crate::util::outln!("tracker on http://{local}/announce · status page http://{local}/");
        serve(t.clone(), listener, router(t), async {
            let s = crate::util::rt::shutdown_signal().await;
            tracing::info!("{s}: stopping");
        })
        .await
    })
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    Ok(tokio::net::TcpListener::from_std(bind_std(addr)?)?)
}

/// Bind the tracker's port, before any runtime (one line naming the port if it is taken).
pub fn bind_std(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {} on {} is already in use (another tracker or testbed running?)",
                addr.port(),
                addr.ip()
            )
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {e}")
        }
    })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serve `app` on `listener` until `shutdown` resolves; expires peers meanwhile.
pub async fn serve(
    t: Arc<Tracker>,
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_on(t, listener, None, app, shutdown).await
}

/// [`serve`] on two sockets at once (the host's and the lab namespace's).
pub async fn serve_on(
    t: Arc<Tracker>,
    listener: tokio::net::TcpListener,
    also: Option<tokio::net::TcpListener>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let expiry = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(t.config.interval.max(Duration::from_secs(1)));
            loop {
                tick.tick().await;
                let n = t.expire();
                if n > 0 {
                    tracing::info!(target: "tracker", "expired {n} silent peers");
                }
            }
        })
    };
    let flusher = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(access::FLUSH_EVERY);
            loop {
                tick.tick().await;
                t.access.flush();
            }
        })
    };
    let listener =
        listener::Guarded::new(listener, t.config.max_connections, t.config.idle_timeout)
            .with(also);
    let r = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<listener::PeerAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    expiry.abort();
    flusher.abort();
    // Every request answered is in the log before `serve` returns.
    t.access.flush();
    Ok(r?)
}
