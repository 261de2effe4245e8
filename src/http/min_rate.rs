//! A floor on how slowly a request body may arrive. A client that trickles bytes (or stops
//! sending without closing) would otherwise hold its connection, a request task and, for
//! uploads, an upload session's lock for as long as it likes.
//!
//! [`MinRate::wrap`] checks each window of time: a body that delivered fewer than `min_bytes`
//! in one ends with an error, and its [`Tripwire`] (in the request's extensions) says why, so a
//! handler can tell "too slow" from "the client went away" and keep what arrived.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use super::ReqBody;

/// At least `min_bytes` in every `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub min_bytes: u64,
    pub window: Duration,
}

/// Set once a body was cut off for being too slow.
#[derive(Debug, Clone)]
pub struct Tripwire {
    tripped: Arc<AtomicBool>,
    rate: MinRate,
}

impl Tripwire {
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    pub fn rate(&self) -> MinRate {
        self.rate
    }

    fn trip(&self) {
        self.tripped.store(true, Ordering::SeqCst);
    }
}

impl MinRate {
    /// `None` when either number is 0 (no floor).
    pub fn new(min_bytes: u64, window: Duration) -> Option<Self> {
        (min_bytes > 0 && !window.is_zero()).then_some(MinRate { min_bytes, window })
    }

    /// `body`, cut off with an error once it is slower than this rate.
    pub fn wrap(self, body: ReqBody) -> (ReqBody, Tripwire) {
        let tripwire = Tripwire {
            tripped: Arc::default(),
            rate: self,
        };
        let limited = Limited {
            inner: body,
            rate: self,
            window_end: Box::pin(tokio::time::sleep(self.window)),
            in_window: 0,
            tripwire: tripwire.clone(),
            cut: false,
        };
        (limited.boxed_unsync(), tripwire)
    }

    /// What the client is told, with `done` describing what the server kept.
    pub fn message(&self, done: &str) -> String {
        format!(
            "the request body arrived slower than {} bytes per {} s (min_body_bytes_per_window, \
             body_rate_window_secs) and was cut off; {done}",
            self.min_bytes,
            self.window.as_secs()
        )
    }
}

struct Limited {
    inner: ReqBody,
    rate: MinRate,
    window_end: Pin<Box<Sleep>>,
    in_window: u64,
    tripwire: Tripwire,
    cut: bool,
}

impl Limited {
    /// At the end of a window: `true` if it was too slow, else a new window starts.
    fn window_over(&mut self, now: Instant) -> bool {
        if self.in_window < self.rate.min_bytes {
            return true;
        }
        self.in_window = 0;
        self.window_end.as_mut().reset(now + self.rate.window);
        false
    }

    fn cut_off(&mut self) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.cut = true;
        self.tripwire.trip();
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            self.rate.message("the request was not completed"),
        ))))
    }
}

impl Body for Limited {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.cut {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.in_window += data.len() as u64;
                }
                let now = Instant::now();
                // A window that ended while the consumer was busy elsewhere is judged by
                // what had arrived, this frame included.
                if now >= this.window_end.deadline() && !this.window_over(now) {
                    // Too slow, but this frame arrived: deliver it, cut off at the next poll.
                    this.cut = true;
                    this.tripwire.trip();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                while this.window_end.as_mut().poll(cx).is_ready() {
                    if this.window_over(Instant::now()) {
                        return this.cut_off();
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A body delivering `chunks`, each after its delay.
    fn trickle(chunks: Vec<(Duration, &'static [u8])>) -> ReqBody {
        let s = futures_util::stream::iter(chunks).then(|(delay, bytes)| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(bytes)))
        });
        http_body_util::StreamBody::new(s).boxed_unsync()
    }

    async fn drain(body: ReqBody) -> (Vec<u8>, Option<std::io::Error>) {
        let mut stream = body.into_data_stream();
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => got.extend_from_slice(&c),
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes_a_trickle_is_cut_off() {
        let rate = MinRate::new(4, Duration::from_secs(10)).unwrap();
        let s = Duration::from_secs(1);
        let steady = trickle(vec![(s, b"abcd"); 5]);
        let (body, trip) = rate.wrap(steady);
        let (got, err) = drain(body).await;
        assert_eq!(
            (got.len(), err.is_none(), trip.tripped()),
            (20, true, false)
        );

        let slow = trickle(vec![(Duration::from_secs(4), b"a"); 10]);
        let (body, trip) = rate.wrap(slow);
        let (got, err) = drain(body).await;
        assert_eq!(got, b"aa");
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::TimedOut);
        assert!(trip.tripped());

        // A stall after a good start is caught too, also when nothing arrives at all.
        let stalled = trickle(vec![(s, b"abcdef"), (Duration::from_secs(3600), b"x")]);
        let (body, trip) = rate.wrap(stalled);
        let (got, err) = drain(body).await;
        assert_eq!((got.len(), err.is_some(), trip.tripped()), (6, true, true));
        assert_eq!(MinRate::new(0, s), None);
    }
}
