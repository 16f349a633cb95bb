//! End-to-end tests of the accept loop and the admin endpoint over real sockets on
//! 127.0.0.1:0 (one test binary for the crate, to keep link time down).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_common::admin::{self, AdminState, MetricKind, MetricsWriter, METRICS_CONTENT_TYPE};
use berth_common::listener::{serve, ConnCounters, Listener, PeerAddr, ServeOptions};
use berth_common::shutdown::{Shutdown, ShutdownSignal};
use berth_common::tenants::OperatorTokens;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const REJECT: &[u8] = b"ERROR Too many open connections\r\n";
const LONG: Duration = Duration::from_secs(10);

/// Greets, then serves until the client closes or shutdown starts; says "bye" on shutdown.
async fn polite<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    _peer: PeerAddr,
    mut shutdown: ShutdownSignal,
) {
    if stream.write_all(b"hello\n").await.is_err() {
        return;
    }
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            n = stream.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            _ = shutdown.recv() => {
                let _ = stream.write_all(b"bye\n").await;
                return;
            }
        }
    }
}

struct Server {
    addr: String,
    counters: Arc<ConnCounters>,
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

async fn start<H, F>(opts: ServeOptions, handler: H) -> Server
where
    H: Fn(TcpStream, PeerAddr, ShutdownSignal) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr_string();
    let counters = Arc::new(ConnCounters::default());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(
        listener,
        opts,
        counters.clone(),
        shutdown.signal(),
        handler,
    ));
    Server {
        addr,
        counters,
        shutdown,
        task,
    }
}

fn opts(max_connections: usize, reject_message: Option<&'static [u8]>) -> ServeOptions {
    ServeOptions {
        max_connections,
        drain_timeout: Duration::from_secs(5),
        reject_message,
    }
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(LONG, stream.read_line(&mut line))
        .await
        .expect("no line within the timeout")
        .unwrap();
    line
}

async fn connect(addr: &str) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

/// Polls a condition the server reaches asynchronously (a counter), bounded.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn full_server_stops_accepting_until_a_permit_frees() {
    let server = start(opts(2, None), polite).await;
    let mut c1 = connect(&server.addr).await;
    let mut c2 = connect(&server.addr).await;
    assert_eq!(read_line(&mut c1).await, "hello\n");
    assert_eq!(read_line(&mut c2).await, "hello\n");

    // The kernel completes the handshake, but the server does not accept it yet.
    let mut c3 = connect(&server.addr).await;
    let mut line = String::new();
    let waited = tokio::time::timeout(Duration::from_millis(300), c3.read_line(&mut line)).await;
    assert!(
        waited.is_err(),
        "third client was served beyond max_connections: {line:?}"
    );
    assert_eq!(server.counters.current.load(Ordering::Relaxed), 2);

    drop(c1);
    assert_eq!(read_line(&mut c3).await, "hello\n");
    assert_eq!(server.counters.total.load(Ordering::Relaxed), 3);
    assert_eq!(server.counters.rejected.load(Ordering::Relaxed), 0);

    server.shutdown.trigger();
    assert_eq!(read_line(&mut c2).await, "bye\n");
    assert_eq!(read_line(&mut c3).await, "bye\n");
    tokio::time::timeout(LONG, server.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.counters.current.load(Ordering::Relaxed), 0);
    assert_eq!(server.counters.aborted.load(Ordering::Relaxed), 0);
    // The listener is closed once serve returns.
    assert!(TcpStream::connect(&server.addr).await.is_err());
}

