//! The client against a stand-in `Deploys` service over real gRPC on a socket: what goes
//! over the wire (the upload's chunks, the deploy request) and how the result is judged.

use std::sync::{Arc, Mutex};

use api::deploys_server::{Deploys, DeploysServer};
use futures_util::stream::{self, Iter};
use tonic::{Request, Response};

use super::*;

type Progresses = Iter<std::vec::IntoIter<Result<api::Progress, Status>>>;

#[derive(Default)]
struct Seen {
    chunks: Vec<api::BundleChunk>,
    deploys: Vec<api::DeployRequest>,
}

struct StandIn {
    seen: Arc<Mutex<Seen>>,
    script: Vec<api::Progress>,
}

fn progresses(script: &[api::Progress]) -> Progresses {
    stream::iter(script.iter().cloned().map(Ok).collect::<Vec<_>>())
}

#[tonic::async_trait]
impl Deploys for StandIn {
    async fn upload_bundle(
        &self,
        request: Request<tonic::Streaming<api::BundleChunk>>,
    ) -> Result<Response<api::UploadBundleResponse>, Status> {
        let mut stream = request.into_inner();
        let mut chunks = Vec::new();
        while let Some(c) = stream.message().await? {
            chunks.push(c);
        }
        let first = chunks.first().cloned().unwrap_or_default();
        let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        self.seen.lock().unwrap().chunks = chunks;
        if hex::encode(Sha256::digest(&data)) != first.sha256 || data.len() as u64 != first.size {
            return Err(Status::invalid_argument("sha256: does not match the data"));
        }
        Ok(Response::new(api::UploadBundleResponse {
            sha256: first.sha256,
            size: first.size,
            existed: false,
        }))
    }
    type DeployStream = Progresses;
    async fn deploy(
        &self,
        request: Request<api::DeployRequest>,
    ) -> Result<Response<Progresses>, Status> {
        self.seen.lock().unwrap().deploys.push(request.into_inner());
        Ok(Response::new(progresses(&self.script)))
    }
    async fn list_versions(
        &self,
        _: Request<api::ListVersionsRequest>,
    ) -> Result<Response<api::ListVersionsResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    async fn list_releases(
        &self,
        _: Request<api::ListReleasesRequest>,
    ) -> Result<Response<api::ListReleasesResponse>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
    type PromoteStream = Progresses;
    async fn promote(
        &self,
        _: Request<api::PromoteRequest>,
    ) -> Result<Response<Progresses>, Status> {
        Ok(Response::new(progresses(&self.script)))
    }
    type RollbackStream = Progresses;
    async fn rollback(
        &self,
        _: Request<api::RollbackRequest>,
    ) -> Result<Response<Progresses>, Status> {
        Ok(Response::new(progresses(&self.script)))
    }
    async fn status(
        &self,
        request: Request<api::StatusRequest>,
    ) -> Result<Response<api::AppStatus>, Status> {
        let app = request.into_inner().app;
        Ok(Response::new(api::AppStatus {
            urls: vec![format!("http://{app}.localhost:8080/")],
            app,
            ..Default::default()
        }))
    }
    type ScaleStream = Progresses;
    async fn scale(&self, _: Request<api::ScaleRequest>) -> Result<Response<Progresses>, Status> {
        Ok(Response::new(progresses(&self.script)))
    }
    type RestartStream = Progresses;
    async fn restart(
        &self,
        _: Request<api::RestartRequest>,
    ) -> Result<Response<Progresses>, Status> {
        Ok(Response::new(progresses(&self.script)))
    }
}

/// Serves a stand-in answering every change with `script`; its URL and what it saw.
fn serve(script: Vec<api::Progress>) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let service = StandIn {
        seen: seen.clone(),
        script,
    };
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
                .add_service(DeploysServer::new(service))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), seen)
}

/// An app directory whose bundle takes three upload chunks.
fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(MANIFEST_FILE),
        "name = \"wiretest\"\nversion = \"1.2.0\"\nentry = \"main:application\"\n",
    )
    .unwrap();
    let mut main = String::from("def application(environ, start_response):\n    pass\n");
    while main.len() < CHUNK_BYTES * 2 + 100 {
        main.push_str("# padding so that the bundle needs more than two chunks\n");
    }
    std::fs::write(dir.path().join("main.py"), main).unwrap();
    dir
}

