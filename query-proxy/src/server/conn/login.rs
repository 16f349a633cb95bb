//! The connection phase of one client connection: greeting, authentication (native and
//! caching_sha2 passwords, over TLS when asked), then the app's backend session.

use super::*;

/// The connection phase: greeting, HandshakeResponse41, authentication, backend login.
pub(super) async fn login(client: &mut Client, shared: &Arc<Shared>) -> Result<Session, ConnError> {
    let scramble = new_scramble(&mut OsRng);
    let greeting = Greeting {
        server_version: shared.server_version.clone(),
        connection_id: shared.next_connection_id(),
        scramble,
        capabilities: caps::PROXY_SERVER | if shared.tls.is_some() { caps::SSL } else { 0 },
        collation: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.to_owned(),
    };
    client.send(0, &greeting.encode()).await?;
    let (p, r) = loop {
        let Some(p) = client.read_packet(LOGIN_PACKET_LIMIT).await? else {
            return Err(ConnError::Truncated);
        };
        let hello = match ClientHello::decode(&p.payload) {
            Ok(h) => h,
            Err(e) => {
                client
                    .refuse(p.last_seq.wrapping_add(1), &Refuse::Malformed)
                    .await?;
                return Err(e.into());
            }
        };
        match (hello, &shared.tls) {
            (ClientHello::SslRequest { .. }, Some(acceptor)) if !client.stream.is_tls() => {
                client.start_tls(acceptor).await?;
            }
            (ClientHello::SslRequest { .. }, _) => {
                client
                    .refuse(p.last_seq.wrapping_add(1), &Refuse::NoTls)
                    .await?;
                return Err(ConnError::Refused(Refuse::NoTls));
            }
            (ClientHello::Response(r), _) => break (p, r),
        }
    };
    if shared.cfg.require_tls && !client.stream.is_tls() {
        client
            .refuse(p.last_seq.wrapping_add(1), &Refuse::TlsRequired)
            .await?;
        return Err(ConnError::Refused(Refuse::TlsRequired));
    }
    let offered = caps::PROXY_SERVER | if client.stream.is_tls() { caps::SSL } else { 0 };
    let caps = caps::negotiate(offered, r.capabilities);
    let user = String::from_utf8_lossy(&r.username).into_owned();
    let (tenant, token, seq) = authenticate(
        client,
        shared,
        &scramble,
        &user,
        (r.auth_response.clone(), r.auth_plugin.clone()),
        p.last_seq.wrapping_add(1),
    )
    .await?;
    let session = open_session(
        client,
        shared,
        tenant,
        token,
        (caps, r.collation, seq),
        r.database.as_deref(),
    )
    .await?;
    let mut session = session;
    session.scramble = scramble;
    Ok(session)
}

/// Checks the app's token (switching the client to `mysql_native_password` first if it
/// offered another plugin). The answer is the same for an unknown app and a wrong token.
pub(super) async fn authenticate(
    client: &mut Client,
    shared: &Arc<Shared>,
    scramble: &[u8; 20],
    user: &str,
    (mut response, plugin): (Vec<u8>, Option<String>),
    mut seq: u8,
) -> Result<(Tenant, TokenHash, u8), ConnError> {
    if plugin.as_deref() == Some(CACHING_SHA2_PASSWORD) && client.stream.is_tls() {
        return caching_sha2_over_tls(client, shared, user, seq).await;
    }
    if plugin.as_deref().is_some_and(|p| p != NATIVE_PASSWORD) {
        client
            .send(seq, &encode_auth_switch(NATIVE_PASSWORD, scramble))
            .await?;
        let Some(p) = client.read_packet(LOGIN_PACKET_LIMIT).await? else {
            return Err(ConnError::Truncated);
        };
        response = p.payload;
        seq = p.last_seq.wrapping_add(1);
    }
    let tenant = shared.tenant(user);
    let matched = tenant.as_ref().and_then(|t| {
        let mut found = None;
        for h in &t.tokens {
            if h.verify_mysql_native(scramble, &response) && found.is_none() {
                found = Some(h.clone());
            }
        }
        found
    });
    admit(client, user, seq, tenant, matched).await
}

/// The app and the token hash that matched, or an access-denied error sent to the client.
async fn admit(
    client: &mut Client,
    user: &str,
    seq: u8,
    tenant: Option<Tenant>,
    matched: Option<TokenHash>,
) -> Result<(Tenant, TokenHash, u8), ConnError> {
    match (tenant, matched) {
        (Some(t), Some(h)) => Ok((t, h, seq)),
        _ => {
            let refuse = Refuse::Access {
                user: user.to_owned(),
            };
            client.refuse(seq, &refuse).await?;
            Err(ConnError::Refused(refuse))
        }
    }
}

