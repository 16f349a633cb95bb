//! The shim ships the app's output to a log collector: a fake one (acks, resends, no
//! collector at all) and the real `log-collector` binary.

use super::*;

/// A fake collector speaking the JSON-lines protocol with acks. The first connection is cut
/// after one event without an ack (the shim must resend); later ones ack every read.
type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

fn fake_collector() -> (SocketAddr, Seen, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let hellos = Arc::new(Mutex::new(Vec::new()));
    let (ev, he) = (events.clone(), hellos.clone());
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            let (ev, he) = (ev.clone(), he.clone());
            thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                he.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
                w.write_all(b"{\"ok\":\"hello\",\"app\":\"shimtest\",\"ack\":true}\n")
                    .unwrap();
                let mut count = 0u64;
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    count += 1;
                    if n == 0 {
                        return; // cut without acking
                    }
                    ev.lock()
                        .unwrap()
                        .push(serde_json::from_str(&line).unwrap());
                    if r.buffer().is_empty()
                        && w.write_all(format!("{{\"ack\":{count}}}\n").as_bytes())
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, events, hellos)
}

#[test]
fn logs_reach_the_collector_with_acks() {
    let (addr, events, hellos) = fake_collector();
    let dir = tempdir();
    let script = "for i in 1 2 3 4 5; do echo out-$i; done; echo err-1 >&2; exit 0";
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.log = Some(LogTarget {
        addr: addr.to_string(),
        token: "tok-123".into(),
    });
    spec.restart.initial_backoff_ms = 60_000;
    spec.restart.max_backoff_ms = 60_000;
    let mut shim = Shim::start(dir.path(), &spec);
    let s = shim.wait_state("7 lines shipped", Duration::from_secs(15), |s| {
        s.log_shipped >= 7
    });
    assert_eq!(s.log_dropped, 0);
    let evs = events.lock().unwrap().clone();
    let msgs: Vec<&str> = evs.iter().map(|e| e["message"].as_str().unwrap()).collect();
    for want in ["out-1", "out-2", "out-3", "out-4", "out-5", "err-1"] {
        assert!(msgs.contains(&want), "{want} missing from {msgs:?}");
    }
    let out1 = evs.iter().find(|e| e["message"] == "out-1").unwrap();
    assert_eq!(out1["stream"], "stdout");
    assert_eq!(out1["level"], "info");
    assert_eq!(out1["version"], "1.2.0");
    assert_eq!(out1["instance"], spec.instance.as_str());
    assert!(out1["timestamp"].as_f64().unwrap() > 1.7e9);
    let err1 = evs.iter().find(|e| e["message"] == "err-1").unwrap();
    assert_eq!(
        (err1["stream"].as_str(), err1["level"].as_str()),
        (Some("stderr"), Some("warning"))
    );
    let shim_lines: Vec<&str> = (evs.iter())
        .filter(|e| e["stream"] == "shim")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(shim_lines[0].starts_with("supervising "), "{shim_lines:?}");
    assert!(
        shim_lines.contains(&"exited with exit 0; restarting in 60000ms"),
        "{shim_lines:?}"
    );
    let hello = hellos.lock().unwrap()[0].clone();
    assert_eq!(hello["hello"]["app"], "shimtest");
    assert_eq!(hello["hello"]["token"], "tok-123");
    assert_eq!(hello["hello"]["ack"], true);
    assert!(
        hellos.lock().unwrap().len() >= 2,
        "no reconnect after the cut"
    );
    // The stop line is flushed before the shim exits.
    assert_eq!(shim.stop().0, Some(0));
    assert!(events.lock().unwrap().iter().any(|e| e["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("stopped"))));
    let s = shim.state().unwrap();
    assert!(s.log_shipped >= 8, "{s:#?}");
}

#[test]
fn logs_without_a_collector_are_queued_and_stop_is_bounded() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo hello; exec sleep 1000"]);
    spec.log = Some(LogTarget {
        addr: format!("127.0.0.1:{port}"),
        token: "t".into(),
    });
    let mut shim = Shim::start(dir.path(), &spec);
    shim.running();
    shim.wait_line("hello", Duration::from_secs(5));
    let (code, took) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let s = shim.state().unwrap();
    assert_eq!(s.log_shipped, 0);
    assert!(s.log_dropped >= 1, "{s:#?}");
}

/// The real log collector binary, when built in this target dir (`cargo build -p
/// log-collector`) or named by `BERTH_LOG_COLLECTOR`.
fn collector_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_LOG_COLLECTOR") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("log-collector");
    p.is_file().then_some(p)
}

struct Collector {
    child: Child,
    json: String,
    http: String,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_collector(bin: &Path, dir: &Path, app: &str, token: &str) -> Collector {
    let tenants = dir.join("tenants.toml");
    fs::write(
        &tenants,
        format!("[[app]]\nname = \"{app}\"\ntoken = \"{token}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("logs"))
        .args([
            "--listen-json",
            "127.0.0.1:0",
            "--listen-http",
            "127.0.0.1:0",
        ])
        .args(["--listen-syslog", "", "--listen-otlp", ""])
        .args(["--admin-listen", "127.0.0.1:0", "--tenants"])
        .arg(&tenants)
        .stdout(Stdio::piped())
        .stderr(fs::File::create(dir.join("collector.err")).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut json, mut http) = (String::new(), String::new());
    let mut line = String::new();
    while json.is_empty() || http.is_empty() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "collector exited");
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["LISTEN", "json", a] => json = a.to_string(),
            ["LISTEN", "http", a] => http = a.to_string(),
            _ => {}
        }
    }
    thread::spawn(move || for _ in out.lines() {});
    Collector { child, json, http }
}

fn http_events(addr: &str, app: &str, token: &str) -> serde_json::Value {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /v1/apps/{app}/events?limit=1000 HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut c, &mut resp).unwrap();
    let body = &resp[resp.find("\r\n\r\n").expect("http response") + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

#[test]
fn logs_reach_the_real_collector() {
    let Some(bin) = collector_binary() else {
        println!("SKIPPED logs_reach_the_real_collector: no log-collector binary (cargo build -p log-collector, or set BERTH_LOG_COLLECTOR)");
        return;
    };
    let dir = tempdir();
    let token = "shimtest-token-0123456789abcdef";
    let collector = start_collector(&bin, dir.path(), "shimtest", token);
    let script = "echo first; echo second >&2; printf 'no newline'; exit 4";
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.log = Some(LogTarget {
        addr: collector.json.clone(),
        token: token.into(),
    });
    spec.restart.initial_backoff_ms = 60_000;
    spec.restart.max_backoff_ms = 60_000;
    let mut shim = Shim::start(dir.path(), &spec);
    // supervising + 3 lines + the exit line
    shim.wait_state("5 lines shipped", Duration::from_secs(15), |s| {
        s.log_shipped >= 5
    });
    let body = http_events(&collector.http, "shimtest", token);
    let events = body["events"].as_array().unwrap();
    let find = |m: &str| events.iter().find(|e| e["message"] == m).cloned();
    let first = find("first").unwrap_or_else(|| panic!("no 'first' in {body}"));
    assert_eq!(first["level"], "info");
    let second = find("second").unwrap();
    assert_eq!(second["level"], "warning");
    assert!(find("no newline").is_some(), "{body}");
    assert!(
        find("exited with exit 4; restarting in 60000ms").is_some(),
        "{body}"
    );
    assert_eq!(shim.stop().0, Some(0));
    let s = shim.state().unwrap();
    assert_eq!(s.log_dropped, 0, "{s:#?}");

    // A wrong token: refused at the hello, nothing shipped, the app runs on.
    let dir2 = tempdir();
    let mut spec = base_spec(dir2.path(), &[SH, "-c", "echo hi; exec sleep 1000"]);
    spec.log = Some(LogTarget {
        addr: collector.json.clone(),
        token: "wrong".into(),
    });
    let mut shim = Shim::start(dir2.path(), &spec);
    shim.running();
    shim.wait_line("hi", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(500));
    let err = fs::read_to_string(dir2.path().join("shim.err")).unwrap();
    assert!(err.contains("hello refused"), "{err}");
    assert_eq!(shim.stop().0, Some(0));
    assert_eq!(shim.state().unwrap().log_shipped, 0);
}
