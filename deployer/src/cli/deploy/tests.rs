//! Unit tests of `berth deploy`.

use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

#[test]
fn parses_deploy() {
    let cli = Cli::try_parse_from([
        "berth",
        "deploy",
        "examples/guestbook",
        "--no-promote",
        "--allow-downgrade",
        "--reason",
        "hotfix",
        "--token",
        "t",
    ])
    .unwrap();
    let Command::Deploy(a) = cli.command else {
        panic!("not deploy")
    };
    assert_eq!(a.dir, PathBuf::from("examples/guestbook"));
    assert!(a.no_promote && a.allow_downgrade && !a.skip_local_checks);
    assert_eq!(a.reason, "hotfix");
    assert_eq!(a.conn.token.as_deref(), Some("t"));
    let Command::Deploy(a) = Cli::try_parse_from(["berth", "deploy", "--json"])
        .unwrap()
        .command
    else {
        panic!("not deploy")
    };
    assert_eq!(a.dir, PathBuf::from("."));
    assert!(a.conn.json && !a.no_promote);
    assert!(Cli::try_parse_from(["berth", "deploy", "--promote"]).is_err());
}

#[test]
fn upload_chunks() {
    let data: Vec<u8> = (0..CHUNK_BYTES * 2 + 10).map(|i| (i % 251) as u8).collect();
    let all: Vec<_> = chunks("guestbook", "abc", data.clone()).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].app, "guestbook");
    assert_eq!(all[0].sha256, "abc");
    assert_eq!(all[0].size, data.len() as u64);
    assert_eq!(all[0].data, data[..CHUNK_BYTES]);
    for c in &all[1..] {
        assert!(c.app.is_empty() && c.sha256.is_empty() && c.size == 0);
    }
    assert_eq!(all[2].data.len(), 10);
    let joined: Vec<u8> = all.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(joined, data);
    // A small bundle is one message; even an empty one is sent (as the first message).
    let one: Vec<_> = chunks("a", "s", vec![1, 2, 3]).collect();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].size, one[0].data.as_slice()), (3, &[1u8, 2, 3][..]));
    assert_eq!(chunks("a", "s", vec![]).count(), 1);
    assert_eq!(chunks("a", "s", vec![0; CHUNK_BYTES]).count(), 1);
}

fn release(id: &str, version: &str) -> api::Release {
    api::Release {
        id: id.into(),
        number: id[1..].parse().unwrap(),
        version: version.into(),
        state: "live".into(),
        ..Default::default()
    }
}

#[test]
fn result_lines() {
    let done = api::Progress {
        phase: "done".into(),
        done: true,
        release: Some(release("v3", "1.2.0")),
        ..Default::default()
    };
    let deploy = Kind::Deploy {
        version: "1.2.0".into(),
        no_promote: false,
    };
    let urls = vec!["http://guestbook.localhost:8080/".to_string()];
    assert_eq!(
        deploy.line("guestbook", &done, &urls),
        "Released v3: guestbook 1.2.0 is live at http://guestbook.localhost:8080/"
    );
    assert_eq!(
        deploy.line("guestbook", &done, &[]),
        "Released v3: guestbook 1.2.0 is live"
    );
    let noop = api::Progress {
        noop: true,
        ..done.clone()
    };
    assert_eq!(
        deploy.line("guestbook", &noop, &[]),
        "guestbook 1.2.0 is already live with the same content; nothing to do"
    );
    assert_eq!(deploy.result(&noop), "noop");
    let bare = api::Progress {
        phase: "done".into(),
        done: true,
        noop: true,
        ..Default::default()
    };
    assert_eq!(
        Kind::Release.line("guestbook", &bare, &[]),
        "guestbook is already live with the same content; nothing to do"
    );
    assert_eq!(deploy.result(&done), "released");
    let held = Kind::Deploy {
        version: "1.3.0".into(),
        no_promote: true,
    };
    let ready = api::Progress {
        release: None,
        ..done.clone()
    };
    assert_eq!(
        held.line("guestbook", &ready, &[]),
        "guestbook 1.3.0 is started and checked but not live: `berth promote guestbook \
         1.3.0` makes it live"
    );
    assert_eq!(
        Kind::Scale { instances: 3 }.line("guestbook", &done, &[]),
        "Scaled guestbook to 3 instance(s) of v3 (1.2.0)"
    );
    assert_eq!(
        Kind::Config.line("guestbook", &ready, &[]),
        "Saved; guestbook has no live release yet: its next deploy runs with this config"
    );
    assert_eq!(Kind::Config.result(&ready), "saved");
    let said = api::Progress {
        message: "guestbook runs 3 instance(s)".into(),
        ..ready.clone()
    };
    assert_eq!(
        Kind::Scale { instances: 3 }.line("guestbook", &said, &[]),
        "guestbook runs 3 instance(s)"
    );
}

#[test]
fn progress_lines_and_json() {
    let p = api::Progress {
        phase: "health".into(),
        message: "1.2.0-1 healthy".into(),
        current: 1,
        total: 2,
        ..Default::default()
    };
    assert_eq!(line(&p), "==> health: 1.2.0-1 healthy (1/2)");
    let v = progress_json(&p);
    assert_eq!(v["phase"], "health");
    assert_eq!(v["current"], 1);
    assert_eq!(v["release"], Value::Null);
    assert_eq!(v["done"], false);
    let s = summary_json("guestbook", "failed", None, &[], "health: boom");
    assert_eq!(s["ok"], false);
    assert_eq!(s["error"], "health: boom");
}

#[test]
fn bytes_for_people() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(12_516), "12.2 KiB");
    assert_eq!(human_bytes(48 * 1024 * 1024), "48.0 MiB");
    assert_eq!(human_bytes(3 << 30), "3.0 GiB");
}

#[test]
fn name_without_checks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(MANIFEST_FILE),
        "name = \"shop\"\nversion = \"2.0.0\"\nbogus = 1\n",
    )
    .unwrap();
    assert_eq!(
        name_and_version(dir.path()).unwrap(),
        ("shop".to_string(), "2.0.0".to_string())
    );
    std::fs::write(dir.path().join(MANIFEST_FILE), "version = \"1\"\n").unwrap();
    assert!(name_and_version(dir.path()).is_err());
}

#[test]
fn failed_local_checks_stop_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let args = DeployArgs {
        dir: dir.path().into(),
        no_promote: false,
        allow_downgrade: false,
        reason: String::new(),
        skip_local_checks: false,
        conn: Conn {
            // Nothing listens there: the run must stop before it tries.
            server: "http://127.0.0.1:1".into(),
            token: Some("t".into()),
            token_file: None,
            json: true,
            ca_file: None,
        },
    };
    assert_eq!(run(&args).unwrap(), ExitCode::FAILURE);
}
