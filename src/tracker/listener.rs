//! The tracker's listener: a bounded number of connections, and no connection held by a client
//! that stops sending.
//!
//! `axum::serve` accepts without limit and waits on a silent connection forever, so a few
//! hundred slow clients (or one script) could hold every file descriptor of the supervisor. Here
//! each accepted connection holds one of `max_connections` permits for its lifetime (when they
//! are all taken, new connections wait in the kernel's backlog), and a connection that sends
//! nothing for `idle` while the server waits to read is closed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

pub struct Guarded {
    inner: TcpListener,
    /// A second socket serving the same routes (the lab's namespace has one beside the
    /// host's: see `lab::netns`).
    also: Option<TcpListener>,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl Guarded {
    pub fn new(inner: TcpListener, max_connections: usize, idle: Duration) -> Self {
        Guarded {
            inner,
            also: None,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            idle,
        }
    }

    /// Accept on `also` too (the permits are shared).
    pub fn with(mut self, also: Option<TcpListener>) -> Self {
        self.also = also;
        self
    }
}

/// The client's address, as handlers see it (`ConnectInfo<PeerAddr>`).
pub use crate::util::PeerAddr;

impl Connected<IncomingStream<'_, Guarded>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, Guarded>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl Listener for Guarded {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedIo, SocketAddr) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            let accepted = match &self.also {
                Some(also) => tokio::select! {
                    r = self.inner.accept() => r,
                    r = also.accept() => r,
                },
                None => self.inner.accept().await,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let io = GuardedIo {
                        stream,
                        _permit: permit,
                        idle: self.idle,
                        deadline: Box::pin(tokio::time::sleep(self.idle)),
                    };
                    return (io, addr);
                }
                Err(e) => {
                    // Out of fds or similar: wait a little rather than spin.
                    tracing::warn!(target: "tracker", "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

pub struct GuardedIo {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
