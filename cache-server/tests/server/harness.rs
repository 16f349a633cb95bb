//! Start a server in-process and talk to it byte by byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_common::shutdown::Shutdown;
use berth_common::tenants::TenantSet;
use cache_server::clock::Clock;
use cache_server::config::Config;
use cache_server::server::{self, Bound, Shared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub shared: Arc<Shared>,
    pub clock: Clock,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with(tweak, None).await
    }

    pub async fn start_with(
        tweak: impl FnOnce(&mut Config),
        tenants: Option<TenantSet>,
    ) -> TestServer {
        let mut cfg = Config {
            listen: vec!["127.0.0.1:0".into()],
            admin_listen: "127.0.0.1:0".into(),
            threads: 2,
            ..Config::default()
        };
        tweak(&mut cfg);
        cfg.validate().expect("test config is valid");
        let bound = Bound::bind(&cfg).await.expect("bind");
        let addr = bound.tcp_addrs()[0];
        let admin = bound.admin_addr().unwrap();
        let clock = Clock::frozen();
        let shared =
            Shared::with_clock(cfg, tenants, Shutdown::new(), clock.clone()).expect("server state");
        let task = tokio::spawn(server::run(bound, shared.clone()));
        TestServer {
            addr,
            admin,
            shared,
            clock,
            task,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// Stop the server and wait for it to drain.
    pub async fn stop(self) {
        self.shared.shutdown.trigger();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("server stops within the drain timeout")
            .expect("server task")
            .expect("server result");
    }
}

pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Client { stream }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Read exactly `expected.len()` bytes and compare.
    pub async fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        let read = tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut got)).await;
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("reading {:?}: {e}", String::from_utf8_lossy(expected)),
            Err(_) => panic!(
                "timed out waiting for {:?}",
                String::from_utf8_lossy(expected)
            ),
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "reply differs"
        );
    }

    /// Send a request and compare the whole reply.
    pub async fn rt(&mut self, send: &[u8], expected: &[u8]) {
        self.send(send).await;
        self.expect(expected).await;
    }

    /// Read until the reply ends with `end` (e.g. `END\r\n`).
    pub async fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(end) {
            let n = tokio::time::timeout(TIMEOUT, self.stream.read(&mut buf))
                .await
                .expect("timed out")
                .expect("read");
            assert!(
                n > 0,
                "connection closed; got so far {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// `stats` as (name, value) pairs.
    pub async fn stats(&mut self, args: &str) -> Vec<(String, String)> {
        self.send(format!("stats{}{args}\r\n", if args.is_empty() { "" } else { " " }).as_bytes())
            .await;
        let text = String::from_utf8(self.read_until(b"END\r\n").await).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("STAT "))
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub async fn stat(&mut self, name: &str) -> u64 {
        let all = self.stats("").await;
        all.iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no stat {name}"))
            .1
            .parse()
            .unwrap()
    }

    /// Wait until the server closes the connection.
    pub async fn expect_closed(&mut self) {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(TIMEOUT, self.stream.read(&mut buf))
            .await
            .expect("connection should close")
            .unwrap_or(0);
        assert_eq!(
            n,
            0,
            "expected close, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

/// `set key 0 0 len\r\nvalue\r\n`
pub fn set(key: &str, value: &[u8]) -> Vec<u8> {
    let mut v = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
    v.extend_from_slice(value);
    v.extend_from_slice(b"\r\n");
    v
}
