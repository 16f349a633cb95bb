//! The table-driven corpus: statements every family refuses (with case, whitespace, comment and
//! quoting obfuscation), each with the rule that must name the refusal, and statements that must
//! pass, including what ORMs and drivers send on connect.

use crate::policy::{check, Decision, Session, SqlMode};

/// `(statement, rule)`: refused in a session on `app_guestbook` with the default sql_mode.
pub(super) const REFUSED: &[(&str, &str)] = &[
    // File system.
    ("LOAD DATA INFILE '/etc/passwd' INTO TABLE t", "file-access"),
    ("load data local infile '/etc/passwd' into table t", "file-access"),
    ("LOAD/**/DATA INFILE 'x' INTO TABLE t", "file-access"),
    ("LOAD XML INFILE 'x.xml' INTO TABLE t", "file-access"),
    ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "file-access"),
    ("select * from t into/**/outfile '/tmp/x'", "file-access"),
    ("SELECT 'x' INTO DUMPFILE '/tmp/x'", "file-access"),
    ("SELECT * FROM t /*!INTO OUTFILE '/tmp/x'*/", "file-access"),
    ("SELECT LOAD_FILE('/etc/passwd')", "file-access"),
    ("SeLeCt/**/LOAD_FILE('/etc/passwd')", "file-access"),
    ("SELECT load_file ('/etc/passwd')", "file-access"),
    ("SELECT `load_file`('/etc/passwd')", "file-access"),
    ("SELECT /*M!100100 load_file(*/ '/etc/passwd' /*M! )*/", "file-access"),
    ("INSERT INTO t VALUES (LOAD_FILE(0x2f6574632f706173737764))", "file-access"),
    ("CREATE TABLE t (a INT) DATA DIRECTORY = '/tmp'", "file-access"),
    ("CREATE TABLE t (a INT) INDEX DIRECTORY='/tmp'", "file-access"),
    ("ALTER TABLE t DISCARD TABLESPACE", "file-access"),
    (
        "CREATE TABLE t (a INT) PARTITION BY HASH(a) (PARTITION p0 DATA DIRECTORY '/tmp')",
        "file-access",
    ),
    // Other databases and the server's own.
    ("SELECT * FROM mysql.user", "system-database"),
    ("SELECT * FROM mysql . user", "system-database"),
    ("SELECT * FROM `mysql`.`user`", "system-database"),
    ("select * from MySQL.User", "system-database"),
    ("SELECT * FROM mysql/**/./**/user", "system-database"),
    ("SELECT * FROM /*!mysql.user*/", "system-database"),
    ("SELECT password FROM mysql.user WHERE user = 'root'", "system-database"),
    ("SELECT * FROM performance_schema.threads", "system-database"),
    ("SELECT * FROM sys.processlist", "system-database"),
    ("SELECT mysql.user.host FROM t", "system-database"),
    ("SELECT * FROM t WHERE a IN (SELECT user FROM mysql.user)", "system-database"),
    ("SELECT * FROM app_other.t", "other-database"),
    ("SELECT * FROM `app_other`.t", "other-database"),
    ("SELECT * FROM t JOIN app_other.secrets s ON s.id = t.id", "other-database"),
    ("SELECT * FROM t, app_other.secrets", "other-database"),
    ("SELECT * FROM (SELECT 1) x, app_other.secrets", "other-database"),
    ("INSERT INTO app_other.t VALUES (1)", "other-database"),
    ("UPDATE app_other.t SET a = 1", "other-database"),
    ("DELETE FROM app_other.t", "other-database"),
    ("CREATE TABLE app_other.t (a INT)", "other-database"),
    ("CREATE TABLE IF NOT EXISTS app_other.t (a INT)", "other-database"),
    ("CREATE TABLE t AS SELECT * FROM app_other.t", "other-database"),
    ("CREATE TABLE t LIKE app_other.t", "other-database"),
    ("ALTER TABLE t RENAME TO app_other.t", "other-database"),
    ("RENAME TABLE t TO app_other.t", "other-database"),
    ("DROP TABLE IF EXISTS t, app_other.t", "other-database"),
    ("LOCK TABLES t READ, app_other.t WRITE", "other-database"),
    ("CREATE INDEX i ON app_other.t (a)", "other-database"),
    ("SELECT app_other.f(1)", "other-database"),
    ("SELECT NEXTVAL(app_other.s)", "other-database"),
    ("DESCRIBE app_other.t", "other-database"),
    ("SHOW TABLES FROM app_other", "other-database"),
    ("SHOW COLUMNS FROM t FROM app_other", "other-database"),
    ("SHOW CREATE DATABASE app_other", "other-database"),
    ("SHOW TABLES FROM information_schema", "other-database"),
    ("WITH x AS (SELECT * FROM app_other.t) SELECT * FROM x", "other-database"),
    // information_schema beyond the app's own metadata.
    ("SELECT * FROM information_schema.processlist", "information-schema"),
    ("SELECT * FROM information_schema.user_privileges", "information-schema"),
    ("SELECT * FROM INFORMATION_SCHEMA.GLOBAL_VARIABLES", "information-schema"),
    (
        "SELECT * FROM information_schema.tables WHERE table_schema = 'mysql'",
        "information-schema",
    ),
    (
        "SELECT table_name FROM information_schema.columns WHERE TABLE_SCHEMA IN ('app_guestbook', 'app_other')",
        "information-schema",
    ),
    // USE and databases.
    ("USE app_other", "database-admin"),
    ("USE information_schema", "database-admin"),
    ("use `mysql`", "database-admin"),
    ("CREATE DATABASE app_evil", "database-admin"),
    ("DROP DATABASE app_guestbook", "database-admin"),
    ("ALTER DATABASE app_guestbook CHARACTER SET latin1", "database-admin"),
    // Accounts and grants.
    ("GRANT ALL ON *.* TO 'app_guestbook'@'%'", "account-admin"),
    ("/*!50000 GRANT*/ ALL ON *.* TO x", "account-admin"),
    ("/*M!100100 GRANT */ SELECT ON mysql.* TO x", "account-admin"),
    ("REVOKE ALL PRIVILEGES ON *.* FROM x", "account-admin"),
    ("CREATE USER evil IDENTIFIED BY 'x'", "account-admin"),
    ("DROP USER app_other", "account-admin"),
    ("ALTER USER CURRENT_USER() IDENTIFIED BY 'new'", "account-admin"),
    ("SET PASSWORD = PASSWORD('x')", "account-admin"),
    ("SET PASSWORD FOR app_other = 'x'", "account-admin"),
    ("CREATE ROLE admin", "account-admin"),
    ("SET ROLE admin", "account-admin"),
    ("SET DEFAULT ROLE admin FOR x", "account-admin"),
    ("RENAME USER a TO b", "account-admin"),
    ("SHOW GRANTS", "account-admin"),
    // Global variables and limits.
    ("SET GLOBAL max_connections = 1", "global-variable"),
    ("set global general_log = 1", "global-variable"),
    ("SET @@global.max_statement_time = 0", "global-variable"),
    ("SET @@GLOBAL . max_statement_time = 0", "global-variable"),
    ("SET autocommit = 1, GLOBAL read_only = 1", "global-variable"),
    ("SET PERSIST max_connections = 1", "global-variable"),
    ("SET GLOBAL TRANSACTION ISOLATION LEVEL READ UNCOMMITTED", "global-variable"),
    ("SET max_statement_time = 0", "limit-variable"),
    ("SET SESSION max_statement_time=0", "limit-variable"),
    ("SET @@session.max_statement_time = 0", "limit-variable"),
    ("SET @@max_statement_time = 0", "limit-variable"),
    ("SET LOCAL max_execution_time = 0", "limit-variable"),
    ("SET max_recursive_iterations = 1000000000", "limit-variable"),
    ("SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(100)", "limit-variable"),
    ("set statement MAX_STATEMENT_TIME = 1000 for select 1", "limit-variable"),
    ("SET tmp_table_size = 1073741824", "limit-variable"),
    ("SET sql_log_bin = 0", "session-variable"),
    ("SET pseudo_thread_id = 5", "session-variable"),
    ("SET NAMES sjis", "session-variable"),
    ("SET NAMES gbk", "session-variable"),
    ("SET NAMES latin1", "session-variable"),
    ("SET CHARACTER SET binary", "session-variable"),
    ("SET character_set_client = big5", "session-variable"),
    ("SET NAMES utf8mb4 COLLATE gbk_chinese_ci", "session-variable"),
    ("SET default_storage_engine = CONNECT", "storage-engine"),
    ("SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')", "sql-mode"),
    ("SET sql_mode = 'ANSI_QUOTES'; SELECT 1", "sql-mode"),
    ("SET sql_mode = 'ORACLE'", "sql-mode"),
    ("SET sql_mode = 'STRICT_TRANS_TABLES,MSSQL'", "sql-mode"),
    ("SET sql_mode = DEFAULT", "sql-mode"),
    // Server administration.
    ("SHUTDOWN", "server-admin"),
    ("shutdown wait for all slaves", "server-admin"),
    ("KILL 1", "server-admin"),
    ("KILL QUERY 12", "server-admin"),
    ("FLUSH PRIVILEGES", "server-admin"),
    ("FLUSH TABLES WITH READ LOCK", "server-admin"),
    ("SHOW PROCESSLIST", "server-admin"),
    ("SHOW FULL PROCESSLIST", "server-admin"),
    ("SHOW ENGINE INNODB STATUS", "server-admin"),
    ("XA RECOVER", "server-admin"),
    ("HANDLER t OPEN", "server-admin"),
    ("EXPLAIN FOR CONNECTION 1", "server-admin"),
    ("SHOW GLOBAL STATUS", "show"),
    ("SHOW GLOBAL VARIABLES", "show"),
    ("SHOW USER_STATISTICS", "server-admin"),
    // Plugins and UDFs.
    ("INSTALL PLUGIN connect SONAME 'ha_connect.so'", "plugin"),
    ("INSTALL SONAME 'ha_connect'", "plugin"),
    ("UNINSTALL PLUGIN server_audit", "plugin"),
    ("CREATE FUNCTION sys_exec RETURNS INT SONAME 'lib_mysqludf_sys.so'", "plugin"),
    ("SELECT sys_exec('id')", "plugin"),
    ("SHOW PLUGINS", "plugin"),
    ("CREATE TABLE t (a INT) ENGINE=CONNECT TABLE_TYPE=CSV FILE_NAME='/etc/passwd'", "storage-engine"),
    ("CREATE TABLE t (a INT) ENGINE = FEDERATED CONNECTION='mysql://x@h/db/t'", "storage-engine"),
    ("ALTER TABLE t ENGINE=MERGE UNION=(app_other.t)", "storage-engine"),
    ("CREATE TABLE t (a INT) ENGINE /*!*/ = `SPIDER`", "storage-engine"),
    ("CREATE TABLE t (a INT) ENGINE NewPluginEngine", "storage-engine"),
    ("ALTER TABLE t ENGINE CONNECT", "storage-engine"),
    ("CREATE TABLE t (a INT) PARTITION BY HASH(a) (PARTITION p0 ENGINE = CSV)", "storage-engine"),
    // Replication.
    ("CHANGE MASTER TO MASTER_HOST='evil'", "replication"),
    ("START SLAVE", "replication"),
    ("STOP REPLICA", "replication"),
    ("RESET MASTER", "replication"),
    ("PURGE BINARY LOGS TO 'x'", "replication"),
    ("SHOW BINLOG EVENTS", "replication"),
    ("SHOW SLAVE STATUS", "replication"),
    ("SELECT MASTER_POS_WAIT('f', 4)", "replication"),
    ("BINLOG 'AAAA'", "replication"),
    // Stored programs and definer rights.
    ("CREATE PROCEDURE p() SELECT 1", "stored-program"),
    ("CREATE DEFINER=root@localhost PROCEDURE p() SELECT 1", "stored-program"),
    ("CREATE FUNCTION f() RETURNS INT RETURN 1", "stored-program"),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @a = 1", "stored-program"),
    ("CREATE EVENT e ON SCHEDULE EVERY 1 SECOND DO SELECT 1", "stored-program"),
    ("CREATE DEFINER = CURRENT_USER VIEW v AS SELECT 1", "stored-program"),
    ("CREATE ALGORITHM=MERGE DEFINER=`root`@`%` SQL SECURITY DEFINER VIEW v AS SELECT 1", "stored-program"),
    ("DROP PROCEDURE p", "stored-program"),
    ("CALL p()", "stored-program"),
    ("BEGIN NOT ATOMIC SELECT 1; END", "stored-program"),
    ("SELECT * FROM t PROCEDURE ANALYSE()", "stored-program"),
    ("SHOW CREATE PROCEDURE p", "stored-program"),
    ("SHOW TRIGGERS", "stored-program"),
    // Dynamic SQL.
    ("PREPARE s FROM @sql", "dynamic-sql"),
    ("PREPARE s FROM CONCAT('SEL', 'ECT 1')", "dynamic-sql"),
    ("EXECUTE IMMEDIATE 'SELECT 1'", "dynamic-sql"),
    ("PREPARE s FROM 'SELECT 1; SELECT 2'", "dynamic-sql"),
    ("PREPARE s FROM 'PREPARE t FROM ''SELECT 1'''", "dynamic-sql"),
    ("PREPARE s FROM 'SELECT * FROM mysql.user'", "system-database"),
    ("PREPARE s FROM 'GRA' 'NT ALL ON *.* TO x'", "account-admin"),
    ("PREPARE s FROM 'SELECT * FROM app_other /*!99999 _x */ . secret'", "other-database"),
    ("PREPARE s FROM 'SELECT 1 /* unterminated'", "lexical"),
    ("PREPARE s FROM 'SELECT LOAD_FILE(\\'/etc/passwd\\')'", "file-access"),
    // Server-wide locks.
    ("SELECT GET_LOCK('deploy', 10)", "server-wide-lock"),
    ("SELECT IS_USED_LOCK('app_other_lock')", "server-wide-lock"),
    // Quoting tricks that would hide a `;` or a keyword from a naive filter.
    // `'\\'` is a whole string: a filter that reads `\'` as a quote misses the GRANT.
    ("SELECT 'a\\\\'; GRANT ALL ON *.* TO x; -- '", "account-admin"),
    ("SELECT \"a\\\\\"; SHUTDOWN; -- \"", "server-admin"),
    ("SELECT 'a\\\\\\''; SHUTDOWN; -- '", "server-admin"),
    ("SELECT 'it''s'; DROP DATABASE app_guestbook", "database-admin"),
    ("SELECT `a``;` FROM t; KILL 1", "server-admin"),
    ("SELECT 1 -- x\n; SHUTDOWN", "server-admin"),
    ("SELECT 1 # ; \n; SHUTDOWN", "server-admin"),
    ("SELECT 1; /*!SHUTDOWN*/", "server-admin"),
    ("SELECT 1 /*! ; SHUTDOWN */", "lexical"),
    ("SELECT 1 /*!50000 /* x */ SHUTDOWN */", "lexical"),
    ("SELECT 1 /* unterminated", "lexical"),
    // A server older than 9.99.99 skips this comment to its first `*/`, quotes or not.
    ("SELECT 1 /*!99999 ' */ ; SHUTDOWN; -- ' */", "lexical"),
    ("SELECT 1 /*M!999999 ' */ ; SHUTDOWN; -- ' */", "lexical"),
    // …and then reads `app_other . secret`.
    ("SELECT * FROM app_other /*!99999 _x */ . secret", "other-database"),
    ("SELECT * FROM (entries, app_other.t)", "other-database"),
    ("SELECT * FROM ((entries), (app_other.t))", "other-database"),
    ("DELETE FROM entries USING entries, app_other.t", "other-database"),
    ("TRUNCATE app_other.t", "other-database"),
    ("SELECT * FROM t FOR SYSTEM_TIME ALL, app_other.x", "other-database"),
    ("SELECT * FROM t USE INDEX FOR JOIN (i), app_other.x", "other-database"),
    ("SELECT * FROM t1 JOIN (t2 JOIN app_other.t3 ON 1) ON 1", "other-database"),
    ("CREATE TABLE t (LIKE app_other.x)", "other-database"),
    ("ALTER TABLE t EXCHANGE PARTITION p WITH TABLE app_other.x", "other-database"),
    ("SELECT NEXT VALUE FOR app_other.s", "other-database"),
    ("SELECT * FROM t WHERE EXISTS (TABLE app_other.x)", "other-database"),
    ("SHOW INDEX IN app_other.t", "other-database"),
    ("TRUNCATE TABLE mysql.user", "system-database"),
    ("SELECT * FROM mysql._x'alias'", "system-database"),
    ("SELECT * FROM app_other..t", "other-database"),
    ("SELECT * FROM information_schema.tables WHERE 'sys' = table_schema", "information-schema"),
    ("SELECT 'unterminated", "lexical"),
    ("SELECT 1 /*!5000 SHUTDOWN */", "lexical"),
    ("SELECT 1 /*!50000SHUTDOWN */", "lexical"),
    ("SELECT 1\0; SHUTDOWN", "lexical"),
    ("DELIMITER //", "client-command"),
    // Unknown and unclassifiable statements.
    ("OPTIMIZE TABLE t", "server-admin"),
    ("CREATE SEQUENCE s", "unknown-statement"),
    ("FOO BAR", "unknown-statement"),
    ("(SHUTDOWN)", "unknown-statement"),
    ("SELECT 1; FROBNICATE", "unknown-statement"),
];

