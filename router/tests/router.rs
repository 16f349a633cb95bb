//! The router in-process on 127.0.0.1:0 in front of small hyper backends: limits, the table
//! swap under load, and graceful shutdown, with exact statuses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_common::shutdown::Shutdown;
use berth_router::config::Config;
use berth_router::server::{self, Bound};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const TOKEN: &str = "test-control-token";

/// A backend that answers `NAME PATH` (after sleeping on `/sleep`) and counts its requests.
async fn backend(name: &'static str) -> (SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let c = c.clone();
                    async move {
                        c.fetch_add(1, Ordering::Relaxed);
                        let path = req.uri().path().to_owned();
                        if path == "/sleep" {
                            tokio::time::sleep(Duration::from_millis(800)).await;
                        }
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
                        let text = format!("{name} {path} {}", body.unwrap_or(0));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, count, task)
}

struct Running {
    http: SocketAddr,
    admin: SocketAddr,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes()));
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        control_tokens: vec![hash],
        drain_timeout: berth_common::config::HumanDuration::secs(5),
        ..Config::default()
    };
    let bound = Bound::bind(&cfg).await.unwrap();
    let addrs = bound.addrs().unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server::run(bound, cfg, shutdown.clone(), || {}));
    Running {
        http: addrs[0].1,
        admin: addrs[1].1,
        shutdown,
        task,
        _dir: dir,
    }
}

/// One request on a new connection: (status, body).
async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn push(r: &Running, table: serde_json::Value) -> u16 {
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = request(
        r.admin,
        "PUT",
        "admin",
        "/v1/routes",
        &[("authorization", &auth)],
        serde_json::to_vec(&table).unwrap(),
    )
    .await;
    assert!(status == 200 || status >= 400, "{status} {body}");
    status
}

#[tokio::test]
async fn limits_are_enforced_with_exact_statuses() {
    let r = start().await;
    let (a, _, _t) = backend("a").await;
    let table = serde_json::json!({"generation": 1, "apps": [{
        "name": "shop", "backends": [a.to_string()],
        "limits": {"max_body_bytes": 100, "request_timeout": "300ms", "max_concurrent_requests": 1}
    }]});
    assert_eq!(push(&r, table).await, 200);
    let (s, body) = request(r.http, "POST", "shop.localhost", "/x", &[], vec![b'x'; 100]).await;
    assert_eq!((s, body.as_str()), (200, "a /x 100"));
    let (s, _) = request(r.http, "POST", "shop.localhost", "/x", &[], vec![b'x'; 101]).await;
    assert_eq!(s, 413);
    // 504: the backend sleeps past the request timeout.
    let started = std::time::Instant::now();
    let (s, _) = request(r.http, "GET", "shop.localhost", "/sleep", &[], vec![]).await;
    assert_eq!(s, 504);
    assert!(started.elapsed() < Duration::from_millis(700));
    // 503 at once while the one allowed request is in flight.
    let table = serde_json::json!({"generation": 2, "apps": [{
        "name": "shop", "backends": [a.to_string()], "limits": {"max_concurrent_requests": 1}
    }]});
    assert_eq!(push(&r, table).await, 200);
    let http = r.http;
    let slow =
        tokio::spawn(
            async move { request(http, "GET", "shop.localhost", "/sleep", &[], vec![]).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, body) = request(r.http, "GET", "shop.localhost", "/", &[], vec![]).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("busy"), "{body}");
    assert_eq!(slow.await.unwrap().0, 200);
    assert_eq!(
        request(r.http, "GET", "shop.localhost", "/", &[], vec![])
            .await
            .0,
        200
    );
    r.shutdown.trigger();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let r = start().await;
    let (a, _, _t) = backend("a").await;
    let table = serde_json::json!({"generation": 1, "apps": [{
        "name": "shop", "backends": [a.to_string()], "limits": {"max_body_bytes": "1KiB"}
    }]});
    assert_eq!(push(&r, table).await, 200);
    let stream = tokio::net::TcpStream::connect(r.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Chunks>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let chunks = Chunks((0..3).map(|_| Bytes::from(vec![b'y'; 600])).collect());
    let req = Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "shop.localhost")
        .body(chunks)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    r.shutdown.trigger();
    r.task.await.unwrap().unwrap();
}

/// A request body sent as chunks of unknown total size (so hyper uses chunked encoding).
struct Chunks(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn swaps_under_load_lose_nothing_and_move_traffic() {
    let r = start().await;
    let mut backends = Vec::new();
    for name in ["b0", "b1", "b2", "b3"] {
        backends.push(backend(name).await);
    }
    let table = |g: u64, i: usize| serde_json::json!({"generation": g, "apps": [{"name": "shop", "backends": [backends[i].0.to_string()]}]});
    assert_eq!(push(&r, table(1, 0)).await, 200);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, failures, http) = (stop.clone(), failures.clone(), r.http);
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (s, _) = request(http, "GET", "shop.localhost", "/", &[], vec![]).await;
                if s != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for g in 2..=8u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(push(&r, table(g, (g as usize - 1) % 4)).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = backends[3].1.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    // Generation 8 points at b3: it is the one still getting requests.
    assert!(backends[3].1.load(Ordering::Relaxed) > before);
    for b in &backends {
        assert!(b.1.load(Ordering::Relaxed) > 0);
    }
    r.shutdown.trigger();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let r = start().await;
    let (a, _, _t) = backend("a").await;
    let table = serde_json::json!({"generation": 1, "apps": [{"name": "shop", "backends": [a.to_string()]}]});
    assert_eq!(push(&r, table).await, 200);
    let http = r.http;
    let slow =
        tokio::spawn(
            async move { request(http, "GET", "shop.localhost", "/sleep", &[], vec![]).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.shutdown.trigger();
    assert_eq!(slow.await.unwrap(), (200, "a /sleep 0".to_owned()));
    r.task.await.unwrap().unwrap();
}
