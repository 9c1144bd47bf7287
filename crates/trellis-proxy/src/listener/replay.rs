//! A request body that can be sent more than once (retries) and copied (mirrors) while it
//! streams: frames are recorded as the current attempt reads them, up to a cap. A new attempt
//! replays the recording and then continues with the rest of the downstream body; a mirror copy
//! follows the recording. Past the cap the recording is dropped and neither is possible any more
//! (Envoy abandons retries and shadows the same way when its buffer limit is exceeded).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use crate::upstream::RequestBody;

/// Envoy's default per-request buffer limit for retries and shadows.
pub const REPLAY_LIMIT: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

struct State {
    inner: Option<RequestBody>,
    frames: Vec<Recorded>,
    len: usize,
    done: bool,
    overflow: bool,
    failed: bool,
    attempt: u32,
    waiters: Vec<Waker>,
}

impl State {
    fn wake_all(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }
}

/// The downstream body shared by every attempt and mirror of one request.
#[derive(Clone)]
pub struct ReplayBody {
    state: Arc<Mutex<State>>,
    limit: usize,
}

impl std::fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody").finish_non_exhaustive()
    }
}

impl ReplayBody {
    /// Wraps the downstream body.
    pub fn new(body: RequestBody, limit: usize) -> Self {
        let done = body.is_end_stream();
        ReplayBody {
            state: Arc::new(Mutex::new(State {
                inner: (!done).then_some(body),
                frames: Vec::new(),
                len: 0,
                done,
                overflow: false,
                failed: false,
                attempt: 0,
                waiters: Vec::new(),
            })),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether another attempt (or a mirror) can still get the whole body.
    pub fn replayable(&self) -> bool {
        let s = self.lock();
        !s.overflow && !s.failed
    }

    /// The body for the next attempt; the previous attempt's body stops yielding.
    pub fn attempt(&self) -> RequestBody {
        let attempt = {
            let mut s = self.lock();
            s.attempt += 1;
            s.attempt
        };
        AttemptBody {
            shared: self.clone(),
            attempt,
            cursor: 0,
        }
        .boxed_unsync()
    }

    /// A copy that follows the recording (for a mirror); it fails if the body overflows.
    pub fn mirror(&self) -> RequestBody {
        MirrorBody {
            shared: self.clone(),
            cursor: 0,
        }
        .boxed_unsync()
    }
}

fn frame_of(r: &Recorded) -> Frame<Bytes> {
    match r {
        Recorded::Data(b) => Frame::data(b.clone()),
        Recorded::Trailers(t) => Frame::trailers(t.clone()),
    }
}

struct AttemptBody {
    shared: ReplayBody,
    attempt: u32,
    cursor: usize,
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let limit = self.shared.limit;
        let state = self.shared.state.clone();
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if s.attempt != self.attempt {
            return Poll::Ready(Some(Err("request body superseded by a retry".into())));
        }
        if !s.overflow && self.cursor < s.frames.len() {
            let f = frame_of(&s.frames[self.cursor]);
            self.cursor += 1;
            return Poll::Ready(Some(Ok(f)));
        }
        if s.done {
            return Poll::Ready(None);
        }
        let Some(inner) = s.inner.as_mut() else {
            return Poll::Ready(Some(Err("request body already failed".into())));
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        // The downstream may end with an empty DATA frame carrying END_STREAM: it is then over
        // as soon as that frame is read, so `is_end_stream` can say so and the frame goes out
        // upstream with END_STREAM too (an empty DATA frame without it counts against h2's
        // flood protection, which closes the connection after 100 of them).
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && inner.is_end_stream() {
            s.done = true;
            s.inner = None;
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.done = true;
                s.inner = None;
                s.wake_all();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.failed = true;
                s.inner = None;
                s.wake_all();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if !s.overflow {
                    let recorded = if let Some(d) = frame.data_ref() {
                        s.len += d.len();
                        Recorded::Data(d.clone())
                    } else if let Some(t) = frame.trailers_ref() {
                        Recorded::Trailers(t.clone())
                    } else {
                        Recorded::Data(Bytes::new())
                    };
                    if s.len > limit {
                        s.overflow = true;
                        s.frames = Vec::new();
                        self.cursor = 0;
                    } else {
                        s.frames.push(recorded);
                        self.cursor = s.frames.len();
                    }
                }
                s.wake_all();
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.shared.lock();
        s.attempt == self.attempt && s.done && (s.overflow || self.cursor >= s.frames.len())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

struct MirrorBody {
    shared: ReplayBody,
    cursor: usize,
}

impl Body for MirrorBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let state = self.shared.state.clone();
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if s.overflow || s.failed {
            return Poll::Ready(Some(
                Err("request body not available for the mirror".into()),
            ));
        }
        if self.cursor < s.frames.len() {
            let f = frame_of(&s.frames[self.cursor]);
            self.cursor += 1;
            return Poll::Ready(Some(Ok(f)));
        }
        if s.done {
            return Poll::Ready(None);
        }
        s.waiters.push(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let s = self.shared.lock();
        !s.overflow && !s.failed && s.done && self.cursor >= s.frames.len()
    }
}
