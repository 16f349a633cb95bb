//! `berth config set|get|unset|list APP`: an app's environment (berthd's `Config` service).
//! Plain values become environment variables; secrets go to the app's secrets file and are
//! write-only: `--secret` takes their names on the command line and their values from stdin
//! (one line per name) or, on a terminal, from a prompt that does not echo.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{anyhow, bail};
use berth_api::v1 as api;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::control::{failed, print_json, Client, Conn, Svc};
use super::deploy::{follow, Kind, Renderer};

/// `berth config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
    #[command(flatten)]
    pub conn: Conn,
}

/// The `berth config` verbs.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set plain values (KEY=VALUE), or secrets (--secret KEY: the value from stdin or a
    /// prompt); makes a new release and restarts the app with it.
    Set {
        /// The app.
        app: String,
        /// KEY=VALUE pairs; with --secret, KEY names only.
        #[arg(required = true, value_name = "KEY=VALUE|KEY")]
        items: Vec<String>,
        /// Set secrets: values from stdin (one line per KEY, in order) or a prompt, never
        /// from the command line.
        #[arg(long)]
        secret: bool,
        /// Why, for the audit history.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// Print a plain value alone (secrets are write-only).
    Get {
        /// The app.
        app: String,
        /// The key.
        key: String,
    },
    /// Remove values or secrets; makes a new release and restarts the app with it.
    Unset {
        /// The app.
        app: String,
        /// The keys.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        /// Why, for the audit history.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// List plain values (KEY=VALUE) and secrets (by name only).
    List {
        /// The app.
        app: String,
    },
}

fn config_client(c: &Client) -> api::config_client::ConfigClient<Svc> {
    api::config_client::ConfigClient::with_interceptor(c.channel.clone(), c.auth.clone())
}

/// A usage error: the message on stderr, exit status 2.
fn usage(message: &str) -> ExitCode {
    eprintln!("berth: {message}");
    ExitCode::from(2)
}

/// Checks a plain config key: `[A-Z_][A-Z0-9_]*`, not `BERTH_…` (it becomes an environment
/// variable beside Berth's own).
pub fn check_plain_key(key: &str) -> Result<(), String> {
    if !is_name(key, |c| c.is_ascii_uppercase()) {
        return Err(format!(
            "{key:?} is not a valid config key: it becomes an environment variable, so use \
             upper-case letters, digits and _ (not starting with a digit), e.g. DATABASE_URL"
        ));
    }
    if key.starts_with("BERTH_") {
        return Err(format!(
            "{key}: names starting with BERTH_ are Berth's own (the runtime contract); choose \
             another"
        ));
    }
    Ok(())
}

/// Checks a secret's name: `[a-z_][a-z0-9_]*` or `[A-Z_][A-Z0-9_]*` (a key of the secrets
/// file's `[secrets]` table).
pub fn check_secret_key(key: &str) -> Result<(), String> {
    if is_name(key, |c| c.is_ascii_lowercase()) || is_name(key, |c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a valid secret name: use lower-case letters, digits and _ \
             (api_key) or the same in upper case (API_KEY), not starting with a digit"
        ))
    }
}

/// `[L_][L0-9_]*` where `letter` says what L is.
fn is_name(key: &str, letter: impl Fn(char) -> bool) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || letter(c))
        && chars.all(|c| c == '_' || c.is_ascii_digit() || letter(c))
}

/// Parses `KEY=VALUE` items of a plain `config set` (the value kept exactly, `=` and all).
pub fn plain_values(items: &[String]) -> Result<Vec<api::ConfigValue>, String> {
    items
        .iter()
        .map(|item| {
            let (key, value) = item.split_once('=').ok_or_else(|| {
                format!(
                    "{item:?} is not KEY=VALUE (for a secret, use --secret {item} and give \
                     the value on stdin or at the prompt)"
                )
            })?;
            check_plain_key(key)?;
            Ok(api::ConfigValue {
                key: key.into(),
                value: value.into(),
                secret: false,
            })
        })
        .collect()
}

