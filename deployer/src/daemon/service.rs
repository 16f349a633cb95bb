//! The control API's gRPC services over [`State`], with the callers' rights checked first.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use berth_api::v1 as api;
use berth_common::shutdown::ShutdownSignal;
use berth_common::tenants::{hash_token, OperatorTokens, Tenant, TenantSet};
use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::state::{toml_value, AppRecord, State, StateError, TokenRecord};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An operator (id: the first 12 hex digits of the token's SHA-256).
    Operator(String),
    /// An app's token.
    App {
        /// The app.
        app: String,
        /// The token's id.
        token: String,
    },
    /// A Berth service reading the registry.
    Service,
}

impl Caller {
    /// How the audit history names the caller.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator(id) => format!("operator:{id}"),
            Caller::App { app, token } => format!("app:{app}:{token}"),
            Caller::Service => "service".into(),
        }
    }
}

/// The services' shared parts.
#[derive(Debug, Clone)]
pub struct Control {
    pub(crate) state: Arc<State>,
    pub(crate) engine: Arc<super::engine::Engine>,
    operators: Arc<OperatorTokens>,
    services: Arc<OperatorTokens>,
    shutdown: ShutdownSignal,
}

pub(crate) fn status(e: StateError) -> Status {
    match e {
        StateError::Invalid(m) => Status::invalid_argument(m),
        StateError::NotFound(m) => Status::not_found(m),
        StateError::Exists(m) => Status::already_exists(m),
        StateError::Storage(m) => {
            tracing::error!("state: {m}");
            Status::internal(format!("berthd could not store the change: {m}"))
        }
    }
}

impl Control {
    /// Serves `state` to the holders of `operators` and `services` tokens (and apps' own).
    pub fn new(
        state: Arc<State>,
        engine: Arc<super::engine::Engine>,
        operators: OperatorTokens,
        services: OperatorTokens,
        shutdown: ShutdownSignal,
    ) -> Self {
        Control {
            state,
            engine,
            operators: Arc::new(operators),
            services: Arc::new(services),
            shutdown,
        }
    }

    /// The caller of `req`, from its `authorization: Bearer` metadata.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let header = req.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("no token: send authorization: Bearer <token>")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| Status::unauthenticated("authorization must be Bearer <token>"))?;
        self.caller_of_token(token)
    }

    /// Who holds `token`.
    pub fn caller_of_token(&self, token: &str) -> Result<Caller, Status> {
        if self.operators.verify(token) {
            return Ok(Caller::Operator(
                hex::encode(hash_token(token).sha256)[..12].to_string(),
            ));
        }
        if self.services.verify(token) {
            return Ok(Caller::Service);
        }
        match self.state.token_owner(token) {
            Some((app, id)) => Ok(Caller::App { app, token: id }),
            None => Err(Status::unauthenticated("unknown token")),
        }
    }

    pub(crate) fn operator<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        match self.caller(req)? {
            c @ Caller::Operator(_) => Ok(c),
            _ => Err(Status::permission_denied("only operators may do this")),
        }
    }

    /// The caller, if it may act on `app` (operators, or that app's own token).
    pub(crate) fn for_app<T>(&self, req: &Request<T>, app: &str) -> Result<Caller, Status> {
        match self.caller(req)? {
            c @ Caller::Operator(_) => Ok(c),
            c @ Caller::App { .. } if matches!(&c, Caller::App { app: a, .. } if a == app) => Ok(c),
            // The same answer whether the app exists or not.
            _ => Err(Status::permission_denied(format!(
                "this token may not act on app {app:?}"
            ))),
        }
    }

    fn app_message(&self, app: &AppRecord) -> Result<api::App, Status> {
        let tokens = self.state.tokens_of(&app.name).map_err(status)?;
        Ok(api::App {
            name: app.name.clone(),
            created_ms: app.created_ms,
            limits: effective_limits(app)?,
            token_count: tokens.len() as u32,
        })
    }
}

