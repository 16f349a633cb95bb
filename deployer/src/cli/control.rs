//! The verbs that talk to berthd's control API: `apps`, `tokens`, `quota`, `events`,
//! `registry`. Each opens one connection, makes its calls, prints, and exits.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use berth_api::v1 as api;
use clap::{Args, Subcommand};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Where berthd is and who we are.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// berthd's control API.
    #[arg(
        long,
        env = "BERTH_SERVER",
        default_value = "http://127.0.0.1:7100",
        global = true
    )]
    pub server: String,
    /// An operator token or an app's token.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the token (e.g. berthd's data_dir/operator-token).
    #[arg(long, env = "BERTH_TOKEN_FILE", value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// For an https:// server: a PEM file of the CA (or the self-signed certificate) to
    /// trust besides the system's roots.
    #[arg(long, env = "BERTH_CA_FILE", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub(crate) type Svc = InterceptedService<Channel, Auth>;

pub(crate) struct Client {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) channel: Channel,
    pub(crate) auth: Auth,
}

impl Client {
    pub(crate) fn connect(conn: &Conn) -> anyhow::Result<Client> {
        let token = match (&conn.token, &conn.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?
                .trim()
                .to_string(),
            (None, None) => {
                return Err(anyhow!(
                    "no token: pass --token or --token-file, or set BERTH_TOKEN or \
                     BERTH_TOKEN_FILE (an operator's, or the app's own)"
                ))
            }
        };
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("the token has characters a header cannot carry"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut endpoint = Channel::from_shared(conn.server.clone())
            .map_err(|e| anyhow!("--server {}: {e}", conn.server))?
            .connect_timeout(std::time::Duration::from_secs(5));
        if conn.server.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &conn.ca_file {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("reading the CA file {}", ca.display()))?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| anyhow!("TLS for {}: {e}", conn.server))?;
        } else if conn.ca_file.is_some() {
            return Err(anyhow!(
                "--ca-file is for https:// servers; --server is {}",
                conn.server
            ));
        }
        let channel = rt.block_on(endpoint.connect()).map_err(|e| {
            // tonic's "transport error" alone says little: add its causes.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why.push_str(&format!(": {s}"));
                source = s.source();
            }
            anyhow!("cannot reach berthd at {}: {why}", conn.server)
        })?;
        Ok(Client {
            rt,
            channel,
            auth: Auth(header),
        })
    }

    fn apps(&self) -> api::apps_client::AppsClient<Svc> {
        api::apps_client::AppsClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    fn tokens(&self) -> api::tokens_client::TokensClient<Svc> {
        api::tokens_client::TokensClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    fn events(&self) -> api::events_client::EventsClient<Svc> {
        api::events_client::EventsClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    fn registry(&self) -> api::registry_client::RegistryClient<Svc> {
        api::registry_client::RegistryClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
    }
}

pub(crate) fn failed(s: Status) -> anyhow::Error {
    let what = match s.code() {
        Code::Unauthenticated => "not authenticated",
        Code::PermissionDenied => "not allowed",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::InvalidArgument => "invalid",
        Code::FailedPrecondition => "refused",
        Code::Unavailable => "berthd is unavailable",
        _ => "failed",
    };
    anyhow!("{what}: {}", s.message())
}

/// `key=value` pairs.
fn pairs(items: &[String]) -> anyhow::Result<HashMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| anyhow!("{kv:?} is not key=value (e.g. cache_bytes=64MiB)"))
        })
        .collect()
}

