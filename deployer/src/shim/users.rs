//! One system user per app (`<prefix><app>`, e.g. `app-guestbook`), created with `useradd`.

use std::ffi::CString;
use std::io;
use std::process::Command;

use super::spec::UserSpec;

/// The longest user name `useradd` accepts.
pub const MAX_USER_NAME: usize = 32;

fn not_root() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "app users need root: berthd is not running as root, apps run as berthd's own user",
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The user name for an app, checked: lowercase letters, digits, `-` and `_`, starting with
/// a letter or `_`, at most [`MAX_USER_NAME`] bytes.
pub fn app_user_name(app: &str, prefix: &str) -> io::Result<String> {
    let name = format!("{prefix}{app}");
    let ok_first = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if name.len() > MAX_USER_NAME || !ok_first || !ok_rest {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid user name (a-z, 0-9, -, _; at most 32 bytes)"),
        ));
    }
    Ok(name)
}

/// Looks a user up by name (getpwnam_r).
pub fn lookup_user(name: &str) -> io::Result<Option<UserSpec>> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: an all-zero passwd is a valid value for a plain C struct of ints and pointers.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: cname is NUL-terminated, pwd and result
        // are live locals, buf is writable for buf.len() bytes.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        return Ok(Some(UserSpec {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

/// An admin tool's path: /usr/sbin or /sbin when there (PATH may lack them), else the name.
pub(crate) fn sbin(name: &str) -> String {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| name.to_string())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{:?} failed ({}): {}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Returns the app's system user `<prefix><app>`, creating it (system user, no home, no
/// login shell, its own group) when missing. Needs root.
pub fn ensure_app_user(app: &str, prefix: &str) -> io::Result<UserSpec> {
    let name = app_user_name(app, prefix)?;
    if !is_root() {
        return Err(not_root());
    }
    if let Some(u) = lookup_user(&name)? {
        return Ok(u);
    }
    let created = run(Command::new(sbin("useradd")).args([
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--user-group",
        &name,
    ]));
    // Another caller may have created it meanwhile (useradd exits 9): look again.
    match (lookup_user(&name)?, created) {
        (Some(u), _) => Ok(u),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(io::Error::other(format!("useradd made no user {name}"))),
    }
}

/// Removes the app's system user and its group (nothing to do if it does not exist).
/// Needs root.
pub fn remove_app_user(app: &str, prefix: &str) -> io::Result<()> {
    let name = app_user_name(app, prefix)?;
    if !is_root() {
        return Err(not_root());
    }
    if lookup_user(&name)?.is_none() {
        return Ok(());
    }
    run(Command::new(sbin("userdel")).arg(&name))
}