fn args(dir: &Path, server: String, json: bool) -> DeployArgs {
    DeployArgs {
        dir: dir.into(),
        no_promote: true,
        allow_downgrade: false,
        reason: "wire test".into(),
        skip_local_checks: false,
        conn: Conn {
            server,
            token: Some("t".into()),
            token_file: None,
            json,
            ca_file: None,
        },
    }
}

fn step(phase: &str, message: &str) -> api::Progress {
    api::Progress {
        phase: phase.into(),
        message: message.into(),
        ..Default::default()
    }
}

#[test]
fn deploy_uploads_in_chunks_then_follows_to_the_end() {
    let done = api::Progress {
        phase: "done".into(),
        done: true,
        release: Some(api::Release {
            id: "v1".into(),
            number: 1,
            version: "1.2.0".into(),
            state: "live".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (url, seen) = serve(vec![step("validate", "gates pass"), done]);
    let dir = app_dir();
    assert_eq!(
        run(&args(dir.path(), url, true)).unwrap(),
        ExitCode::SUCCESS
    );
    let seen = seen.lock().unwrap();
    let tar = tarball::pack(&bundle::collect(dir.path(), &Limits::default()).unwrap()).unwrap();
    assert_eq!(seen.chunks.len(), tar.len().div_ceil(CHUNK_BYTES));
    assert!(seen.chunks.len() >= 3);
    assert_eq!(seen.chunks[0].app, "wiretest");
    assert_eq!(seen.chunks[0].sha256, hex::encode(Sha256::digest(&tar)));
    assert_eq!(seen.chunks[0].size, tar.len() as u64);
    assert!(seen.chunks[1..]
        .iter()
        .all(|c| c.app.is_empty() && c.size == 0));
    let d = &seen.deploys[0];
    assert_eq!(d.app, "wiretest");
    assert_eq!(d.bundle_sha256, seen.chunks[0].sha256);
    assert!(d.no_promote && !d.allow_downgrade);
    assert_eq!(d.reason, "wire test");
}

#[test]
fn a_failed_deploy_is_an_error_with_berthds_words() {
    let failed = api::Progress {
        phase: "health".into(),
        done: true,
        error: "health: GET /healthz answered 500 three times; the live release is \
                unchanged"
            .into(),
        ..Default::default()
    };
    let (url, _) = serve(vec![step("start", "1.2.0-1 started"), failed.clone()]);
    let dir = app_dir();
    let e = run(&args(dir.path(), url, false)).unwrap_err();
    assert_eq!(e.to_string(), failed.error);

    // A stream that stops before `done` is a failure too.
    let (url, _) = serve(vec![step("start", "1.2.0-1 started")]);
    let e = run(&args(dir.path(), url, true)).unwrap_err();
    assert!(e.to_string().contains("ended the stream"), "{e}");
}

#[test]
fn promote_and_rollback_follow_their_streams() {
    let noop = api::Progress {
        phase: "done".into(),
        done: true,
        noop: true,
        ..Default::default()
    };
    let (url, _) = serve(vec![noop]);
    let c = Client::connect(&Conn {
        server: url,
        token: Some("t".into()),
        token_file: None,
        json: false,
        ca_file: None,
    })
    .unwrap();
    let req = api::PromoteRequest {
        app: "wiretest".into(),
        target: "v1".into(),
        ..Default::default()
    };
    let code = follow(
        &c,
        "wiretest",
        &Kind::Release,
        Renderer::new(false),
        async { deploys(&c).promote(req).await },
    )
    .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    let e = follow(&c, "wiretest", &Kind::Release, Renderer::new(true), async {
        deploys(&c)
            .list_versions(api::ListVersionsRequest::default())
            .await?;
        unreachable!()
    })
    .unwrap_err();
    assert!(e.to_string().starts_with("failed: stand-in"), "{e}");
}