/// `caching_sha2_password` inside TLS: ask for full authentication (`0x01 0x04`), receive the
/// token in clear over the encrypted link, and check it against the app's SHA-256 hashes.
async fn caching_sha2_over_tls(
    client: &mut Client,
    shared: &Arc<Shared>,
    user: &str,
    seq: u8,
) -> Result<(Tenant, TokenHash, u8), ConnError> {
    client.send(seq, &[0x01, 0x04]).await?;
    let Some(p) = client.read_packet(LOGIN_PACKET_LIMIT).await? else {
        return Err(ConnError::Truncated);
    };
    let seq = p.last_seq.wrapping_add(1);
    let password = p.payload.strip_suffix(&[0]).unwrap_or(&p.payload);
    let password = std::str::from_utf8(password).unwrap_or("");
    let tenant = shared.tenant(user);
    let matched = tenant
        .as_ref()
        .and_then(|t| t.tokens.iter().find(|h| h.verify(password)).cloned());
    admit(client, user, seq, tenant, matched).await
}

/// Applies the per-session checks and limits, logs in to the backend as the app, and answers
/// the client's login with OK.
pub(super) async fn open_session(
    client: &mut Client,
    shared: &Arc<Shared>,
    tenant: Tenant,
    token: TokenHash,
    (caps, collation, seq): (u32, u8, u8),
    database: Option<&[u8]>,
) -> Result<Session, ConnError> {
    let ident = tenant.name.mysql_ident();
    let check = if !is_utf8_collation(collation) {
        Err(Refuse::Charset(collation))
    } else if database.is_some_and(|d| !d.is_empty() && d != ident.as_bytes()) {
        Err(Refuse::Database {
            user: tenant.name.to_string(),
            database: String::from_utf8_lossy(database.unwrap_or_default()).into_owned(),
        })
    } else {
        Ok(())
    };
    if let Err(r) = check {
        client.refuse(seq, &r).await?;
        return Err(ConnError::Refused(r));
    }
    let Some(slot) = AppSlot::acquire(shared, &tenant) else {
        let r = Refuse::TooManyConnections {
            user: tenant.name.to_string(),
            limit: tenant.max_connections,
        };
        client.refuse(seq, &r).await?;
        return Err(ConnError::Refused(r));
    };
    let (backend, mode) = match open_backend(shared, &tenant, caps, collation).await {
        Ok(b) => b,
        Err(e) => {
            shared
                .counters
                .backend_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(app = %tenant.name, error = %e, "backend login as the app's account failed (is the app provisioned? `query-proxy provision {}`)", tenant.name);
            client.refuse(seq, &Refuse::Backend).await?;
            return Err(e.into());
        }
    };
    let ok = reply::Ok {
        status: status::AUTOCOMMIT,
        ..reply::Ok::default()
    };
    client.send(seq, &ok.encode()).await?;
    let mut policy = policy::Session::new(ident);
    policy.sql_mode = mode;
    Ok(Session {
        shared: shared.clone(),
        tenant,
        token,
        scramble: [0; 20],
        caps,
        policy,
        backend,
        _slot: slot,
        stmts: HashMap::new(),
        timer: DeadlineTimer::default(),
    })
}

/// Logs in to the backend as `app_<name>` with the derived password, then sets the session up.
async fn open_backend(
    shared: &Shared,
    tenant: &Tenant,
    caps: u32,
    collation: u8,
) -> Result<(BackendConn, SqlMode), BackendError> {
    let ident = tenant.name.mysql_ident();
    let password = shared.secret.backend_password(&tenant.name);
    let login = Login {
        user: &ident,
        password: &password,
        database: Some(&ident),
        relayed_caps: caps,
        collation,
    };
    let mut backend = BackendConn::connect(
        &shared.cfg.backend,
        &login,
        shared.cfg.backend_connect_timeout.0,
    )
    .await?;
    let mode = setup_backend(&mut backend, tenant).await?;
    Ok((backend, mode))
}

/// Puts the app's statement timeout on the backend session (the policy refuses lifting it)
/// and reads the session's sql_mode for the policy's lexer.
pub(super) async fn setup_backend(
    backend: &mut BackendConn,
    tenant: &Tenant,
) -> Result<SqlMode, BackendError> {
    let secs = tenant.statement_timeout.0.as_secs_f64();
    if secs > 0.0 {
        backend
            .exec(&format!("SET SESSION max_statement_time = {secs:.3}"))
            .await?;
    }
    let rows = backend.query("SELECT @@SESSION.sql_mode").await?;
    let mode = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    Ok(SqlMode::parse(&mode))
}