/// Every limit of the app with defaults filled in, read back through the shared tenant
/// parser so the answer shows exactly what services enforce.
fn effective_limits(app: &AppRecord) -> Result<HashMap<String, String>, Status> {
    let mut text = format!("[[app]]\nname = \"{}\"\ntoken = \"x\"\n", app.name);
    for (k, v) in &app.limits {
        text.push_str(&format!("{k} = {}\n", toml_value(v)));
    }
    let set = TenantSet::from_toml_str(&text).map_err(|e| Status::internal(e.to_string()))?;
    let tenant: &Tenant = set
        .get(&app.name)
        .ok_or_else(|| Status::internal("the tenant vanished"))?;
    let value = toml::Value::try_from(tenant).map_err(|e| Status::internal(e.to_string()))?;
    let mut out = HashMap::new();
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            if k == "name" || k == "tokens" {
                continue;
            }
            let shown = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(k, shown);
        }
    }
    // What the operator wrote, as written ("64MiB" rather than a byte count).
    for (k, v) in &app.limits {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn token_message(t: &TokenRecord) -> api::Token {
    api::Token {
        id: t.id.clone(),
        app: t.app.clone(),
        label: t.label.clone(),
        created_ms: t.created_ms,
    }
}

fn limits_map(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

#[tonic::async_trait]
impl api::apps_server::Apps for Control {
    async fn create_app(
        &self,
        req: Request<api::CreateAppRequest>,
    ) -> Result<Response<api::CreateAppResponse>, Status> {
        let caller = self.operator(&req)?;
        let r = req.into_inner();
        let label = if r.token_label.is_empty() {
            "first token".to_string()
        } else {
            r.token_label
        };
        let (app, token, secret) = self
            .state
            .create_app(&caller.actor(), &r.name, limits_map(r.limits), &label)
            .await
            .map_err(status)?;
        tracing::info!(app = %app.name, actor = %caller.actor(), "app created");
        Ok(Response::new(api::CreateAppResponse {
            app: Some(self.app_message(&app)?),
            token: Some(token_message(&token)),
            secret,
        }))
    }

    async fn list_apps(
        &self,
        req: Request<api::ListAppsRequest>,
    ) -> Result<Response<api::ListAppsResponse>, Status> {
        let caller = self.caller(&req)?;
        let apps = self.state.apps().map_err(status)?;
        let mut out = Vec::new();
        for a in &apps {
            let visible = match &caller {
                Caller::Operator(_) => true,
                Caller::App { app, .. } => *app == a.name,
                Caller::Service => false,
            };
            if visible {
                out.push(self.app_message(a)?);
            }
        }
        Ok(Response::new(api::ListAppsResponse { apps: out }))
    }

    async fn get_app(
        &self,
        req: Request<api::GetAppRequest>,
    ) -> Result<Response<api::App>, Status> {
        let name = req.get_ref().name.clone();
        self.for_app(&req, &name)?;
        let app = self.state.app(&name).map_err(status)?;
        Ok(Response::new(self.app_message(&app)?))
    }

    async fn set_limits(
        &self,
        req: Request<api::SetLimitsRequest>,
    ) -> Result<Response<api::App>, Status> {
        let caller = self.operator(&req)?;
        let r = req.into_inner();
        let app = self
            .state
            .set_limits(&caller.actor(), &r.name, limits_map(r.limits), r.reset)
            .await
            .map_err(status)?;
        // The router enforces some of them (body size, time, concurrency).
        self.engine.routes_changed();
        Ok(Response::new(self.app_message(&app)?))
    }

    async fn destroy_app(
        &self,
        req: Request<api::DestroyAppRequest>,
    ) -> Result<Response<api::DestroyAppResponse>, Status> {
        let caller = self.operator(&req)?;
        let r = req.into_inner();
        if r.confirm != r.name {
            return Err(Status::failed_precondition(format!(
                "destroying {:?} needs its name repeated as confirmation",
                r.name
            )));
        }
        self.state.app(&r.name).map_err(status)?;
        self.engine
            .destroy(&r.name)
            .await
            .map_err(|e| Status::internal(format!("removing {}'s data: {e:#}", r.name)))?;
        self.state
            .destroy_app(&caller.actor(), &r.name)
            .await
            .map_err(status)?;
        tracing::warn!(app = %r.name, actor = %caller.actor(), "app destroyed");
        Ok(Response::new(api::DestroyAppResponse {}))
    }
}

#[tonic::async_trait]
impl api::tokens_server::Tokens for Control {
    async fn create_token(
        &self,
        req: Request<api::CreateTokenRequest>,
    ) -> Result<Response<api::CreateTokenResponse>, Status> {
        let app = req.get_ref().app.clone();
        let caller = self.for_app(&req, &app)?;
        let label = req.into_inner().label;
        let (token, secret) = self
            .state
            .create_token(&caller.actor(), &app, &label)
            .await
            .map_err(status)?;
        Ok(Response::new(api::CreateTokenResponse {
            token: Some(token_message(&token)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<api::ListTokensRequest>,
    ) -> Result<Response<api::ListTokensResponse>, Status> {
        let app = req.get_ref().app.clone();
        self.for_app(&req, &app)?;
        self.state.app(&app).map_err(status)?;
        let tokens = self.state.tokens_of(&app).map_err(status)?;
        Ok(Response::new(api::ListTokensResponse {
            tokens: tokens.iter().map(token_message).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<api::RevokeTokenRequest>,
    ) -> Result<Response<api::RevokeTokenResponse>, Status> {
        let app = req.get_ref().app.clone();
        let caller = self.for_app(&req, &app)?;
        let id = req.into_inner().id;
        self.state
            .revoke_token(&caller.actor(), &app, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(api::RevokeTokenResponse {}))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<api::TenantsState, Status>> + Send>>;

#[tonic::async_trait]
impl api::registry_server::Registry for Control {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<api::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        match self.caller(&req)? {
            Caller::Operator(_) | Caller::Service => {}
            Caller::App { .. } => {
                return Err(Status::permission_denied(
                    "the registry is for operators and Berth services",
                ))
            }
        }
        let known = match req.get_ref().known_generation {
            0 => None,
            k => Some(k),
        };
        let rx = self.state.registry();
        let stop = self.shutdown.clone();
        let stream = futures_util::stream::unfold(
            (rx, known, stop),
            |(mut rx, known, mut stop)| async move {
                loop {
                    let current = rx.borrow_and_update().clone();
                    if known.is_none_or(|k| current.generation > k) {
                        let msg = api::TenantsState {
                            generation: current.generation,
                            tenants_toml: current.tenants_toml.clone(),
                        };
                        return Some((Ok(msg), (rx, Some(current.generation), stop)));
                    }
                    // Ends with berthd, so a graceful shutdown is not held up by watchers.
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return None },
                        _ = stop.recv() => return None,
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl api::events_server::Events for Control {
    async fn list_events(
        &self,
        req: Request<api::ListEventsRequest>,
    ) -> Result<Response<api::ListEventsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.get_ref();
        let app = match (&caller, r.app.as_str()) {
            (Caller::Operator(_), "") => None,
            (Caller::App { app, .. }, "") => Some(app.clone()),
            (_, a) => {
                self.for_app(&req, a)?;
                Some(a.to_string())
            }
        };
        let limit = match r.limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let events = self
            .state
            .events(app.as_deref(), r.before_seq, limit)
            .map_err(status)?;
        Ok(Response::new(api::ListEventsResponse {
            events: events
                .into_iter()
                .map(|e| api::Event {
                    seq: e.seq,
                    at_ms: e.at_ms,
                    actor: e.actor,
                    app: e.app,
                    action: e.action,
                    detail: e.detail,
                })
                .collect(),
        }))
    }
}
