//! The `Deploys` and `Config` gRPC services: uploads, and changes run by the engine with
//! their progress streamed back.

use std::pin::Pin;
use std::sync::Arc;

use berth_api::v1 as api;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use super::engine::{Engine, Fail, Outcome, Tx};
use super::service::{status, Control};

type ProgressStream = Pin<Box<dyn Stream<Item = Result<api::Progress, Status>> + Send>>;

/// Runs `work` in its own task (so it finishes even if the caller goes away) and streams
/// its progress, ending with a `done` message.
fn run_change<F, Fut>(engine: Arc<Engine>, app: String, work: F) -> ProgressStream
where
    F: FnOnce(Arc<Engine>, Tx) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Outcome, Fail>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<api::Progress>();
    tokio::spawn(async move {
        let outcome = work(engine.clone(), tx.clone()).await;
        let last = match outcome {
            Ok(Outcome::Released(r)) => api::Progress {
                phase: "done".into(),
                message: format!("v{} is live: {} {}", r.number, app, r.version),
                done: true,
                release: Some(super::engine::run_release_message(&r)),
                ..Default::default()
            },
            Ok(Outcome::Noop(r)) => api::Progress {
                phase: "done".into(),
                message: format!(
                    "{app} {} is live already with the same content; nothing to do",
                    r.version
                ),
                done: true,
                noop: true,
                release: Some(super::engine::run_release_message(&r)),
                ..Default::default()
            },
            Ok(Outcome::Checked(v)) => api::Progress {
                phase: "done".into(),
                message: format!("{app} {} passed every check; not promoted", v.version),
                done: true,
                ..Default::default()
            },
            Ok(Outcome::Done(m)) => api::Progress {
                phase: "done".into(),
                message: m,
                done: true,
                ..Default::default()
            },
            Err(f) => api::Progress {
                phase: f.phase.into(),
                message: format!("{} failed", f.phase),
                done: true,
                error: f.message,
                ..Default::default()
            },
        };
        let _ = tx.send(last);
    });
    let stream = tokio_stream_from(rx).map(Ok);
    Box::pin(stream)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<api::Progress>,
) -> impl Stream<Item = api::Progress> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn valid_sha(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tonic::async_trait]
impl api::deploys_server::Deploys for Control {
    async fn upload_bundle(
        &self,
        req: Request<Streaming<api::BundleChunk>>,
    ) -> Result<Response<api::UploadBundleResponse>, Status> {
        let caller = self.caller(&req)?;
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an upload needs at least one message"))?;
        let app = first.app.clone();
        match &caller {
            super::service::Caller::Operator(_) => {}
            super::service::Caller::App { app: own, .. } if *own == app => {}
            _ => {
                return Err(Status::permission_denied(format!(
                    "this token may not deploy app {app:?}"
                )))
            }
        }
        berth_common::tenants::AppName::parse(&app)
            .map_err(|e| Status::invalid_argument(format!("app: {e}")))?;
        let sha = first.sha256.to_ascii_lowercase();
        if !valid_sha(&sha) {
            return Err(Status::invalid_argument("sha256: 64 lowercase hex digits"));
        }
        let max = self.engine.cfg.apps.max_bundle_bytes.as_u64();
        if first.size > max {
            return Err(Status::invalid_argument(format!(
                "the bundle is {} bytes; at most {max} are accepted (apps.max_bundle_bytes)",
                first.size
            )));
        }
        let path = self.engine.bundle_path(&sha);
        if path.exists() {
            return Ok(Response::new(api::UploadBundleResponse {
                sha256: sha,
                size: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                existed: true,
            }));
        }
        let tmp = path.with_extension(format!("part-{}", rand::random::<u32>()));
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Status::internal(format!("storing the bundle: {e}")))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut chunk = Some(first);
        let result: Result<(), Status> = async {
            while let Some(c) = chunk.take() {
                size += c.data.len() as u64;
                if size > max {
                    return Err(Status::invalid_argument(format!(
                        "the bundle is over {max} bytes (apps.max_bundle_bytes)"
                    )));
                }
                hasher.update(&c.data);
                f.write_all(&c.data)
                    .await
                    .map_err(|e| Status::internal(format!("storing the bundle: {e}")))?;
                chunk = stream.message().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let got = hex::encode(hasher.finalize());
        if got != sha {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(Status::invalid_argument(format!(
                "the bundle's SHA-256 is {got}, not the {sha} announced: the upload was damaged; try again"
            )));
        }
        f.sync_all()
            .await
            .map_err(|e| Status::internal(format!("storing the bundle: {e}")))?;
        drop(f);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| Status::internal(format!("storing the bundle: {e}")))?;
        Ok(Response::new(api::UploadBundleResponse {
            sha256: sha,
            size,
            existed: false,
        }))
    }