pub(crate) fn when(ms: i64) -> String {
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn app_json(a: &api::App) -> serde_json::Value {
    let limits: std::collections::BTreeMap<_, _> = a.limits.iter().collect();
    serde_json::json!({
        "name": a.name, "created": when(a.created_ms), "tokens": a.token_count, "limits": limits,
    })
}

fn token_json(t: &api::Token) -> serde_json::Value {
    serde_json::json!({"id": t.id, "app": t.app, "label": t.label, "created": when(t.created_ms)})
}

pub(crate) fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_app(a: &api::App) {
    println!("app      {}", a.name);
    println!("created  {}", when(a.created_ms));
    println!("tokens   {}", a.token_count);
    println!("limits");
    let mut limits: Vec<_> = a.limits.iter().collect();
    limits.sort();
    for (k, v) in limits {
        println!("  {k:<24} {v}");
    }
}

// -- apps -------------------------------------------------------------------------------------

/// `berth apps`.
#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(subcommand)]
    command: AppsCommand,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app (operators): its namespaces' limits and its first token, shown once.
    Create {
        /// The app's name.
        name: String,
        /// A limit other than the default, e.g. --limit cache_bytes=16MiB (repeatable).
        #[arg(long = "limit", value_name = "KEY=VALUE")]
        limits: Vec<String>,
        /// A label for the first token (shown by `berth tokens list`).
        #[arg(long, value_name = "LABEL", default_value = "first token")]
        token_label: String,
    },
    /// List the apps this token may see.
    List,
    /// Show one app and its limits.
    Info {
        /// The app.
        name: String,
    },
    /// Destroy an app (operators); asks for the name again.
    Destroy {
        /// The app.
        name: String,
        /// The name again, instead of answering the question (for scripts).
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
    },
}

