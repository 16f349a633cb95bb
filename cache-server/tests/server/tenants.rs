//! Multi-tenancy: ASCII authentication, namespaces, budgets that hold under churn, scoped
//! flush and stats, operator logins, revocation on reload.

use berth_common::tenants::{hash_token, TenantSet};

use crate::harness::{set, Client, TestServer};

fn tenants(extra: &str) -> TenantSet {
    TenantSet::from_toml_str(&format!(
        r#"
[[app]]
name = "alpha"
token = "tok-a"
cache_bytes = "2MiB"

[[app]]
name = "beta"
token = "tok-b"
cache_bytes = "2MiB"
{extra}
"#
    ))
    .expect("tenants parse")
}

async fn login(srv: &TestServer, app: &str, token: &str) -> Client {
    let mut c = srv.client().await;
    let cred = format!("{app} {token}");
    c.rt(
        format!("set auth 0 0 {}\r\n{cred}\r\n", cred.len()).as_bytes(),
        b"STORED\r\n",
    )
    .await;
    c
}

#[tokio::test]
async fn commands_need_a_login_and_bad_tokens_fail() {
    let srv = TestServer::start_with(
        |c| c.memory_limit = berth_common::config::ByteSize(16 << 20),
        Some(tenants("")),
    )
    .await;
    let mut c = srv.client().await;
    c.rt(b"get x\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        .await;
    c.rt(
        b"set auth 0 0 11\r\nalpha wrong\r\n",
        b"CLIENT_ERROR authentication failure\r\n",
    )
    .await;
    c.rt(
        b"set auth 0 0 11\r\nghost tok-a\r\n",
        b"CLIENT_ERROR authentication failure\r\n",
    )
    .await;
    c.rt(b"set auth 0 0 11\r\nalpha tok-a\r\n", b"STORED\r\n")
        .await;
    c.rt(b"get x\r\n", b"END\r\n").await;
    srv.stop().await;
}

#[tokio::test]
async fn apps_are_isolated_and_churn_stays_within_budget() {
    let srv = TestServer::start_with(
        |c| c.memory_limit = berth_common::config::ByteSize(16 << 20),
        Some(tenants("")),
    )
    .await;
    let mut a = login(&srv, "alpha", "tok-a").await;
    let mut b = login(&srv, "beta", "tok-b").await;
    a.rt(&set("same", b"from-a"), b"STORED\r\n").await;
    b.rt(&set("same", b"from-b"), b"STORED\r\n").await;
    a.rt(b"get same\r\n", b"VALUE same 0 6\r\nfrom-a\r\nEND\r\n")
        .await;
    b.rt(b"get same\r\n", b"VALUE same 0 6\r\nfrom-b\r\nEND\r\n")
        .await;
    // Beta fills some of its budget.
    for i in 0..50 {
        b.rt(&set(&format!("b{i}"), &[b'b'; 1000]), b"STORED\r\n")
            .await;
    }
    // Alpha writes ten times its budget.
    let value = vec![b'a'; 10 * 1024];
    let mut batch = Vec::new();
    for i in 0..2048 {
        batch.extend_from_slice(&set(&format!("a{i}"), &value));
    }
    a.send(&batch).await;
    a.expect(&b"STORED\r\n".repeat(2048)).await;
    let alpha_bytes = a.stat("bytes").await;
    assert!(
        alpha_bytes <= 2 << 20,
        "alpha's bytes {alpha_bytes} exceed its 2 MiB budget"
    );
    assert!(a.stat("evictions").await > 0, "alpha had to evict");
    let seg = srv.shared.app("alpha").unwrap().ns.stats().segments_bytes;
    assert!(seg <= 2 << 20, "alpha's segments {seg} exceed its budget");
    for i in 0..50 {
        b.rt(
            format!("get b{i}\r\n").as_bytes(),
            &[
                format!("VALUE b{i} 0 1000\r\n").as_bytes(),
                &[b'b'; 1000],
                b"\r\nEND\r\n",
            ]
            .concat(),
        )
        .await;
    }
    assert_eq!(b.stat("evictions").await, 0);
    assert_eq!(b.stat("curr_items").await, 51);
    // Alpha's flush leaves beta alone.
    a.rt(b"flush_all\r\n", b"OK\r\n").await;
    a.rt(b"get same\r\n", b"END\r\n").await;
    b.rt(b"get same\r\n", b"VALUE same 0 6\r\nfrom-b\r\nEND\r\n")
        .await;
    assert_eq!(b.stat("curr_items").await, 51);
    // Administration is not for apps.
    a.rt(b"verbosity 1\r\n", b"CLIENT_ERROR permission denied\r\n")
        .await;
    a.rt(
        b"cache_memlimit 100\r\n",
        b"CLIENT_ERROR permission denied\r\n",
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn operators_administer_but_have_no_namespace() {
    let hash: String = hash_token("op-secret")
        .sha256
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let srv = TestServer::start_with(
        |c| {
            c.memory_limit = berth_common::config::ByteSize(16 << 20);
            c.operator_tokens = vec![hash];
        },
        Some(tenants("")),
    )
    .await;
    let mut a = login(&srv, "alpha", "tok-a").await;
    a.rt(&set("k", b"v"), b"STORED\r\n").await;
    let mut op = login(&srv, "_operator", "op-secret").await;
    op.rt(
        b"get k\r\n",
        b"CLIENT_ERROR operator session has no namespace\r\n",
    )
    .await;
    op.rt(b"verbosity 1\r\n", b"OK\r\n").await;
    assert_eq!(op.stat("curr_items").await, 1);
    let mut bad = srv.client().await;
    bad.rt(
        b"set a 0 0 15\r\n_operator wrong\r\n",
        b"CLIENT_ERROR authentication failure\r\n",
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn revoked_tokens_lose_their_connections() {
    let srv = TestServer::start_with(
        |c| c.memory_limit = berth_common::config::ByteSize(16 << 20),
        Some(tenants("")),
    )
    .await;
    let mut a = login(&srv, "alpha", "tok-a").await;
    let mut b = login(&srv, "beta", "tok-b").await;
    a.rt(b"get x\r\n", b"END\r\n").await;
    let without_beta = TenantSet::from_toml_str(
        "[[app]]\nname = \"alpha\"\ntoken = \"tok-a\"\ncache_bytes = \"2MiB\"\n",
    )
    .unwrap();
    srv.shared.apply_tenants(without_beta).unwrap();
    b.expect(b"SERVER_ERROR authentication revoked\r\n").await;
    b.expect_closed().await;
    a.rt(b"get x\r\n", b"END\r\n").await;
    srv.stop().await;
}

#[tokio::test]
async fn budgets_over_the_memory_limit_are_refused() {
    let srv = TestServer::start_with(
        |c| c.memory_limit = berth_common::config::ByteSize(16 << 20),
        Some(tenants("")),
    )
    .await;
    let too_big = TenantSet::from_toml_str(
        "[[app]]\nname = \"alpha\"\ntoken = \"t\"\ncache_bytes = \"20MiB\"\n",
    )
    .unwrap();
    let err = srv.shared.check_tenants(&too_big).unwrap_err().to_string();
    assert!(err.contains("more than"), "{err}");
    assert!(srv.shared.apply_tenants(too_big).is_err());
    // The previous set still serves.
    let mut a = login(&srv, "beta", "tok-b").await;
    a.rt(b"get x\r\n", b"END\r\n").await;
    srv.stop().await;
}