    type DeployStream = ProgressStream;

    async fn deploy(
        &self,
        req: Request<api::DeployRequest>,
    ) -> Result<Response<Self::DeployStream>, Status> {
        let r = req.get_ref().clone();
        let caller = self.for_app(&req, &r.app)?;
        self.state.app(&r.app).map_err(status)?;
        let actor = caller.actor();
        let app = r.app.clone();
        Ok(Response::new(run_change(
            self.engine.clone(),
            app,
            move |e, tx| async move {
                e.deploy(
                    &actor,
                    &r.app,
                    &r.bundle_sha256.to_ascii_lowercase(),
                    r.no_promote,
                    r.allow_downgrade,
                    &r.reason,
                    &tx,
                )
                .await
            },
        )))
    }

    async fn list_versions(
        &self,
        req: Request<api::ListVersionsRequest>,
    ) -> Result<Response<api::ListVersionsResponse>, Status> {
        let app = req.get_ref().app.clone();
        self.for_app(&req, &app)?;
        self.state.app(&app).map_err(status)?;
        let mut versions = self.state.versions(&app).map_err(status)?;
        versions.sort_by(|a, b| {
            let va = semver::Version::parse(&a.version).ok();
            let vb = semver::Version::parse(&b.version).ok();
            vb.cmp(&va)
        });
        let live = self.engine.live_version(&app);
        let instances = self.state.instances(&app).map_err(status)?;
        // Versions that were live once: in a release that is not a failed candidate.
        let was_live: std::collections::HashSet<String> = self
            .state
            .releases(&app)
            .map_err(status)?
            .into_iter()
            .filter(|r| r.state != "failed" && r.state != "candidate")
            .map(|r| r.version)
            .collect();
        Ok(Response::new(api::ListVersionsResponse {
            versions: versions
                .into_iter()
                .map(|v| {
                    let is_live = Some(&v.version) == live.as_ref();
                    let state = if is_live {
                        "live"
                    } else if instances
                        .iter()
                        .any(|i| i.version == v.version && i.role == "warm")
                    {
                        "warm"
                    } else if v.state == "failed" || !v.error.is_empty() {
                        "failed"
                    } else if was_live.contains(&v.version) {
                        "retired"
                    } else {
                        "ready"
                    };
                    api::Version {
                        version: v.version,
                        digest: v.digest,
                        bundle_sha256: v.bundle_sha256,
                        entry: v.manifest.entry,
                        created_ms: v.created_ms,
                        actor: v.actor,
                        error: if is_live { String::new() } else { v.error },
                        state: state.into(),
                    }
                })
                .collect(),
        }))
    }

    async fn list_releases(
        &self,
        req: Request<api::ListReleasesRequest>,
    ) -> Result<Response<api::ListReleasesResponse>, Status> {
        let app = req.get_ref().app.clone();
        self.for_app(&req, &app)?;
        self.state.app(&app).map_err(status)?;
        let limit = match req.get_ref().limit {
            0 => 50,
            n => n as usize,
        };
        let releases = self.state.releases(&app).map_err(status)?;
        Ok(Response::new(api::ListReleasesResponse {
            releases: releases
                .iter()
                .rev()
                .take(limit)
                .map(super::engine::run_release_message)
                .collect(),
        }))
    }

    type PromoteStream = ProgressStream;

    async fn promote(
        &self,
        req: Request<api::PromoteRequest>,
    ) -> Result<Response<Self::PromoteStream>, Status> {
        let r = req.get_ref().clone();
        let actor = self.for_app(&req, &r.app)?.actor();
        self.state.app(&r.app).map_err(status)?;
        Ok(Response::new(run_change(
            self.engine.clone(),
            r.app.clone(),
            move |e, tx| async move {
                e.promote(&actor, &r.app, &r.target, r.allow_downgrade, &r.reason, &tx)
                    .await
            },
        )))
    }

    type RollbackStream = ProgressStream;

