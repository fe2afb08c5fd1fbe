//! Request bodies on their way to a node: small ones buffered so that a
//! failed attempt can be sent again, larger ones streamed under the body
//! limit. A streamed body is handed to an attempt only when it first
//! polls it, so an attempt that never connected leaves it for the next.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::error::ProxyError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the proxy sends or answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than allowed")]
pub struct TooLarge;

/// The request's body as attempts see it.
pub enum RequestBody {
    Buffered(Bytes),
    Streamed { slot: Arc<Mutex<Option<Metered>>>, hint: SizeHint, too_large: Arc<AtomicBool> },
}

impl RequestBody {
    /// Read a small body whole; wrap a larger or unsized one for streaming.
    /// A declared length over `max` is refused before anything is sent.
    pub async fn read(body: Incoming, max: u64, buffer_up_to: u64) -> Result<Self, ProxyError> {
        if body.is_end_stream() {
            return Ok(Self::Buffered(Bytes::new()));
        }
        match body.size_hint().exact() {
            Some(len) if len > max => Err(ProxyError::PayloadTooLarge),
            Some(len) if len <= buffer_up_to => {
                let bytes = body.collect().await.map_err(|_| ProxyError::ClientBody)?.to_bytes();
                Ok(Self::Buffered(bytes))
            }
            _ => {
                let too_large = Arc::new(AtomicBool::new(false));
                let hint = body.size_hint();
                let metered = Metered { inner: body, seen: 0, limit: max, too_large: too_large.clone() };
                Ok(Self::Streamed { slot: Arc::new(Mutex::new(Some(metered))), hint, too_large })
            }
        }
    }

    /// The body for one more attempt; `None` once a streamed body started
    /// going to a node, since what was sent cannot be sent again.
    pub fn for_attempt(&self) -> Option<ProxyBody> {
        match self {
            Self::Buffered(bytes) => Some(Full::new(bytes.clone()).map_err(|never| match never {}).boxed_unsync()),
            Self::Streamed { slot, hint, .. } => {
                slot.lock().expect("body slot").as_ref()?;
                Some(Deferred { slot: slot.clone(), body: None, hint: *hint }.boxed_unsync())
            }
        }
    }

    /// Whether every attempt can carry the whole body.
    pub fn replayable(&self) -> bool {
        matches!(self, Self::Buffered(_))
    }

    /// The body passed the limit while streaming.
    pub fn too_large(&self) -> bool {
        matches!(self, Self::Streamed { too_large, .. } if too_large.load(Ordering::Relaxed))
    }
}

/// The client's body, counted: past `limit` it ends in an error, which
/// aborts the upstream request, and says so in `too_large`.
pub struct Metered {
    inner: Incoming,
    seen: u64,
    limit: u64,
    too_large: Arc<AtomicBool>,
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        this.seen += frame.data_ref().map_or(0, |d| d.len() as u64);
        if this.seen > this.limit {
            this.too_large.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(TooLarge.into())));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A streamed body taken from its slot at the first poll.
struct Deferred {
    slot: Arc<Mutex<Option<Metered>>>,
    body: Option<Metered>,
    hint: SizeHint,
}

impl Body for Deferred {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.body.is_none() {
            this.body = this.slot.lock().expect("body slot").take();
        }
        match this.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
