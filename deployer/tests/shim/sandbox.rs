//! Isolation: the bubblewrap sandbox (what an app can see and write; the `auto` and `always`
//! modes) and the instance cgroup (a stale process left in it is killed on start).

use super::*;

#[test]
fn bwrap_hides_paths_and_makes_the_bundle_read_only() {
    if skip_unless_root("bwrap_hides_paths_and_makes_the_bundle_read_only") {
        return;
    }
    let user = app_user("shimbw");
    let dir = tempdir();
    // berthd's data dir, hidden; the scratch dir lives under it and must stay writable.
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("secret"), "s3cret").unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(data.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
    let script = r#"
cat "$DATA/secret" 2>/dev/null && echo LEAK || echo hidden-ok
touch ./x 2>/dev/null && echo BUNDLE-WRITABLE || echo bundle-ro-ok
cat ./app.txt
touch "$BERTH_SCRATCH_DIR/ok" && echo scratch-ok
echo "pid:$$"
trap 'echo got-term; exit 0' TERM
echo ready
while true; do sleep 0.05; done
"#;
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    fs::write(spec.cwd.join("app.txt"), "bundle-content\n").unwrap();
    fs::set_permissions(spec.cwd.join("app.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    // The bundle is writable by the app user on disk: only the sandbox makes it read-only.
    fs::set_permissions(&spec.cwd, fs::Permissions::from_mode(0o777)).unwrap();
    spec.scratch_dir = data.join("scratch").join("inst");
    spec.env.insert(
        "BERTH_SCRATCH_DIR".into(),
        spec.scratch_dir.display().to_string(),
    );
    spec.env.insert("DATA".into(), data.display().to_string());
    spec.user = Some(user);
    spec.sandbox = Sandbox {
        mode: SandboxMode::Always,
        hide: vec![data.clone()],
        read_only: vec![],
    };
    spec.stop_grace_ms = 5_000;
    let mut shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    assert_eq!(s.sandbox, "bwrap");
    let out = shim.wait_line("ready", Duration::from_secs(10));
    for want in [
        "hidden-ok",
        "bundle-ro-ok",
        "bundle-content",
        "scratch-ok",
        "pid:2",
    ] {
        assert!(out.contains(want), "no {want} in:\n{out}");
    }
    assert!(
        !out.lines().any(|l| l == "LEAK" || l == "BUNDLE-WRITABLE"),
        "{out}"
    );
    assert!(spec.scratch_dir.join("ok").exists());
    let (code, took) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM did not reach the sandboxed app: {took:?}"
    );
    assert!(shim.output().contains("got-term"), "{}", shim.output());
    drop_user("shimbw");
}

#[test]
fn sandbox_always_without_bwrap_fails_the_start_and_auto_falls_back() {
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo ran; exec sleep 1000"]);
    spec.sandbox.mode = SandboxMode::Always;
    let no_bwrap = [("BERTH_BWRAP", "/nonexistent/bwrap")];
    let mut shim = Shim::start_env(dir.path(), &spec, &no_bwrap);
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = shim.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(Instant::now() < deadline, "shim did not give up");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(2));
    let s = shim.state().unwrap();
    assert_eq!(s.state, "stopped");
    assert_eq!(s.child_pid, None);
    assert!(
        s.sandbox
            .starts_with("none: sandbox mode always: bwrap not found"),
        "{s:#?}"
    );
    assert!(s.last_exit.unwrap().starts_with("not started"));
    assert!(!shim.output().lines().any(|l| l == "ran"));

    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo ran; exec sleep 1000"]);
    spec.sandbox.mode = SandboxMode::Auto;
    let shim = Shim::start_env(dir.path(), &spec, &no_bwrap);
    let s = shim.running();
    assert_eq!(
        s.sandbox,
        "none: bwrap not found (Debian package bubblewrap)"
    );
    shim.wait_line("ran", Duration::from_secs(5));
}

#[test]
fn sandbox_auto_uses_bwrap_when_it_works() {
    if shim::sandbox::find_bwrap().is_none() {
        println!("SKIPPED sandbox_auto_uses_bwrap_when_it_works: no bwrap");
        return;
    }
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo pid:$$; exec sleep 1000"]);
    spec.sandbox.mode = SandboxMode::Auto;
    let shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    assert_eq!(s.sandbox, "bwrap");
    shim.wait_line("pid:2", Duration::from_secs(5));
}

#[test]
fn a_stale_process_in_the_instance_cgroup_is_killed_on_start() {
    if skip_unless_root("a_stale_process_in_the_instance_cgroup_is_killed_on_start") {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        println!("SKIPPED a_stale_process_in_the_instance_cgroup_is_killed_on_start: v1 only");
        return;
    }
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &["sleep", "1000"]);
    let parent = format!("berth-test-{}-stale", std::process::id());
    spec.limits.cgroup_parent = Some(format!("{parent}/stale"));
    let cg = Path::new("/sys/fs/cgroup/memory/")
        .join(&parent)
        .join("stale")
        .join(&spec.instance);
    fs::create_dir_all(&cg).unwrap();
    let mut stale = Command::new("sleep").arg("1000").spawn().unwrap();
    fs::write(cg.join("cgroup.procs"), stale.id().to_string()).unwrap();
    let mut shim = Shim::start(dir.path(), &spec);
    shim.running();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stale.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "stale process survived");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(shim.stop().0, Some(0));
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/pids",
    ] {
        let _ = fs::remove_dir(Path::new(root).join(&parent).join("stale"));
        let _ = fs::remove_dir(Path::new(root).join(&parent));
    }
}
