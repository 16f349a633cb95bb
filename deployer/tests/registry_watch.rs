//! `Registry.Watch` against a real berthd process: the state at once, each change after,
//! the app token refused, and the stream ended (not hanging) when berthd stops.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_api::v1 as api;
use tonic::metadata::MetadataValue;
use tonic::Request;

struct Daemon {
    child: Child,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berthd"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("berthd printed no LISTEN grpc line")
            .unwrap();
        if let Some(a) = line.strip_prefix("LISTEN grpc ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let token = std::fs::read_to_string(dir.path().join("operator-token"))
        .unwrap()
        .trim()
        .to_string();
    Daemon {
        child,
        addr,
        token,
        _dir: dir,
    }
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    let v: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    req.metadata_mut().insert("authorization", v);
    req
}

#[tokio::test]
async fn watch_streams_every_change_and_ends_with_berthd() {
    let d = start();
    let url = format!("http://{}", d.addr);
    let mut registry = api::registry_client::RegistryClient::connect(url.clone())
        .await
        .unwrap();
    let mut apps = api::apps_client::AppsClient::connect(url).await.unwrap();
    let mut stream = registry
        .watch(authed(
            api::WatchRequest {
                known_generation: 0,
            },
            &d.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.generation, 0);
    // No app yet, but berthd's operator token (its hash) comes with the tenants.
    let set = berth_common::tenants::TenantSet::from_toml_str(&first.tenants_toml).unwrap();
    assert!(set.is_empty());
    assert_eq!(set.operators().len(), 1);
    assert!(set.operators().verify(&d.token));
    assert!(
        !first.tenants_toml.contains(&d.token),
        "only the hash is sent"
    );

    let created = apps
        .create_app(authed(
            api::CreateAppRequest {
                name: "shop".into(),
                ..Default::default()
            },
            &d.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let next = stream.message().await.unwrap().unwrap();
    assert_eq!(next.generation, 1);
    let set = berth_common::tenants::TenantSet::from_toml_str(&next.tenants_toml).unwrap();
    assert!(set.get("shop").unwrap().verify_token(&created.secret));

    // An app token may not read the registry.
    let err = registry
        .watch(authed(api::WatchRequest::default(), &created.secret))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // A watcher that is up to date gets nothing until the next change.
    let mut current = registry
        .watch(authed(
            api::WatchRequest {
                known_generation: 1,
            },
            &d.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let nothing = tokio::time::timeout(Duration::from_millis(300), current.message()).await;
    assert!(nothing.is_err(), "sent a state the watcher already had");

    // SIGTERM: the open streams end and berthd exits promptly.
    let pid = d.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    assert!(
        matches!(end, Ok(Ok(None)) | Ok(Err(_))),
        "the stream did not end"
    );
    let mut d = d;
    let started = Instant::now();
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert!(status.success(), "berthd exited with {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "berthd did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
