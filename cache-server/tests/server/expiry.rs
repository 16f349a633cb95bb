//! Expiry rules on a frozen clock: relative, absolute, negative, touch, gat, flush delay, meta TTLs.

use crate::harness::TestServer;

#[tokio::test]
async fn relative_absolute_and_negative_exptimes() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.rt(b"set rel 0 10 1\r\na\r\n", b"STORED\r\n").await;
    let abs = srv.shared.clock.unix_now() + 100;
    c.rt(
        format!("set abs 0 {abs} 1\r\nb\r\n").as_bytes(),
        b"STORED\r\n",
    )
    .await;
    c.rt(b"set neg 0 -1 1\r\nc\r\n", b"STORED\r\n").await;
    c.rt(b"set past 0 2592001 1\r\nd\r\n", b"STORED\r\n").await;
    c.rt(
        b"get rel abs neg past\r\n",
        b"VALUE rel 0 1\r\na\r\nVALUE abs 0 1\r\nb\r\nEND\r\n",
    )
    .await;
    srv.clock.advance(9);
    c.rt(b"get rel\r\n", b"VALUE rel 0 1\r\na\r\nEND\r\n").await;
    srv.clock.advance(1);
    c.rt(b"get rel\r\n", b"END\r\n").await;
    c.rt(b"get abs\r\n", b"VALUE abs 0 1\r\nb\r\nEND\r\n").await;
    srv.clock.advance(90);
    c.rt(b"get abs\r\n", b"END\r\n").await;
    // A negative exptime also removes what was there.
    c.rt(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n").await;
    c.rt(b"set k 0 -5 1\r\ny\r\n", b"STORED\r\n").await;
    c.rt(b"get k\r\n", b"END\r\n").await;
    srv.stop().await;
}

#[tokio::test]
async fn touch_and_gat_move_expiry() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.rt(b"set t 5 10 2\r\nhi\r\n", b"STORED\r\n").await;
    c.rt(b"touch t 100\r\n", b"TOUCHED\r\n").await;
    c.rt(b"touch missing 100\r\n", b"NOT_FOUND\r\n").await;
    srv.clock.advance(50);
    c.rt(b"gat 20 t\r\n", b"VALUE t 5 2\r\nhi\r\nEND\r\n").await;
    srv.clock.advance(19);
    c.send(b"gats 0 t\r\n").await;
    let reply = c.read_until(b"END\r\n").await;
    assert!(
        reply.starts_with(b"VALUE t 5 2 "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    srv.clock.advance(1000);
    c.rt(b"get t\r\n", b"VALUE t 5 2\r\nhi\r\nEND\r\n").await;
    c.rt(b"touch t -1\r\n", b"TOUCHED\r\n").await;
    c.rt(b"get t\r\n", b"END\r\n").await;
    srv.stop().await;
}

#[tokio::test]
async fn flush_all_now_and_delayed() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.rt(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n").await;
    c.rt(b"flush_all\r\n", b"OK\r\n").await;
    c.rt(b"get a\r\n", b"END\r\n").await;
    // Items stored after a flush survive it, even within the same second.
    c.rt(b"set b 0 0 1\r\n2\r\n", b"STORED\r\n").await;
    c.rt(b"get b\r\n", b"VALUE b 0 1\r\n2\r\nEND\r\n").await;
    c.rt(b"flush_all 10\r\n", b"OK\r\n").await;
    srv.clock.advance(5);
    c.rt(b"get b\r\n", b"VALUE b 0 1\r\n2\r\nEND\r\n").await;
    srv.clock.advance(6);
    c.rt(b"get b\r\n", b"END\r\n").await;
    c.rt(b"flush_all noreply\r\nget b\r\n", b"END\r\n").await;
    srv.stop().await;
}

#[tokio::test]
async fn meta_ttl_flags() {
    let srv = TestServer::start(|_| {}).await;
    let mut c = srv.client().await;
    c.rt(b"ms m 2 T30\r\nhi\r\n", b"HD\r\n").await;
    srv.clock.advance(10);
    c.rt(b"mg m t v\r\n", b"VA 2 t20\r\nhi\r\n").await;
    c.rt(b"mg m T100 t\r\n", b"HD t100\r\n").await;
    c.rt(b"ms forever 1\r\nx\r\n", b"HD\r\n").await;
    c.rt(b"mg forever t\r\n", b"HD t-1\r\n").await;
    // Vivify on miss: the first client wins the right to recache, the next sees Z.
    c.rt(b"mg viv N30 t\r\n", b"HD t30 W\r\n").await;
    c.rt(b"mg viv t\r\n", b"HD t30 Z\r\n").await;
    // Recache: a TTL below the R threshold hands out one win.
    c.rt(b"ms rc 1 T10\r\nz\r\n", b"HD\r\n").await;
    c.rt(b"mg rc R30 v\r\n", b"VA 1 W\r\nz\r\n").await;
    c.rt(b"mg rc R30 v\r\n", b"VA 1 Z\r\nz\r\n").await;
    srv.clock.advance(10);
    c.rt(b"mg rc v\r\n", b"EN\r\n").await;
    srv.stop().await;
}