/// Checks the KEY names of `config set --secret`.
pub fn secret_keys(items: &[String]) -> Result<(), String> {
    for item in items {
        if item.contains('=') {
            return Err(format!(
                "--secret takes names only, not KEY=VALUE ({:?}): a value on the command line \
                 stays in your shell history and shows in the process list; run `berth config \
                 set APP --secret {}` and give the value on stdin or at the prompt",
                item.split_once('=').map_or(item.as_str(), |(k, _)| k),
                item.split_once('=').map_or(item.as_str(), |(k, _)| k),
            ));
        }
        check_secret_key(item)?;
    }
    Ok(())
}

/// Reads one value per key from `input`, one line each, in order (the line ending removed).
pub fn read_secrets(keys: &[String], input: &mut impl BufRead) -> anyhow::Result<Vec<String>> {
    let mut values = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            bail!(
                "stdin ended after {i} of {} secret value(s): give one line per key, in the \
                 order of the keys",
                keys.len()
            );
        }
        let value = line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line);
        if value.is_empty() {
            bail!("the value of {key} (line {} of stdin) is empty", i + 1);
        }
        values.push(value.to_string());
    }
    Ok(values)
}

/// Runs `berth config …`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ConfigCommand::Set {
            app,
            items,
            secret,
            reason,
        } => set(&args.conn, app, items, *secret, reason),
        ConfigCommand::Get { app, key } => {
            if let Err(e) = check_secret_key(key) {
                return Ok(usage(&e));
            }
            let values = list_values(&args.conn, app)?;
            let v = values
                .iter()
                .find(|v| v.key == *key)
                .ok_or_else(|| anyhow!("{key} is not set for {app}"))?;
            if v.secret {
                bail!("{key} is a secret: its value is write-only");
            }
            if args.conn.json {
                print_json(&json!({"key": v.key, "value": v.value}))?;
            } else {
                println!("{}", v.value);
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Unset { app, keys, reason } => {
            if let Some(e) = keys.iter().find_map(|k| check_secret_key(k).err()) {
                return Ok(usage(&e));
            }
            let c = Client::connect(&args.conn)?;
            let req = api::UnsetConfigRequest {
                app: app.clone(),
                keys: keys.clone(),
                reason: reason.clone(),
            };
            let out = Renderer::new(args.conn.json);
            follow(&c, app, &Kind::Config, out, async {
                config_client(&c).unset_config(req).await
            })
        }
        ConfigCommand::List { app } => {
            let values = list_values(&args.conn, app)?;
            if args.conn.json {
                print_json(&Value::Array(values.iter().map(value_json).collect()))?;
            } else if values.is_empty() {
                eprintln!("{app} has no config values or secrets");
            } else {
                print!("{}", render_list(&values));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list_values(conn: &Conn, app: &str) -> anyhow::Result<Vec<api::ConfigValue>> {
    let c = Client::connect(conn)?;
    let mut values =
        c.rt.block_on(config_client(&c).list_config(api::ListConfigRequest { app: app.into() }))
            .map_err(failed)?
            .into_inner()
            .values;
    values.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(values)
}

fn set(
    conn: &Conn,
    app: &str,
    items: &[String],
    secret: bool,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let checked = if secret {
        secret_keys(items).map(|()| vec![])
    } else {
        plain_values(items)
    };
    let mut values = match checked {
        Ok(v) => v,
        Err(e) => return Ok(usage(&e)),
    };
    let c = Client::connect(conn)?;
    if secret {
        let stdin = std::io::stdin();
        let secrets = if stdin.is_terminal() {
            items
                .iter()
                .map(|k| prompt_hidden(&format!("{k}: ")))
                .collect::<anyhow::Result<Vec<_>>>()?
        } else {
            read_secrets(items, &mut stdin.lock())?
        };
        values = items
            .iter()
            .zip(secrets)
            .map(|(key, value)| api::ConfigValue {
                key: key.clone(),
                value,
                secret: true,
            })
            .collect();
    }
    let req = api::SetConfigRequest {
        app: app.into(),
        values,
        reason: reason.into(),
    };
    let out = Renderer::new(conn.json);
    follow(&c, app, &Kind::Config, out, async {
        config_client(&c).set_config(req).await
    })
}

/// `KEY=VALUE` lines, secrets as `KEY (secret)`.
pub(crate) fn render_list(values: &[api::ConfigValue]) -> String {
    values
        .iter()
        .map(|v| {
            if v.secret {
                format!("{} (secret)\n", v.key)
            } else {
                format!("{}={}\n", v.key, v.value)
            }
        })
        .collect()
}

fn value_json(v: &api::ConfigValue) -> Value {
    json!({
        "key": v.key, "secret": v.secret,
        "value": if v.secret { Value::Null } else { Value::from(v.value.clone()) },
    })
}

// -- the prompt -------------------------------------------------------------------------------

/// The terminal and its settings before echo was turned off, for the signal handler.
static SAVED: OnceLock<(libc::c_int, libc::termios)> = OnceLock::new();

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Puts the terminal's settings back, then dies of the signal as it would have.
extern "C" fn restore_and_die(sig: libc::c_int) {
    if let Some((fd, t)) = SAVED.get() {
        // SAFETY: tcsetattr is async-signal-safe; `t` is a valid termios that lives for the
        // rest of the process.
        unsafe { libc::tcsetattr(*fd, libc::TCSANOW, t) };
    }
    // SAFETY: write, signal and raise are async-signal-safe; the buffer is a static byte.
    unsafe {
        libc::write(libc::STDERR_FILENO, b"\n".as_ptr().cast(), 1);
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Echo off on a terminal while it lives; on drop, or on ctrl-c, back as it was.
struct EchoOff {
    fd: libc::c_int,
    saved: libc::termios,
    handlers: Vec<(libc::c_int, libc::sighandler_t)>,
}

impl EchoOff {
    fn new(fd: libc::c_int) -> std::io::Result<EchoOff> {
        // SAFETY: termios is plain data (all-zero is a valid value to be overwritten).
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios (a bad fd is an error return).
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let _ = SAVED.set((fd, saved));
        let handler = restore_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let handlers = SIGNALS
            .iter()
            // SAFETY: the handler only calls async-signal-safe functions.
            .map(|&sig| (sig, unsafe { libc::signal(sig, handler) }))
            .collect();
        let guard = EchoOff {
            fd,
            saved,
            handlers,
        };
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: `quiet` is a valid termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(guard)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: `saved` is the valid termios read in `new`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
        for &(sig, old) in &self.handlers {
            // SAFETY: puts back the handler that was installed before.
            unsafe { libc::signal(sig, old) };
        }
    }
}

/// Asks on stderr and reads one line from stdin (a terminal) without echoing it.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    {
        // Echo goes off before the prompt shows, so nothing typed after it is echoed.
        let _echo_off = EchoOff::new(libc::STDIN_FILENO)?;
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        std::io::stdin().lock().read_line(&mut line)?;
    }
    let value = line.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        bail!("no value given for {}", prompt.trim_end_matches(": "));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> ConfigCommand {
        let cli = Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()));
        match cli.unwrap().command {
            Command::Config(c) => c.command,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses() {
        let ConfigCommand::Set {
            app,
            items,
            secret,
            reason,
        } = parse(&["config", "set", "shop", "A=1", "B=x=y", "--reason", "r"])
        else {
            panic!()
        };
        assert_eq!(
            (app.as_str(), secret, reason.as_str()),
            ("shop", false, "r")
        );
        assert_eq!(items, ["A=1", "B=x=y"]);
        let ConfigCommand::Set { items, secret, .. } = parse(&[
            "config",
            "set",
            "shop",
            "--secret",
            "api_key",
            "DB_PASSWORD",
        ]) else {
            panic!()
        };
        assert!(secret);
        assert_eq!(items, ["api_key", "DB_PASSWORD"]);
        let ConfigCommand::Unset { keys, .. } = parse(&["config", "unset", "shop", "A", "b"])
        else {
            panic!()
        };
        assert_eq!(keys, ["A", "b"]);
        assert!(matches!(
            parse(&["config", "get", "shop", "A"]),
            ConfigCommand::Get { .. }
        ));
        assert!(matches!(
            parse(&["config", "list", "shop", "--json"]),
            ConfigCommand::List { .. }
        ));
        for bad in [
            &["config", "set", "shop"][..],
            &["config", "unset", "shop"],
            &["config", "get", "shop"],
            &["config", "frob", "shop"],
        ] {
            let e = Cli::try_parse_from(std::iter::once("berth").chain(bad.iter().copied()))
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn keys() {
        for ok in ["A", "DATABASE_URL", "_X1", "A_2_B"] {
            assert_eq!(check_plain_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a", "Api", "1A", "A-B", "A B", "É"] {
            assert!(check_plain_key(bad).is_err(), "{bad}");
        }
        assert!(check_plain_key("BERTH_APP")
            .unwrap_err()
            .contains("Berth's own"));
        assert_eq!(check_plain_key("BERTHA"), Ok(()));
        for ok in ["api_key", "_x", "k2", "API_KEY", "_"] {
            assert_eq!(check_secret_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Api_Key", "apiKEY", "2fa", "a-b", "a.b"] {
            assert!(check_secret_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_pairs() {
        let v = plain_values(&["A=1".into(), "URL=postgres://x?a=b".into(), "E=".into()]).unwrap();
        let kv: Vec<_> = v
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(kv, [("A", "1"), ("URL", "postgres://x?a=b"), ("E", "")]);
        assert!(v.iter().all(|v| !v.secret));
        assert!(plain_values(&["A".into()])
            .unwrap_err()
            .contains("--secret"));
        assert!(plain_values(&["a=1".into()]).is_err());
        assert!(plain_values(&["BERTH_X=1".into()]).is_err());
    }

    #[test]
    fn secrets_refuse_values_on_the_command_line() {
        let e = secret_keys(&["api_key=hunter2".into()]).unwrap_err();
        assert!(e.contains("shell history"), "{e}");
        assert!(
            !e.contains("hunter2"),
            "the message must not repeat the value: {e}"
        );
        assert_eq!(secret_keys(&["api_key".into(), "DB_PASS".into()]), Ok(()));
        assert!(secret_keys(&["Api".into()]).is_err());
    }

    #[test]
    fn secrets_from_a_pipe() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let feeder = std::thread::spawn(move || {
            writer
                .write_all(b"s3cr3t value\r\nsecond=with=equals\n")
                .unwrap();
        });
        let keys = vec!["api_key".to_string(), "DB_PASS".to_string()];
        let values = read_secrets(&keys, &mut std::io::BufReader::new(reader)).unwrap();
        feeder.join().unwrap();
        assert_eq!(values, ["s3cr3t value", "second=with=equals"]);

        // The last line may lack its newline.
        let values = read_secrets(&keys[..1], &mut &b"x"[..]).unwrap();
        assert_eq!(values, ["x"]);
        let e = read_secrets(&keys, &mut &b"only one\n"[..]).unwrap_err();
        assert!(e.to_string().contains("after 1 of 2"), "{e}");
        let e = read_secrets(&keys, &mut &b"\nb\n"[..]).unwrap_err();
        assert!(e.to_string().contains("api_key"), "{e}");
    }

    fn lflag(fd: libc::c_int) -> libc::tcflag_t {
        // SAFETY: termios is plain data.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid, writable termios.
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag
    }

    #[test]
    fn echo_off_on_a_terminal_and_back() {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: both out-pointers are valid; the other arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        assert_ne!(lflag(slave) & libc::ECHO, 0);
        {
            let _off = EchoOff::new(slave).unwrap();
            assert_eq!(lflag(slave) & libc::ECHO, 0);
        }
        assert_ne!(lflag(slave) & libc::ECHO, 0);
        assert!(EchoOff::new(-1).is_err());
        // SAFETY: both are fds openpty opened for this test.
        unsafe {
            libc::close(slave);
            libc::close(master);
        }
    }

    #[test]
    fn list_text_and_json() {
        let values = vec![
            api::ConfigValue {
                key: "MODE".into(),
                value: "prod".into(),
                secret: false,
            },
            api::ConfigValue {
                key: "moderator_key".into(),
                value: String::new(),
                secret: true,
            },
        ];
        assert_eq!(render_list(&values), "MODE=prod\nmoderator_key (secret)\n");
        assert_eq!(value_json(&values[0])["value"], "prod");
        assert_eq!(value_json(&values[1])["value"], Value::Null);
        assert_eq!(value_json(&values[1])["secret"], true);
    }
}

/// `config` against a stand-in `Config` service over real gRPC on a socket.
#[cfg(test)]
mod wire_tests {
    use std::sync::{Arc, Mutex};

    use api::config_server::{Config, ConfigServer};
    use futures_util::stream::{self, Iter};
    use tonic::{Request, Response, Status};

    use super::*;

    type Progresses = Iter<std::vec::IntoIter<Result<api::Progress, Status>>>;

    struct StandIn {
        sets: Arc<Mutex<Vec<api::SetConfigRequest>>>,
    }

    fn released() -> Progresses {
        stream::iter(vec![Ok(api::Progress {
            phase: "done".into(),
            done: true,
            release: Some(api::Release {
                id: "v2".into(),
                version: "1.0.0".into(),
                state: "live".into(),
                ..Default::default()
            }),
            ..Default::default()
        })])
    }

    #[tonic::async_trait]
    impl Config for StandIn {
        type SetConfigStream = Progresses;
        async fn set_config(
            &self,
            request: Request<api::SetConfigRequest>,
        ) -> Result<Response<Progresses>, Status> {
            self.sets.lock().unwrap().push(request.into_inner());
            Ok(Response::new(released()))
        }
        type UnsetConfigStream = Progresses;
        async fn unset_config(
            &self,
            _: Request<api::UnsetConfigRequest>,
        ) -> Result<Response<Progresses>, Status> {
            Ok(Response::new(released()))
        }
        async fn list_config(
            &self,
            _: Request<api::ListConfigRequest>,
        ) -> Result<Response<api::ListConfigResponse>, Status> {
            Ok(Response::new(api::ListConfigResponse {
                values: vec![
                    api::ConfigValue {
                        key: "MODE".into(),
                        value: "prod".into(),
                        secret: false,
                    },
                    api::ConfigValue {
                        key: "api_key".into(),
                        value: String::new(),
                        secret: true,
                    },
                ],
            }))
        }
    }

    fn serve() -> (Conn, Arc<Mutex<Vec<api::SetConfigRequest>>>) {
        let sets = Arc::new(Mutex::new(Vec::new()));
        let service = StandIn { sets: sets.clone() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                tonic::transport::Server::builder()
                    .add_service(ConfigServer::new(service))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                    .await
                    .unwrap();
            });
        });
        let conn = Conn {
            server: format!("http://{}", rx.recv().unwrap()),
            token: Some("t".into()),
            token_file: None,
            json: true,
            ca_file: None,
        };
        (conn, sets)
    }

    fn config(conn: &Conn, command: ConfigCommand) -> anyhow::Result<ExitCode> {
        run(&ConfigArgs {
            command,
            conn: conn.clone(),
        })
    }

    #[test]
    fn set_get_and_secrets() {
        let (conn, sets) = serve();
        let code = config(
            &conn,
            ConfigCommand::Set {
                app: "shop".into(),
                items: vec!["MODE=prod".into(), "URL=a=b".into()],
                secret: false,
                reason: "why".into(),
            },
        )
        .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let sent = sets.lock().unwrap().pop().unwrap();
        assert_eq!((sent.app.as_str(), sent.reason.as_str()), ("shop", "why"));
        let kv: Vec<_> = sent
            .values
            .iter()
            .map(|v| (v.key.as_str(), v.value.as_str(), v.secret))
            .collect();
        assert_eq!(kv, [("MODE", "prod", false), ("URL", "a=b", false)]);

        // Refused before anything is sent: exit 2.
        let code = config(
            &conn,
            ConfigCommand::Set {
                app: "shop".into(),
                items: vec!["api_key=hunter2".into()],
                secret: true,
                reason: String::new(),
            },
        )
        .unwrap();
        assert_eq!(code, ExitCode::from(2));
        assert!(sets.lock().unwrap().is_empty());

        let get = |key: &str| {
            config(
                &conn,
                ConfigCommand::Get {
                    app: "shop".into(),
                    key: key.into(),
                },
            )
        };
        assert_eq!(get("MODE").unwrap(), ExitCode::SUCCESS);
        assert_eq!(
            get("api_key").unwrap_err().to_string(),
            "api_key is a secret: its value is write-only"
        );
        assert_eq!(
            get("NOPE").unwrap_err().to_string(),
            "NOPE is not set for shop"
        );
        let code = config(
            &conn,
            ConfigCommand::Unset {
                app: "shop".into(),
                keys: vec!["MODE".into()],
                reason: String::new(),
            },
        )
        .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
    }
}
