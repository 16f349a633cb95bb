//! Bad input, limits and slow clients: errors in memcached's form, the connection (and every
//! other connection) keeps working.

use std::time::Duration;

use crate::harness::{set, Client, TestServer};
use berth_common::config::HumanDuration;

#[tokio::test]
async fn oversized_value_is_swallowed_and_connection_stays_usable() {
    let srv = TestServer::start(|c| c.item_size_max = berth_common::config::ByteSize(1024)).await;
    let mut c = srv.client().await;
    c.rt(&set("big", b"old"), b"STORED\r\n").await;
    let big = vec![b'x'; 1025];
    c.send(b"set big 0 0 1025\r\n").await;
    c.send(&big).await;
    c.send(b"\r\n").await;
    c.expect(b"SERVER_ERROR object too large for cache\r\n")
        .await;
    c.rt(&set("ok", &vec![b'y'; 1024]), b"STORED\r\n").await;
    // As in memcached, the failed set also dropped the old value.
    c.rt(b"get big\r\n", b"END\r\n").await;
    c.rt(b"ms big 2\r\nhi\r\n", b"HD\r\n").await;
    c.send(b"ms big 2000 T0\r\n").await;
    c.send(&[b'z'; 2002]).await;
    c.rt(
        b"mg big v\r\n",
        b"SERVER_ERROR object too large for cache\r\nEN\r\n",
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn garbage_gets_errors_and_valid_commands_still_work() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.rt(b"bogus command\r\n", b"ERROR\r\n").await;
    c.rt(b"\r\n", b"ERROR\r\n").await;
    c.rt(
        b"set k abc 0 1\r\nx\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
    )
    .await;
    // As in memcached, the bytes after a bad data chunk are read as the next command.
    c.rt(
        b"set k 0 0 1\r\nxyz\r\n",
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
    )
    .await;
    c.rt(
        b"incr k abc\r\n",
        b"CLIENT_ERROR invalid numeric delta argument\r\n",
    )
    .await;
    let long_key = "k".repeat(251);
    c.rt(
        format!("get {long_key}\r\n").as_bytes(),
        b"CLIENT_ERROR bad command line format\r\n",
    )
    .await;
    c.rt(&set("fine", b"1"), b"STORED\r\n").await;
    c.rt(b"get fine\r\n", b"VALUE fine 0 1\r\n1\r\nEND\r\n")
        .await;
    srv.stop().await;
}

#[tokio::test]
async fn a_line_without_end_over_the_limit_closes_only_that_connection() {
    let srv = TestServer::start(|_| {}).await;
    let mut bad = srv.client().await;
    let mut good = srv.client().await;
    bad.send(&vec![b'a'; 70 * 1024]).await;
    bad.expect(b"CLIENT_ERROR line too long\r\n").await;
    bad.expect_closed().await;
    good.rt(b"version\r\n", b"VERSION ").await;
    srv.stop().await;
}

#[tokio::test]
async fn a_client_stalled_mid_value_does_not_block_others() {
    let srv = TestServer::start(|_| {}).await;
    let mut slow = srv.client().await;
    slow.send(b"set slow 0 0 100\r\nonly-part").await;
    let mut other = srv.client().await;
    other.rt(&set("k", b"v"), b"STORED\r\n").await;
    other.rt(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n").await;
    slow.send(&[b'z'; 91]).await;
    slow.rt(b"\r\n", b"STORED\r\n").await;
    srv.stop().await;
}

#[tokio::test]
async fn connection_limit_is_held() {
    let srv = TestServer::start(|c| c.max_connections = 2).await;
    let mut a = srv.client().await;
    let mut b = srv.client().await;
    a.rt(b"version\r\n", b"VERSION ").await;
    b.rt(b"version\r\n", b"VERSION ").await;
    let mut c = srv.client().await;
    c.expect(b"ERROR Too many open connections\r\n").await;
    c.expect_closed().await;
    drop(a);
    // The slot frees once the server notices the close.
    let mut ok = false;
    for _ in 0..50 {
        let mut d = Client::connect(srv.addr).await;
        d.send(b"version\r\n").await;
        let mut buf = [0u8; 8];
        if tokio::io::AsyncReadExt::read_exact(&mut d.stream, &mut buf)
            .await
            .is_ok()
            && &buf == b"VERSION "
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a slot should free after a client leaves");
    srv.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let srv =
        TestServer::start(|c| c.idle_timeout = HumanDuration(Duration::from_millis(200))).await;
    let mut c = srv.client().await;
    c.rt(b"version\r\n", b"VERSION ").await;
    let _ = c.read_until(b"\r\n").await;
    c.expect_closed().await;
    srv.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let srv = TestServer::start(|c| c.max_reqs_per_event = 3).await;
    let mut c = srv.client().await;
    let mut batch = Vec::new();
    let mut expect = Vec::new();
    for i in 0..100 {
        batch.extend_from_slice(&set(&format!("p{i}"), i.to_string().as_bytes()));
        batch.extend_from_slice(format!("get p{i}\r\n").as_bytes());
        expect.extend_from_slice(b"STORED\r\n");
        expect.extend_from_slice(
            format!("VALUE p{i} 0 {}\r\n{i}\r\nEND\r\n", i.to_string().len()).as_bytes(),
        );
    }
    c.rt(&batch, &expect).await;
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_command_needs_enable_flag() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.rt(b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n")
        .await;
    srv.stop().await;

    let srv = TestServer::start(|c| c.enable_shutdown = true).await;
    let mut c = srv.client().await;
    c.send(b"shutdown\r\n").await;
    c.expect_closed().await;
    tokio::time::timeout(Duration::from_secs(10), srv.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn graceful_stop_finishes_a_half_sent_request() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.send(b"set late 0 0 4\r\nab").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.shared.shutdown.trigger();
    c.rt(b"cd\r\n", b"STORED\r\n").await;
    c.expect_closed().await;
    tokio::time::timeout(Duration::from_secs(10), srv.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn admin_endpoint_serves_health_and_metrics() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.rt(&set("m", b"1"), b"STORED\r\n").await;
    c.rt(b"get m nope\r\n", b"VALUE m 0 1\r\n1\r\nEND\r\n")
        .await;
    let body = http_get(srv.admin, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("berth_cache_items{app=\"_anonymous\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("berth_cache_hits_total{app=\"_anonymous\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("berth_cache_misses_total{app=\"_anonymous\"} 1"),
        "{body}"
    );
    let health = http_get(srv.admin, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = http_get(srv.admin, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    srv.stop().await;
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