/// Statements that must be allowed in a session on `app_guestbook` with the default sql_mode.
pub(super) const ALLOWED: &[&str] = &[
    // What SQLAlchemy, PyMySQL and mysqlclient send on connect.
    "SET NAMES utf8mb4",
    "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'",
    "SET NAMES utf8",
    "SELECT @@version",
    "SELECT VERSION()",
    "SHOW VARIABLES LIKE 'sql_mode'",
    "SHOW VARIABLES LIKE 'lower_case_table_names'",
    "SELECT DATABASE()",
    "SET autocommit=0",
    "SET AUTOCOMMIT = 1",
    "SHOW COLLATION",
    "SHOW COLLATION WHERE `Charset` = 'utf8mb4' AND `Collation` = 'utf8mb4_bin'",
    "SELECT @@tx_isolation",
    "SELECT @@transaction_isolation",
    "SELECT @@session.transaction_isolation",
    "SELECT @@global.max_statement_time",
    "ROLLBACK",
    "COMMIT",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SELECT CAST('test plain returns' AS CHAR(60)) AS anon_1",
    "SELECT CAST('test unicode returns' AS CHAR(60)) AS anon_1",
    "SELECT CONVERT('x' USING utf8mb4)",
    "SELECT CAST('test collated returns' AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin AS anon_1",
    "select @@version_comment limit 1",
    "select DATABASE(), USER() limit 1",
    "SELECT @@SQL_AUTO_IS_NULL",
    "SET SQL_AUTO_IS_NULL = 0",
    "SET @@session.autocommit = OFF",
    "SELECT engine FROM information_schema.tables WHERE table_name = 'entries' AND table_schema = DATABASE()",
    "SHOW FULL TABLES FROM `app_guestbook`",
    "DESCRIBE `app_guestbook`.`entries`",
    "SELECT alembic_version.version_num FROM alembic_version",
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
    "SHOW CHARACTER SET",
    "SHOW ENGINES",
    "SHOW WARNINGS",
    "SHOW DATABASES",
    "SET sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE'",
    "SET SESSION sql_mode='TRADITIONAL'",
    "SET @@session.time_zone = '+00:00'",
    "SET time_zone = 'UTC', autocommit = 0",
    "SET character_set_results = NULL",
    "SET @x := 1, @y = 'a'",
    "SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT",
    "/*!40101 SET NAMES utf8mb4 */",
    "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE */",
    "SET foreign_key_checks = 0",
    "SET innodb_lock_wait_timeout = 5",
    "SET default_storage_engine = InnoDB",
    "SET STATEMENT sql_mode = 'ANSI' FOR SELECT 1",
    // Data statements.
    "SELECT * FROM entries",
    "select id, body from app_guestbook.entries where id = 1",
    "SELECT e.id, u.name FROM entries e JOIN users u ON u.id = e.user_id WHERE e.id > 10 ORDER BY e.id DESC LIMIT 10",
    "SELECT * FROM entries e LEFT JOIN users u USING (id), tags t",
    "SELECT * FROM `entries` AS `e` WHERE `e`.`id` IN (SELECT entry_id FROM tags WHERE name LIKE 'a%')",
    "SELECT * FROM (SELECT id FROM entries) AS sub WHERE sub.id = 1",
    "WITH recent AS (SELECT * FROM entries WHERE created > NOW() - INTERVAL 1 DAY) SELECT COUNT(*) FROM recent",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT * FROM n",
    "(SELECT 1) UNION (SELECT 2)",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT entries.id FROM entries",
    "SELECT app_guestbook.entries.id FROM app_guestbook.entries",
    "SELECT JSON_EXTRACT(body, '$.a') FROM entries",
    "SELECT * FROM entries WHERE body = 'mysql.user; SHUTDOWN'",
    "SELECT * FROM entries WHERE body = \"LOAD_FILE('/etc/passwd')\"",
    "SELECT '/*', '*/', '--', '#' FROM entries",
    "SELECT 1 -- a comment with SHUTDOWN",
    "SELECT 1 # a comment with GRANT",
    "SELECT 1 /* a comment with ; SHUTDOWN */",
    "SELECT 1--1",
    "SELECT x'4142', b'0101', N'abc', _utf8mb4'abc', 0x4142, 1.5e-3, .5",
    "SELECT * FROM entries FOR UPDATE",
    "SELECT * FROM entries FOR SYSTEM_TIME ALL, tags",
    "SELECT * FROM entries e USE INDEX FOR JOIN (created_idx), tags t WHERE t.id = e.id",
    "SELECT * FROM entries LOCK IN SHARE MODE",
    "SELECT SLEEP(0.1)",
    "SELECT EXTRACT(YEAR FROM entries.created), TRIM(LEADING 'x' FROM e.body), SUBSTRING(e.body FROM 2) FROM entries e",
    "SELECT * FROM (entries e JOIN users u ON u.id = e.uid)",
    "DELETE FROM entries USING entries JOIN users ON users.id = entries.uid",
    "SELECT 1 /*!99999 , 2 */",
    "SELECT 1 /*!50100 , 2 */ /*M!100500 , 3 */",
    "INSERT INTO entries (body, created) VALUES ('hello', NOW())",
    "INSERT entries SET body = 'x'",
    "INSERT INTO entries (id, body) VALUES (1, 'x') ON DUPLICATE KEY UPDATE body = VALUES(body), entries.n = entries.n + 1",
    "INSERT INTO archive SELECT * FROM entries WHERE id < 10",
    "INSERT INTO t (a) VALUES (%s)",
    "INSERT INTO t (a) VALUES (?)",
    "REPLACE INTO entries (id, body) VALUES (1, 'y')",
    "UPDATE entries SET body = 'x' WHERE id = 1",
    "UPDATE entries e JOIN users u ON u.id = e.user_id SET e.body = u.name",
    "DELETE FROM entries WHERE id = 1",
    "DELETE e FROM entries e JOIN users u ON u.id = e.user_id WHERE u.banned",
    // DDL on the app's own database.
    "CREATE TABLE entries (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT NOT NULL, created DATETIME DEFAULT CURRENT_TIMESTAMP, KEY created_idx (created)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS app_guestbook.t (a INT, b VARCHAR(10), FOREIGN KEY (a) REFERENCES entries (id) ON DELETE CASCADE) ENGINE = Aria",
    "CREATE TEMPORARY TABLE tmp (a INT) ENGINE=MEMORY",
    "CREATE TABLE copy LIKE entries",
    "CREATE TABLE summary AS SELECT COUNT(*) AS n FROM entries",
    "CREATE TABLE p (a INT) PARTITION BY HASH(a) PARTITIONS 4",
    "CREATE TABLE search (id INT, engine VARCHAR(20), connection INT, type INT)",
    "ALTER TABLE search ADD COLUMN engine VARCHAR(20), CHANGE engine engine_name TEXT",
    "CREATE TABLE u AS (SELECT 1 AS a) UNION (SELECT 2)",
    "ALTER TABLE entries ADD COLUMN score INT DEFAULT 0, ADD INDEX score_idx (score)",
    "ALTER TABLE entries RENAME TO posts",
    "ALTER TABLE entries RENAME COLUMN body TO text",
    "ALTER TABLE entries ENGINE = InnoDB",
    "DROP TABLE IF EXISTS entries, tags",
    "DROP TEMPORARY TABLE tmp",
    "TRUNCATE TABLE entries",
    "RENAME TABLE a TO b, c TO d",
    "CREATE INDEX body_idx ON entries (body(10))",
    "CREATE UNIQUE INDEX u ON app_guestbook.entries (id)",
    "DROP INDEX body_idx ON entries",
    "CREATE VIEW v AS SELECT id FROM entries",
    "CREATE OR REPLACE SQL SECURITY INVOKER VIEW v AS SELECT id FROM entries",
    "ALTER VIEW v AS SELECT id, body FROM entries",
    "DROP VIEW IF EXISTS v",
    // Locks, transactions, savepoints.
    "LOCK TABLES entries READ, tags WRITE",
    "UNLOCK TABLES",
    "START TRANSACTION",
    "START TRANSACTION READ ONLY",
    "BEGIN",
    "BEGIN WORK",
    "COMMIT WORK",
    "SAVEPOINT sp1",
    "ROLLBACK TO SAVEPOINT sp1",
    "RELEASE SAVEPOINT sp1",
    // SHOW, DESCRIBE, EXPLAIN of own objects.
    "SHOW TABLES",
    "SHOW FULL TABLES FROM app_guestbook LIKE 'e%'",
    "SHOW TABLE STATUS",
    "SHOW COLUMNS FROM entries",
    "SHOW FULL COLUMNS FROM entries FROM app_guestbook",
    "SHOW INDEX FROM app_guestbook.entries",
    "SHOW CREATE TABLE entries",
    "SHOW CREATE VIEW v",
    "SHOW CREATE DATABASE app_guestbook",
    "SHOW SESSION STATUS LIKE 'Handler%'",
    "DESCRIBE entries",
    "DESC app_guestbook.entries body",
    "EXPLAIN SELECT * FROM entries WHERE id = 1",
    "EXPLAIN FORMAT=JSON UPDATE entries SET body = 'x'",
    // information_schema about the app's own database.
    "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = DATABASE()",
    "SELECT * FROM information_schema.columns WHERE table_schema = 'app_guestbook' AND table_name = 'entries'",
    "SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'app_guestbook'",
    "SELECT * FROM information_schema.key_column_usage kcu WHERE kcu.referenced_table_schema = 'app_guestbook'",
    "SELECT * FROM information_schema.columns WHERE table_name = 'entries' AND table_schema = 'app_guestbook'",
    "SELECT table_schema, 'x' AS k FROM information_schema.tables WHERE table_schema NOT IN ('app_guestbook')",
    "SELECT definer, security_type FROM information_schema.views WHERE table_schema = DATABASE()",
    // Misc.
    "USE app_guestbook",
    "USE `app_guestbook`",
    "DO 1",
    "PREPARE s FROM 'SELECT * FROM entries WHERE id = ?'",
    "PREPARE s FROM _utf8mb4'SELECT 1' 'FROM DUAL'",
    "EXECUTE s USING @id",
    "DEALLOCATE PREPARE s",
    "DROP PREPARE s",
    "SELECT 1; SELECT 2;",
    "SELECT 1;",
    "",
    "  ;  ",
    "/* only a comment */",
    "SELECT 1; SET sql_mode = 'ANSI_QUOTES'",
];

