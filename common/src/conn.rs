//! Serving one accepted connection: a write timeout for clients that stop reading, and running
//! a hyper connection until it ends or the service shuts down (then gracefully: requests in
//! flight finish, nothing new is read).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::shutdown::ShutdownSignal;

/// Drives `conn` (an HTTP/1, HTTP/2 or auto connection of hyper) to its end; on shutdown,
/// asks it to finish gracefully and waits for that.
pub async fn serve_until_shutdown<C>(conn: C, shutdown: &mut ShutdownSignal) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.recv() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// A connection whose writes fail with `TimedOut` once one has waited `timeout` for the peer
/// to take data, so a client that stops reading cannot hold a connection (and what it
/// reserved) forever.
pub struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> SendTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        SendTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After a write returned `Pending`: arms the timer (once) and polls it.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took no data for the send timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write's outcome: progress disarms the timer, waiting arms it.
    fn done<T>(
        &mut self,
        p: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match p {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stall(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.done(p, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.done(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_flush(cx);
        this.done(p, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_the_write_out() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut conn = SendTimeout::new(ours, Duration::from_millis(200));
        // Fills the pipe; the peer reads nothing.
        let err = conn.write_all(&[7u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        // What did go through is intact.
        let mut got = vec![0u8; 1024];
        theirs.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_timed_out() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        // Each wait for the reader (50 ms) is shorter than the timeout, the whole write longer.
        let mut conn = SendTimeout::new(ours, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 64];
            while total < 1024 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                total += theirs.read(&mut buf).await.unwrap();
            }
            total
        });
        conn.write_all(&[1u8; 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 1024);
    }
}
