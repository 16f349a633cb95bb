//! Bodies: the request body sent to a backend (buffered for a retry, or streamed under the
//! app's size limit) and the response body sent to the client, which counts bytes, returns
//! the backend connection to its pool at the end, and reports the finished request once.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

use crate::backend::{Backend, Sender};

/// Errors of bodies passing through the router.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to a backend.
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// An empty request body.
pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A request body already read into memory (replayable).
pub fn full(data: Bytes) -> ReqBody {
    Full::new(data)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What became of a streamed request body, seen by the proxy after a failed send.
#[derive(Debug, Default)]
pub struct StreamState {
    /// The client sent more than the app's `max_body_bytes`.
    pub too_large: AtomicBool,
    /// Reading from the client failed (it went away or sent a broken body).
    pub client_failed: AtomicBool,
    /// Body bytes read from the client so far.
    pub bytes: AtomicU64,
}

/// Why a streamed request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// More bytes than the limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The client side failed.
    #[error("reading the request body from the client failed: {0}")]
    Client(hyper::Error),
}

/// A client's request body streamed to a backend, cut off past `limit` bytes.
pub struct LimitedBody {
    inner: Incoming,
    limit: u64,
    seen: u64,
    state: Arc<StreamState>,
}

impl LimitedBody {
    /// Streams `inner`, at most `limit` bytes; failures are noted in `state`.
    pub fn new(inner: Incoming, limit: u64, state: Arc<StreamState>) -> LimitedBody {
        LimitedBody {
            inner,
            limit,
            seen: 0,
            state,
        }
    }

    /// As a [`ReqBody`].
    pub fn boxed(self) -> ReqBody {
        self.boxed_unsync()
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    this.state
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    if this.seen > this.limit {
                        this.state.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(StreamError::TooLarge(this.limit).into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.state.client_failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(StreamError::Client(e).into())))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once when a response body is done (read to the end, failed, or dropped), with the
/// body bytes sent.
pub type OnEnd = Box<dyn FnOnce(u64) + Send>;

enum Inner {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// A response on its way to the client: the router's own small answer or a backend's body.
pub struct RespBody {
    inner: Inner,
    bytes: u64,
    ended: bool,
    pooled: Option<(Arc<Backend>, Sender)>,
    on_end: Option<OnEnd>,
}

impl RespBody {
    /// The router's own answer.
    pub fn local(data: impl Into<Bytes>) -> RespBody {
        let data: Bytes = data.into();
        RespBody {
            inner: Inner::Full((!data.is_empty()).then_some(data)),
            bytes: 0,
            ended: false,
            pooled: None,
            on_end: None,
        }
    }

    /// A backend's body; the connection goes back to `backend`'s pool once it was read to
    /// the end.
    pub fn upstream(body: Incoming, backend: Arc<Backend>, sender: Sender) -> RespBody {
        RespBody {
            inner: Inner::Upstream(body),
            bytes: 0,
            ended: false,
            pooled: Some((backend, sender)),
            on_end: None,
        }
    }

    /// Sets what runs when the body is done.
    pub fn on_end(&mut self, f: OnEnd) {
        self.on_end = Some(f);
    }

    fn finish(&mut self) {
        if let Some((backend, sender)) = self.pooled.take() {
            let done = match &self.inner {
                Inner::Upstream(b) => self.ended || b.is_end_stream(),
                Inner::Full(_) => true,
            };
            if done {
                backend.checkin(sender);
            }
        }
        if let Some(f) = self.on_end.take() {
            f(self.bytes);
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let res = match &mut this.inner {
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
        };
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => {
                this.ended = true;
                this.finish();
            }
            Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(d) => d.is_none(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}
