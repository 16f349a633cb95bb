//! Creating and removing an app's database and backend account. The deployer calls these
//! functions; `query-proxy provision APP` / `deprovision APP` are the same for operators.
//! Both are idempotent: running them again converges on the same state.

use std::time::Duration;

use berth_common::tenants::AppName;

use crate::backend::{BackendConn, BackendError, Login};
use crate::secret::BackendSecret;

/// Privileges an app's account holds, on its own database only. No FILE, SUPER, PROCESS or any
/// other global privilege, nothing on `mysql.*`, no routines (their DEFINER rights would
/// outlive the policy's checks), no EVENT, no TRIGGER.
pub const APP_GRANTS: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, \
CREATE TEMPORARY TABLES, LOCK TABLES, CREATE VIEW, SHOW VIEW, REFERENCES";

/// How to reach the backend as its administrator.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    pub addr: String,
    pub user: String,
    pub password: String,
    pub timeout: Duration,
}

impl AdminAccess {
    /// Logs in as the administrator, without a default database.
    pub async fn connect(&self) -> Result<BackendConn, BackendError> {
        let login = Login {
            user: &self.user,
            password: &self.password,
            database: None,
            relayed_caps: 0,
            collation: 45,
        };
        BackendConn::connect(&self.addr, &login, self.timeout).await
    }
}

/// Quotes `s` as a SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The statements that create (or repair) the app's database and account.
pub fn provision_statements(app: &AppName, password: &str, hosts: &[String]) -> Vec<String> {
    let ident = app.mysql_ident();
    let mut out = vec![format!(
        "CREATE DATABASE IF NOT EXISTS `{ident}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )];
    for host in hosts {
        let account = format!("{}@{}", literal(&ident), literal(host));
        out.push(format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {}",
            literal(password)
        ));
        // Converge: the password from the current secret, no extra privileges, exactly ours.
        out.push(format!(
            "ALTER USER {account} IDENTIFIED BY {}",
            literal(password)
        ));
        out.push(format!(
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"
        ));
        out.push(format!("GRANT {APP_GRANTS} ON `{ident}`.* TO {account}"));
    }
    out
}

/// The statements that remove the app's account and database (its data included).
pub fn deprovision_statements(app: &AppName, hosts: &[String]) -> Vec<String> {
    let ident = app.mysql_ident();
    let mut out: Vec<String> = hosts
        .iter()
        .map(|h| format!("DROP USER IF EXISTS {}@{}", literal(&ident), literal(h)))
        .collect();
    out.push(format!("DROP DATABASE IF EXISTS `{ident}`"));
    out
}

/// Creates the app's database `app_<name>` and account `app_<name>`@host for each of `hosts`,
/// with the password derived from `secret` and [`APP_GRANTS`] on that database only.
pub async fn provision(
    admin: &AdminAccess,
    secret: &BackendSecret,
    app: &AppName,
    hosts: &[String],
) -> Result<(), BackendError> {
    let mut conn = admin.connect().await?;
    for sql in provision_statements(app, &secret.backend_password(app), hosts) {
        conn.exec(&sql).await?;
    }
    Ok(())
}

/// Removes the app's accounts and database. Open sessions of the app are killed first.
pub async fn deprovision(
    admin: &AdminAccess,
    app: &AppName,
    hosts: &[String],
) -> Result<(), BackendError> {
    let mut conn = admin.connect().await?;
    let ids = conn
        .query(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = {}",
            literal(&app.mysql_ident())
        ))
        .await?;
    for id in ids.into_iter().flatten().flatten() {
        if let Ok(id) = id.parse::<u64>() {
            // The session may end by itself meanwhile: an unknown thread is fine.
            let _ = conn.exec(&format!("KILL CONNECTION {id}")).await;
        }
    }
    for sql in deprovision_statements(app, hosts) {
        conn.exec(&sql).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_only_the_apps_database() {
        let app = AppName::parse("guest-book").unwrap();
        let hosts = vec!["%".to_owned(), "localhost".to_owned()];
        let sql = provision_statements(&app, "abc", &hosts);
        assert!(sql[0].contains("`app_guest_book`"));
        for s in sql.iter().filter(|s| s.starts_with("GRANT")) {
            assert!(s.contains("ON `app_guest_book`.* TO 'app_guest_book'@"));
            for banned in [
                "FILE", "SUPER", "PROCESS", "ALL", "*.*", "ROUTINE", "EXECUTE",
            ] {
                assert!(!s.contains(banned), "{s}");
            }
        }
        assert_eq!(literal("a'b\\"), "'a\\'b\\\\'");
        let d = deprovision_statements(&app, &hosts);
        assert_eq!(
            d.last().unwrap(),
            "DROP DATABASE IF EXISTS `app_guest_book`"
        );
    }
}