    async fn rollback(
        &self,
        req: Request<api::RollbackRequest>,
    ) -> Result<Response<Self::RollbackStream>, Status> {
        let r = req.get_ref().clone();
        let actor = self.for_app(&req, &r.app)?.actor();
        self.state.app(&r.app).map_err(status)?;
        Ok(Response::new(run_change(
            self.engine.clone(),
            r.app.clone(),
            move |e, tx| async move { e.rollback(&actor, &r.app, &r.release, &r.reason, &tx).await },
        )))
    }

    async fn status(
        &self,
        req: Request<api::StatusRequest>,
    ) -> Result<Response<api::AppStatus>, Status> {
        let app = req.get_ref().app.clone();
        self.for_app(&req, &app)?;
        self.state.app(&app).map_err(status)?;
        self.engine
            .status(&app)
            .map(Response::new)
            .map_err(|f| Status::internal(f.message))
    }

    type ScaleStream = ProgressStream;

    async fn scale(
        &self,
        req: Request<api::ScaleRequest>,
    ) -> Result<Response<Self::ScaleStream>, Status> {
        let r = req.get_ref().clone();
        let actor = self.for_app(&req, &r.app)?.actor();
        self.state.app(&r.app).map_err(status)?;
        Ok(Response::new(run_change(
            self.engine.clone(),
            r.app.clone(),
            move |e, tx| async move { e.scale(&actor, &r.app, r.instances, &tx).await },
        )))
    }

    type RestartStream = ProgressStream;

    async fn restart(
        &self,
        req: Request<api::RestartRequest>,
    ) -> Result<Response<Self::RestartStream>, Status> {
        let r = req.get_ref().clone();
        let actor = self.for_app(&req, &r.app)?.actor();
        self.state.app(&r.app).map_err(status)?;
        Ok(Response::new(run_change(
            self.engine.clone(),
            r.app.clone(),
            move |e, tx| async move { e.restart(&actor, &r.app, &r.reason, &tx).await },
        )))
    }
}

#[tonic::async_trait]
impl api::config_server::Config for Control {
    type SetConfigStream = ProgressStream;

    async fn set_config(
        &self,
        req: Request<api::SetConfigRequest>,
    ) -> Result<Response<Self::SetConfigStream>, Status> {
        let r = req.get_ref().clone();
        let actor = self.for_app(&req, &r.app)?.actor();
        self.state.app(&r.app).map_err(status)?;
        if r.values.is_empty() {
            return Err(Status::invalid_argument(
                "values: give at least one KEY=VALUE",
            ));
        }
        for v in &r.values {
            super::engine::check_config_key(&v.key, v.secret).map_err(Status::invalid_argument)?;
        }
        let set: Vec<(String, String, bool)> = r
            .values
            .into_iter()
            .map(|v| (v.key, v.value, v.secret))
            .collect();
        Ok(Response::new(run_change(
            self.engine.clone(),
            r.app.clone(),
            move |e, tx| async move {
                e.set_config(&actor, &r.app, set, vec![], &r.reason, &tx)
                    .await
            },
        )))
    }

    type UnsetConfigStream = ProgressStream;

    async fn unset_config(
        &self,
        req: Request<api::UnsetConfigRequest>,
    ) -> Result<Response<Self::UnsetConfigStream>, Status> {
        let r = req.get_ref().clone();
        let actor = self.for_app(&req, &r.app)?.actor();
        self.state.app(&r.app).map_err(status)?;
        if r.keys.is_empty() {
            return Err(Status::invalid_argument("keys: name at least one"));
        }
        Ok(Response::new(run_change(
            self.engine.clone(),
            r.app.clone(),
            move |e, tx| async move {
                e.set_config(&actor, &r.app, vec![], r.keys.clone(), &r.reason, &tx)
                    .await
            },
        )))
    }

    async fn list_config(
        &self,
        req: Request<api::ListConfigRequest>,
    ) -> Result<Response<api::ListConfigResponse>, Status> {
        let app = req.get_ref().app.clone();
        self.for_app(&req, &app)?;
        self.state.app(&app).map_err(status)?;
        let run = self.state.run(&app).map_err(status)?;
        let mut values: Vec<api::ConfigValue> = run
            .config
            .plain
            .iter()
            .map(|(k, v)| api::ConfigValue {
                key: k.clone(),
                value: v.clone(),
                secret: false,
            })
            .collect();
        values.extend(run.config.secrets.keys().map(|k| api::ConfigValue {
            key: k.clone(),
            value: String::new(),
            secret: true,
        }));
        values.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Response::new(api::ListConfigResponse { values }))
    }
}
