//! Connections spread over single-threaded runtimes, one per worker thread.
//!
//! A relayed query wakes the proxy twice (the client's command, the backend's answer) and
//! hops between two sockets. On a multi-threaded runtime each wake could land on either
//! worker and unpark the other one (a futex wake and often an IPI per event); here a
//! connection's task and both its sockets stay on one thread for their whole life, that
//! thread's runtime polls only its own sockets, and no task ever moves. Worker 0 is the
//! runtime the server itself runs on (accept loop, admin endpoint, size checks); the others
//! are threads started here. A new connection goes to the worker with the fewest open ones.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The worker runtimes.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    /// `None` for worker 0, the calling runtime: its connections run in place.
    handle: Option<Handle>,
    open: Arc<AtomicUsize>,
    /// Dropping it ends the worker thread (and cancels what still runs on it).
    _stop: Option<oneshot::Sender<()>>,
}

impl Workers {
    /// `threads` workers (at least one): the current runtime and `threads - 1` new threads.
    /// Must be called inside a tokio runtime.
    pub fn start(threads: usize) -> io::Result<Workers> {
        let mut workers = vec![Worker {
            handle: None,
            open: Arc::default(),
            _stop: None,
        }];
        for i in 1..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("query-proxy-{i}"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                })?;
            workers.push(Worker {
                handle: Some(handle),
                open: Arc::default(),
                _stop: Some(stop),
            });
        }
        Ok(Workers { workers })
    }

    /// Runs `conn(stream)` to its end on the least busy worker, inside the caller's tracing
    /// span. If the returned future is dropped (the accept loop's drain timeout aborting it),
    /// the connection's task is aborted too.
    pub async fn run<F, Fut>(&self, stream: TcpStream, conn: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
            .unwrap_or(&self.workers[0]);
        worker.open.fetch_add(1, Ordering::Relaxed);
        let _open = OpenGuard(&worker.open);
        let Some(handle) = &worker.handle else {
            conn(stream).await;
            return;
        };
        // The socket moves to the worker's reactor: deregistered here, registered there.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand the connection to a worker");
                return;
            }
        };
        let span = tracing::Span::current();
        let task = handle.spawn(
            async move {
                match TcpStream::from_std(std_stream) {
                    Ok(stream) => conn(stream).await,
                    Err(e) => tracing::debug!(error = %e, "cannot register the connection"),
                }
            }
            .instrument(span),
        );
        if let Err(e) = AbortOnDrop(task).wait().await {
            if e.is_panic() {
                // Re-raised where the accept loop, which logs connection tasks' panics, sees it.
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// Counts a worker's open connection while alive.
struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A task handle that aborts its task when dropped before the task ended.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    async fn wait(&mut self) -> Result<(), tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair: (the accepted side, the client side).
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        (accepted.unwrap().0, client.unwrap())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_spread_over_workers_and_run_there() {
        let workers = Arc::new(Workers::start(3).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (accepted, client) = pair(&listener).await;
            clients.push(client);
            let w = workers.clone();
            tasks.push(tokio::spawn(async move {
                w.run(accepted, |mut s| async move {
                    let name = std::thread::current().name().unwrap_or("").to_owned();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await.unwrap();
                    s.write_all(name.as_bytes()).await.unwrap();
                })
                .await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let open: Vec<usize> = workers
            .workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect();
        assert_eq!(open, vec![1, 1, 1], "one connection per worker");
        let mut names = Vec::new();
        for c in &mut clients {
            c.write_all(b"x").await.unwrap();
            let mut name = String::new();
            c.read_to_string(&mut name).await.unwrap();
            names.push(name);
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Worker 0 is the test's own thread.
        assert!(names.iter().any(|n| n == "query-proxy-1"), "{names:?}");
        assert!(names.iter().any(|n| n == "query-proxy-2"), "{names:?}");
        assert!(workers
            .workers
            .iter()
            .all(|w| w.open.load(Ordering::Relaxed) == 0));
    }

    /// A connection that holds its socket open forever.
    async fn hold(s: TcpStream) {
        let _s = s;
        std::future::pending::<()>().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_caller_aborts_the_connection() {
        let workers = Arc::new(Workers::start(2).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Worker 0 takes the first connection, worker 1 the second.
        let (a0, _c0) = pair(&listener).await;
        let (a1, mut c1) = pair(&listener).await;
        let w = workers.clone();
        let _first = tokio::spawn(async move {
            w.run(a0, hold).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let w = workers.clone();
        let second = tokio::spawn(async move {
            w.run(a1, hold).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(workers.workers[1].open.load(Ordering::Relaxed), 1);
        let mut b = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(100), c1.read(&mut b)).await;
        assert!(early.is_err(), "the connection is open until aborted");
        second.abort();
        // The worker's task is aborted with it, which closes the socket.
        let n = tokio::time::timeout(Duration::from_secs(5), c1.read(&mut b))
            .await
            .expect("the connection was closed")
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(workers.workers[1].open.load(Ordering::Relaxed), 0);
    }
}