/// Runs `berth apps …`.
pub fn apps(args: &AppsArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let json = args.conn.json;
    match &args.command {
        AppsCommand::Create {
            name,
            limits,
            token_label,
        } => {
            let req = api::CreateAppRequest {
                name: name.clone(),
                limits: pairs(limits)?,
                token_label: token_label.clone(),
            };
            let r =
                c.rt.block_on(c.apps().create_app(req))
                    .map_err(failed)?
                    .into_inner();
            let app = r.app.unwrap_or_default();
            let token = r.token.unwrap_or_default();
            if json {
                print_json(&serde_json::json!({
                    "app": app_json(&app), "token": token_json(&token), "secret": r.secret,
                }))?;
            } else {
                println!("created app {}", app.name);
                println!("its token ({}, shown this once): {}", token.id, r.secret);
            }
        }
        AppsCommand::List => {
            let r =
                c.rt.block_on(c.apps().list_apps(api::ListAppsRequest {}))
                    .map_err(failed)?
                    .into_inner();
            if json {
                print_json(&serde_json::Value::Array(
                    r.apps.iter().map(app_json).collect(),
                ))?;
            } else if r.apps.is_empty() {
                println!("no apps");
            } else {
                println!("{:<28} {:<22} {:>6}", "APP", "CREATED", "TOKENS");
                for a in &r.apps {
                    println!(
                        "{:<28} {:<22} {:>6}",
                        a.name,
                        when(a.created_ms),
                        a.token_count
                    );
                }
            }
        }
        AppsCommand::Info { name } => {
            let a =
                c.rt.block_on(c.apps().get_app(api::GetAppRequest { name: name.clone() }))
                    .map_err(failed)?
                    .into_inner();
            if json {
                print_json(&app_json(&a))?;
            } else {
                print_app(&a);
            }
        }
        AppsCommand::Destroy { name, confirm } => {
            let confirm = match confirm {
                Some(c) => c.clone(),
                None => {
                    eprint!(
                        "This removes app {name} and its tokens at once. Type its name to \
                         confirm: "
                    );
                    std::io::stderr().flush()?;
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim().to_string()
                }
            };
            c.rt.block_on(c.apps().destroy_app(api::DestroyAppRequest {
                name: name.clone(),
                confirm,
            }))
            .map_err(failed)?;
            if json {
                print_json(&serde_json::json!({"destroyed": name}))?;
            } else {
                println!("destroyed app {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// -- tokens -----------------------------------------------------------------------------------

/// `berth tokens`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Make another token for an app (rotation); shown once.
    Create {
        /// The app.
        app: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List an app's tokens (ids and labels; never the tokens).
    List {
        /// The app.
        app: String,
    },
    /// Revoke a token: every service stops accepting it.
    Revoke {
        /// The app.
        app: String,
        /// The token's id (from `berth tokens list`).
        id: String,
    },
}

/// Runs `berth tokens …`.
pub fn tokens(args: &TokensArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let json = args.conn.json;
    match &args.command {
        TokensCommand::Create { app, label } => {
            let r =
                c.rt.block_on(c.tokens().create_token(api::CreateTokenRequest {
                    app: app.clone(),
                    label: label.clone(),
                }))
                .map_err(failed)?
                .into_inner();
            let t = r.token.unwrap_or_default();
            if json {
                print_json(&serde_json::json!({"token": token_json(&t), "secret": r.secret}))?;
            } else {
                println!(
                    "new token {} for {app} (shown this once): {}",
                    t.id, r.secret
                );
            }
        }
        TokensCommand::List { app } => {
            let r =
                c.rt.block_on(
                    c.tokens()
                        .list_tokens(api::ListTokensRequest { app: app.clone() }),
                )
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&serde_json::Value::Array(
                    r.tokens.iter().map(token_json).collect(),
                ))?;
            } else {
                println!("{:<14} {:<22} LABEL", "ID", "CREATED");
                for t in &r.tokens {
                    println!("{:<14} {:<22} {}", t.id, when(t.created_ms), t.label);
                }
            }
        }
        TokensCommand::Revoke { app, id } => {
            c.rt.block_on(c.tokens().revoke_token(api::RevokeTokenRequest {
                app: app.clone(),
                id: id.clone(),
            }))
            .map_err(failed)?;
            if json {
                print_json(&serde_json::json!({"revoked": id, "app": app}))?;
            } else {
                println!("revoked token {id} of {app}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// -- quota, events, registry ------------------------------------------------------------------

/// `berth quota APP [KEY=VALUE…] [--reset KEY…]`.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// The app.
    app: String,
    /// Limits to set, e.g. blob_bytes=10GiB log_rate=500 (operators).
    #[arg(value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Limits to put back to their defaults.
    #[arg(long, value_name = "KEY")]
    reset: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `berth quota`: shows the limits, or sets them.
pub fn quota(args: &QuotaArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let app = if args.set.is_empty() && args.reset.is_empty() {
        c.rt.block_on(c.apps().get_app(api::GetAppRequest {
            name: args.app.clone(),
        }))
    } else {
        c.rt.block_on(c.apps().set_limits(api::SetLimitsRequest {
            name: args.app.clone(),
            limits: pairs(&args.set)?,
            reset: args.reset.clone(),
        }))
    }
    .map_err(failed)?
    .into_inner();
    if args.conn.json {
        print_json(&app_json(&app))?;
    } else {
        print_app(&app);
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth events [APP]`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The app (default: every app the token may see).
    app: Option<String>,
    /// How many, newest first.
    #[arg(short = 'n', long, default_value_t = 50)]
    num: u32,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `berth events`: the audit history, newest first.
pub fn events(args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let r =
        c.rt.block_on(c.events().list_events(api::ListEventsRequest {
            app: args.app.clone().unwrap_or_default(),
            before_seq: 0,
            limit: args.num,
        }))
        .map_err(failed)?
        .into_inner();
    if args.conn.json {
        let events: Vec<_> = r
            .events
            .iter()
            .map(|e| {
                serde_json::json!({"seq": e.seq, "at": when(e.at_ms), "actor": e.actor,
                    "app": e.app, "action": e.action, "detail": e.detail})
            })
            .collect();
        print_json(&serde_json::Value::Array(events))?;
    } else {
        for e in &r.events {
            println!(
                "{}  {:<14} {:<14} {:<26} {}",
                when(e.at_ms),
                e.app,
                e.action,
                e.actor,
                e.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth registry show`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(subcommand)]
    command: RegistryCommand,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Print the tenants state services receive (TOML, token hashes only).
    Show,
}

/// Runs `berth registry show`: the first message of `Registry.Watch`.
pub fn registry(args: &RegistryArgs) -> anyhow::Result<ExitCode> {
    let RegistryCommand::Show = args.command;
    let c = Client::connect(&args.conn)?;
    let state = c.rt.block_on(async {
        let mut stream = c
            .registry()
            .watch(api::WatchRequest {
                known_generation: 0,
            })
            .await?
            .into_inner();
        stream
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("the stream ended"))
    });
    let state = state.map_err(failed)?;
    if args.conn.json {
        print_json(&serde_json::json!({
            "generation": state.generation, "tenants_toml": state.tenants_toml,
        }))?;
    } else {
        println!("# generation {}", state.generation);
        print!("{}", state.tenants_toml);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(when(0), "1970-01-01 00:00:00Z");
        assert_eq!(when(1_795_645_571_000), "2026-11-25 22:26:11Z");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn key_value_pairs() {
        let p = pairs(&["a=1".into(), " b = 2MiB ".into()]).unwrap();
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "2MiB");
        assert!(pairs(&["nokey".into()]).is_err());
        assert!(pairs(&["=x".into()]).is_err());
    }
}