#[tokio::test]
async fn full_server_with_reject_message_answers_and_closes() {
    let server = start(opts(2, Some(REJECT)), polite).await;
    let mut c1 = connect(&server.addr).await;
    let mut c2 = connect(&server.addr).await;
    assert_eq!(read_line(&mut c1).await, "hello\n");
    assert_eq!(read_line(&mut c2).await, "hello\n");

    let mut c3 = connect(&server.addr).await;
    let mut reply = Vec::new();
    tokio::time::timeout(LONG, c3.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, REJECT);
    assert_eq!(server.counters.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(server.counters.total.load(Ordering::Relaxed), 2);

    drop(c1);
    let counters = server.counters.clone();
    eventually("the first connection to end", || {
        counters.current.load(Ordering::Relaxed) == 1
    })
    .await;
    let mut c4 = connect(&server.addr).await;
    assert_eq!(read_line(&mut c4).await, "hello\n");

    server.shutdown.trigger();
    tokio::time::timeout(LONG, server.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.counters.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(server.counters.current.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn shutdown_drains_then_aborts_what_is_left() {
    // "stubborn" clients get a handler that ignores shutdown; the others leave politely.
    let handler = |stream: TcpStream, _peer: PeerAddr, mut shutdown: ShutdownSignal| async move {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        if stream.read_line(&mut line).await.is_err() {
            return;
        }
        let _ = stream.write_all(b"ok\n").await;
        if line == "stubborn\n" {
            std::future::pending::<()>().await;
        }
        shutdown.recv().await;
        let _ = stream.write_all(b"bye\n").await;
    };
    let drain_timeout = Duration::from_millis(300);
    let server = start(
        ServeOptions {
            max_connections: 4,
            drain_timeout,
            reject_message: None,
        },
        handler,
    )
    .await;
    let mut stubborn = connect(&server.addr).await;
    let mut polite = connect(&server.addr).await;
    stubborn.write_all(b"stubborn\n").await.unwrap();
    polite.write_all(b"polite\n").await.unwrap();
    assert_eq!(read_line(&mut stubborn).await, "ok\n");
    assert_eq!(read_line(&mut polite).await, "ok\n");

    let started = Instant::now();
    server.shutdown.trigger();
    assert_eq!(read_line(&mut polite).await, "bye\n");
    tokio::time::timeout(LONG, server.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= drain_timeout,
        "returned before the drain timeout"
    );
    assert_eq!(server.counters.aborted.load(Ordering::Relaxed), 1);
    assert_eq!(server.counters.current.load(Ordering::Relaxed), 0);
    // The aborted handler's socket was closed.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(LONG, stubborn.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(n.is_err() || rest.is_empty(), "unexpected data {rest:?}");
}

#[tokio::test]
async fn unix_listener_serves_too() {
    let dir = std::env::temp_dir().join(format!("berth-common-it-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    assert_eq!(
        listener.local_addr_string(),
        format!("unix:{}", path.display())
    );
    let shutdown = Shutdown::new();
    let counters = Arc::new(ConnCounters::default());
    let task = tokio::spawn(serve(
        listener,
        opts(1, None),
        counters.clone(),
        shutdown.signal(),
        |mut stream: tokio::net::UnixStream, peer: PeerAddr, _sd: ShutdownSignal| async move {
            let _ = stream.write_all(format!("{peer}\n").as_bytes()).await;
        },
    ));
    let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(LONG, client.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, "unix\n");
    shutdown.trigger();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();
    assert_eq!(counters.total.load(Ordering::Relaxed), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

struct HttpReply {
    status: u16,
    head: String,
    body: String,
}

async fn http_get(addr: &str, path: &str, extra_headers: &str) -> HttpReply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra_headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(LONG, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no end of headers");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    HttpReply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn start_admin(
    operators: OperatorTokens,
    ready: Arc<AtomicBool>,
) -> (String, Shutdown, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let counters = Arc::new(ConnCounters::default());
    counters.total.store(7, Ordering::Relaxed);
    let state = AdminState {
        metrics: Arc::new(move |out: &mut String| {
            let mut w = MetricsWriter::new(out);
            w.family("berth_test_hits_total", "Test hits.", MetricKind::Counter);
            w.sample("berth_test_hits_total", &[("app", "guestbook")], 42.0);
            counters.write_metrics(&mut w, "berth_test");
        }),
        ready,
        operators: Arc::new(berth_common::tenants::Operators::fixed(operators)),
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(admin::serve(listener, state, shutdown.signal()));
    (addr, shutdown, task)
}

#[tokio::test]
async fn admin_endpoint_health_readiness_and_metrics_auth() {
    let ready = Arc::new(AtomicBool::new(false));
    let (addr, shutdown, task) =
        start_admin(OperatorTokens::from_tokens(&["op-secret"]), ready.clone()).await;

    let r = http_get(&addr, "/healthz", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));

    let r = http_get(&addr, "/readyz", "").await;
    assert_eq!((r.status, r.body.as_str()), (503, "not ready"));
    ready.store(true, Ordering::Release);
    let r = http_get(&addr, "/readyz", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready"));

    let r = http_get(&addr, "/metrics", "").await;
    assert_eq!(r.status, 401);
    assert!(r.head.contains("www-authenticate: bearer"), "{}", r.head);
    let r = http_get(&addr, "/metrics", "Authorization: Basic b3A6c2VjcmV0\r\n").await;
    assert_eq!(r.status, 401);
    let r = http_get(&addr, "/metrics", "Authorization: Bearer wrong\r\n").await;
    assert_eq!(r.status, 403);
    assert!(!r.body.contains("berth_test"), "{}", r.body);

    let r = http_get(&addr, "/metrics", "Authorization: Bearer op-secret\r\n").await;
    assert_eq!(r.status, 200);
    assert!(
        r.head
            .contains(&format!("content-type: {METRICS_CONTENT_TYPE}")),
        "{}",
        r.head
    );
    assert!(
        r.body.contains("# TYPE berth_test_hits_total counter\n"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("berth_test_hits_total{app=\"guestbook\"} 42\n"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("berth_test_connections_total 7\n"),
        "{}",
        r.body
    );

    assert_eq!(http_get(&addr, "/nope", "").await.status, 404);

    shutdown.trigger();
    tokio::time::timeout(LONG, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(&addr).await.is_err());
}

#[tokio::test]
async fn admin_metrics_are_open_without_operator_tokens() {
    let (addr, shutdown, task) =
        start_admin(OperatorTokens::default(), Arc::new(AtomicBool::new(true))).await;
    let r = http_get(&addr, "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("berth_test_hits_total"), "{}", r.body);
    shutdown.trigger();
    tokio::time::timeout(LONG, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