fn session() -> Session {
    Session::new("app_guestbook")
}

#[test]
fn every_refused_statement_names_its_rule() {
    let mut failures = Vec::new();
    for (sql, rule) in REFUSED {
        match check(&session(), sql) {
            Decision::Refuse {
                rule: got,
                code,
                sqlstate,
                message,
            } => {
                assert_eq!(sqlstate, "42000");
                assert!([1044, 1064, 1142, 1227].contains(&code));
                assert!(message.contains(got));
                if got != *rule {
                    failures.push(format!("{sql:?}: rule {got}, expected {rule} ({message})"));
                }
            }
            Decision::Allow => failures.push(format!("{sql:?}: allowed, expected {rule}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_allowed_statement_is_allowed() {
    let failures: Vec<String> = ALLOWED
        .iter()
        .filter_map(|sql| match check(&session(), sql) {
            Decision::Allow => None,
            refused => Some(format!("{sql:?}: {refused:?}")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_is_large_and_covers_every_rule() {
    assert!(
        REFUSED.len() >= 80,
        "only {} refused statements",
        REFUSED.len()
    );
    for rule in [
        "file-access",
        "system-database",
        "other-database",
        "information-schema",
        "database-admin",
        "account-admin",
        "global-variable",
        "limit-variable",
        "session-variable",
        "sql-mode",
        "storage-engine",
        "server-admin",
        "plugin",
        "replication",
        "stored-program",
        "dynamic-sql",
        "server-wide-lock",
        "lexical",
        "client-command",
        "unknown-statement",
        "show",
    ] {
        assert!(
            REFUSED.iter().any(|(_, r)| *r == rule),
            "no corpus entry for {rule}"
        );
    }
}

#[test]
fn refused_statements_stay_refused_in_any_batch_position() {
    for (sql, rule) in REFUSED {
        for batch in [format!("SELECT 1; {sql}"), format!("{sql}\n;SELECT 1")] {
            if *rule == "sql-mode" || *rule == "lexical" {
                continue;
            }
            assert!(
                matches!(check(&session(), &batch), Decision::Refuse { .. }),
                "{batch:?} allowed"
            );
        }
    }
}

#[test]
fn allowed_statements_stay_allowed_together() {
    let plain: Vec<&str> = ALLOWED
        .iter()
        .copied()
        .filter(|s| !s.to_ascii_lowercase().contains("sql_mode ="))
        .filter(|s| !s.to_ascii_lowercase().contains("sql_mode="))
        .collect();
    let batch = plain.join("\n;\n");
    assert_eq!(check(&session(), &batch), Decision::Allow);
}

#[test]
fn ansi_quotes_make_double_quotes_identifiers() {
    let ansi = Session {
        database: "app_guestbook".into(),
        sql_mode: SqlMode::parse("ANSI"),
    };
    // Under ANSI_QUOTES, "mysql"."user" names the system table.
    assert!(matches!(
        check(&ansi, "SELECT * FROM \"mysql\".\"user\""),
        Decision::Refuse {
            rule: "system-database",
            ..
        }
    ));
    assert_eq!(
        check(&session(), "SELECT \"mysql\".\"user\""),
        Decision::Allow
    );
    // Under ANSI_QUOTES a double quote cannot hide a `;`.
    assert!(matches!(
        check(&ansi, "SELECT \"a;\" FROM t; SHUTDOWN"),
        Decision::Refuse {
            rule: "server-admin",
            ..
        }
    ));
    assert!(matches!(
        check(&session(), "SELECT \"a; SHUTDOWN\""),
        Decision::Allow
    ));
}

#[test]
fn no_backslash_escapes_ends_strings_at_a_backslash() {
    let raw = Session {
        database: "app_guestbook".into(),
        sql_mode: SqlMode::parse("NO_BACKSLASH_ESCAPES"),
    };
    let sql = "SELECT 'a\\'; SHUTDOWN; -- '";
    // With escapes the whole tail is one string; without them SHUTDOWN is a statement.
    assert_eq!(check(&session(), sql), Decision::Allow);
    assert!(matches!(
        check(&raw, sql),
        Decision::Refuse {
            rule: "server-admin",
            ..
        }
    ));
    assert!(matches!(
        check(&raw, "PREPARE s FROM 'SELECT \\'; SHUTDOWN'"),
        Decision::Refuse { .. }
    ));
}
