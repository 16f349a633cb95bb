//! The network guard: iptables/ip6tables rules that let an app's user reach only the allowed
//! Berth ports. `OUTPUT` jumps to the chain `BERTH-APPS`, which sends the packets of each
//! guarded uid (`-m owner --uid-owner`) to that app's own chain `BERTH-U<uid>`:
//! ESTABLISHED/RELATED (answers to connections made to the app) and the allowed destinations
//! are accepted, everything else rejected (tcp-reset for TCP, port-unreachable otherwise).
//! The app's chain is replaced as a unit with `iptables-restore --noflush` (atomic).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

use super::users::sbin;

/// The chain `OUTPUT` jumps to.
pub const CHAIN: &str = "BERTH-APPS";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn tool(self) -> String {
        sbin(match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        })
    }
    fn restore(self) -> String {
        sbin(match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        })
    }
    fn unreachable(self) -> &'static str {
        match self {
            Family::V4 => "icmp-port-unreachable",
            Family::V6 => "icmp6-port-unreachable",
        }
    }
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }
    /// The families in use: IPv6 only when the kernel has it.
    fn active() -> Vec<Family> {
        if Path::new("/proc/net/if_inet6").exists() {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    }
}

fn user_chain(uid: u32) -> String {
    format!("BERTH-U{uid}")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the tool with `args`; Ok(true) on exit 0, Ok(false) on exit 1 (rule/chain missing),
/// Err otherwise.
fn ipt(fam: Family, args: &[&str]) -> io::Result<bool> {
    let out = Command::new(fam.tool())
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(io::Error::other(format!(
            "{} {}: {}",
            fam.tool(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

fn ipt_ok(fam: Family, args: &[&str]) -> io::Result<()> {
    let out = Command::new(fam.tool())
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{} {}: {}",
        fam.tool(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Feeds `rules` to `*-restore --noflush` (with `test`: only checks them).
fn restore(fam: Family, rules: &str, test: bool) -> io::Result<()> {
    let mut cmd = Command::new(fam.restore());
    cmd.args(["-w", "--noflush"]);
    if test {
        cmd.arg("--test");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{}: {}",
        fam.restore(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn chain_exists(fam: Family, chain: &str) -> io::Result<bool> {
    ipt(fam, &["-n", "-L", chain])
}

/// The destination match for `addr` in `fam`, or None if it belongs to the other family.
/// An unspecified IP (`0.0.0.0`, `::`) means the loopback addresses of both families.
fn destination(fam: Family, addr: &SocketAddr) -> Option<String> {
    let ip = addr.ip();
    if ip.is_unspecified() {
        return Some(fam.loopback().to_string());
    }
    match (fam, ip) {
        (Family::V4, IpAddr::V4(v4)) => Some(format!("{v4}/32")),
        (Family::V6, IpAddr::V6(v6)) => Some(format!("{v6}/128")),
        _ => None,
    }
}

/// The `iptables-restore` text that (re)fills the app's chain.
fn chain_rules(fam: Family, uid: u32, tcp: &[SocketAddr], udp: &[SocketAddr]) -> String {
    let chain = user_chain(uid);
    let mut r = format!("*filter\n:{chain} - [0:0]\n");
    r += &format!("-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
    for (proto, list) in [("tcp", tcp), ("udp", udp)] {
        for a in list {
            if let Some(dst) = destination(fam, a) {
                r += &format!(
                    "-A {chain} -d {dst} -p {proto} -m {proto} --dport {} -j ACCEPT\n",
                    a.port()
                );
            }
        }
    }
    r += &format!("-A {chain} -p tcp -j REJECT --reject-with tcp-reset\n");
    r += &format!("-A {chain} -j REJECT --reject-with {}\n", fam.unreachable());
    r += "COMMIT\n";
    r
}

/// Whether the guard can work here: root, iptables (and ip6tables when IPv6 is on) with the
/// owner, conntrack and REJECT extensions. Err says what is missing.
pub fn guard_available() -> Result<(), String> {
    if !is_root() {
        return Err("the network guard needs root (iptables)".into());
    }
    for fam in Family::active() {
        let probe = "*filter\n:BERTH-PROBE - [0:0]\n\
             -A BERTH-PROBE -m owner --uid-owner 65534 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
             -A BERTH-PROBE -d LOOP -p tcp -m tcp --dport 1 -j ACCEPT\n\
             -A BERTH-PROBE -p tcp -j REJECT --reject-with tcp-reset\n\
             -A BERTH-PROBE -j REJECT --reject-with UNREACH\nCOMMIT\n"
            .replace("LOOP", fam.loopback())
            .replace("UNREACH", fam.unreachable());
        ipt_ok(fam, &["-n", "-L", "OUTPUT"]).map_err(|e| e.to_string())?;
        restore(fam, &probe, true).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Guards the user `uid`: its packets may only go to `allowed_tcp` / `allowed_udp` (an
/// unspecified IP such as `0.0.0.0:5170` means that port on loopback) and answer connections
/// made to it. Idempotent: the uid's rules are replaced as a unit. Needs root.
pub fn guard_app(
    uid: u32,
    allowed_tcp: &[SocketAddr],
    allowed_udp: &[SocketAddr],
) -> io::Result<()> {
    if !is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the network guard needs root (iptables)",
        ));
    }
    if uid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to guard uid 0",
        ));
    }
    let chain = user_chain(uid);
    let uid_s = uid.to_string();
    for fam in Family::active() {
        if !chain_exists(fam, CHAIN)? {
            // Another caller may create it at the same time: only fail if it is still missing.
            if let Err(e) = ipt_ok(fam, &["-N", CHAIN]) {
                if !chain_exists(fam, CHAIN)? {
                    return Err(e);
                }
            }
        }
        // Fill the app's chain first (atomically), then hook it in.
        restore(fam, &chain_rules(fam, uid, allowed_tcp, allowed_udp), false)?;
        let jump = ["-m", "owner", "--uid-owner", &uid_s, "-j", &chain];
        if !ipt(fam, &[&["-C", CHAIN][..], &jump].concat())? {
            ipt_ok(fam, &[&["-A", CHAIN][..], &jump].concat())?;
        }
        if !ipt(fam, &["-C", "OUTPUT", "-j", CHAIN])? {
            ipt_ok(fam, &["-I", "OUTPUT", "1", "-j", CHAIN])?;
        }
    }
    Ok(())
}

/// Removes the guard of `uid` (nothing to do if there is none). Needs root.
pub fn unguard_app(uid: u32) -> io::Result<()> {
    if !is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the network guard needs root (iptables)",
        ));
    }
    let chain = user_chain(uid);
    let uid_s = uid.to_string();
    for fam in Family::active() {
        // (A jump cannot exist without its target chain; nft refuses to even look for one.)
        if !chain_exists(fam, &chain)? {
            continue;
        }
        if chain_exists(fam, CHAIN)? {
            let jump = [
                "-D",
                CHAIN,
                "-m",
                "owner",
                "--uid-owner",
                &uid_s,
                "-j",
                &chain,
            ];
            for _ in 0..16 {
                if !ipt(fam, &jump)? {
                    break;
                }
            }
        }
        ipt_ok(fam, &["-F", &chain])?;
        ipt_ok(fam, &["-X", &chain])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_text() {
        let tcp: Vec<SocketAddr> = vec![
            "127.0.0.1:5170".parse().unwrap(),
            "0.0.0.0:11211".parse().unwrap(),
        ];
        let udp: Vec<SocketAddr> = vec!["[::1]:5140".parse().unwrap()];
        let v4 = chain_rules(Family::V4, 1001, &tcp, &udp);
        assert!(v4.contains("-A BERTH-U1001 -d 127.0.0.1/32 -p tcp -m tcp --dport 5170 -j ACCEPT"));
        assert!(v4.contains("-d 127.0.0.0/8 -p tcp -m tcp --dport 11211 -j ACCEPT"));
        assert!(!v4.contains("5140"));
        let v6 = chain_rules(Family::V6, 1001, &tcp, &udp);
        assert!(v6.contains("-d ::1/128 -p udp -m udp --dport 5140 -j ACCEPT"));
        assert!(v6.contains("-d ::1/128 -p tcp -m tcp --dport 11211 -j ACCEPT"));
        assert!(!v6.contains("5170"));
        assert!(v6.ends_with("-j REJECT --reject-with icmp6-port-unreachable\nCOMMIT\n"));
    }
}
