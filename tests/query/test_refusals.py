"""Table-driven refusals through the real proxy: every rule family, with case, whitespace,
comment and executable-comment obfuscation. Each answer is a MySQL ERR packet with SQLSTATE
42000 naming the rule, and the session stays usable. Also: what drivers and ORMs send on
connect passes."""

from __future__ import annotations

import pymysql
import pytest
from pymysql.constants import CLIENT

from .conftest import Proxy

OTHER = "app_someone_else"

# (statement, MySQL error code, rule)
REFUSED: list[tuple[str, int, str]] = [
    # file-access
    ("SELECT LOAD_FILE('/etc/passwd')", 1227, "file-access"),
    ("select load_file ( '/etc/shadow' )", 1227, "file-access"),
    ("SELECT/**/LoAd_FiLe('/etc/passwd')", 1227, "file-access"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", 1227, "file-access"),
    ("select * from t into\n\tdumpfile '/tmp/y'", 1227, "file-access"),
    ("LOAD DATA INFILE '/etc/passwd' INTO TABLE t", 1227, "file-access"),
    ("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t", 1227, "file-access"),
    ("load/**/data/**/infile '/etc/passwd' into table t", 1227, "file-access"),
    ("LOAD XML INFILE '/tmp/x.xml' INTO TABLE t", 1227, "file-access"),
    ("CREATE TABLE f (a INT) DATA DIRECTORY = '/tmp'", 1227, "file-access"),
    ("SELECT 1 /*!INTO OUTFILE '/tmp/z' */", 1227, "file-access"),
    ("SELECT /*!50000 LOAD_FILE('/etc/passwd') */", 1227, "file-access"),
    ("ALTER TABLE t DISCARD TABLESPACE", 1227, "file-access"),
    # system-database
    ("SELECT * FROM mysql.user", 1044, "system-database"),
    ("select user, password from MYSQL.USER", 1044, "system-database"),
    ("SELECT * FROM `mysql`.`user`", 1044, "system-database"),
    ("SELECT * FROM mysql . user", 1044, "system-database"),
    ("SELECT * FROM performance_schema.threads", 1044, "system-database"),
    ("SELECT * FROM sys.processlist", 1044, "system-database"),
    ("SELECT 1 FROM /* hi */ mysql.db", 1044, "system-database"),
    ("UPDATE mysql.user SET password = '' WHERE user = 'root'", 1044, "system-database"),
    ("DELETE FROM mysql.global_priv", 1044, "system-database"),
    ("INSERT INTO mysql.db VALUES (1)", 1044, "system-database"),
    # other-database
    (f"SELECT * FROM {OTHER}.t", 1044, "other-database"),
    (f"select * from `{OTHER}`.`t`", 1044, "other-database"),
    (f"SELECT a FROM t JOIN {OTHER}.u ON 1", 1044, "other-database"),
    (f"INSERT INTO {OTHER}.t VALUES (1)", 1044, "other-database"),
    (f"CREATE TABLE x LIKE {OTHER}.t", 1044, "other-database"),
    (f"RENAME TABLE t TO {OTHER}.t", 1044, "other-database"),
    (f"SHOW TABLES FROM {OTHER}", 1044, "other-database"),
    # information-schema
    ("SELECT * FROM information_schema.PROCESSLIST", 1142, "information-schema"),
    ("select * from INFORMATION_SCHEMA.user_privileges", 1142, "information-schema"),
    ("SELECT * FROM information_schema.GLOBAL_VARIABLES", 1142, "information-schema"),
    (f"SELECT * FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{OTHER}'", 1142, "information-schema"),
    # database-admin
    ("USE mysql", 1044, "database-admin"),
    ("use information_schema", 1044, "database-admin"),
    (f"USE `{OTHER}`", 1044, "database-admin"),
    ("CREATE DATABASE evil", 1044, "database-admin"),
    ("create   schema evil", 1044, "database-admin"),
    ("DROP DATABASE mysql", 1044, "database-admin"),
    ("ALTER DATABASE app_x CHARACTER SET latin1", 1044, "database-admin"),
    # account-admin
    ("GRANT ALL ON *.* TO 'x'@'%'", 1227, "account-admin"),
    ("grant select on mysql.* to current_user", 1227, "account-admin"),
    ("REVOKE ALL PRIVILEGES ON *.* FROM 'root'@'localhost'", 1227, "account-admin"),
    ("CREATE USER evil IDENTIFIED BY 'x'", 1227, "account-admin"),
    ("DROP USER root", 1227, "account-admin"),
    ("ALTER USER CURRENT_USER() IDENTIFIED BY 'x'", 1227, "account-admin"),
    ("RENAME USER a TO b", 1227, "account-admin"),
    ("SET PASSWORD = PASSWORD('x')", 1227, "account-admin"),
    ("set password for root@localhost = 'x'", 1227, "account-admin"),
    ("CREATE ROLE r", 1227, "account-admin"),
    ("SET ROLE admin", 1227, "account-admin"),
    ("SHOW GRANTS", 1227, "account-admin"),
    # global-variable
    ("SET GLOBAL max_connections = 1", 1227, "global-variable"),
    ("set @@global.general_log = 1", 1227, "global-variable"),
    ("SET  GLOBAL  read_only=1", 1227, "global-variable"),
    ("SET @@GLOBAL.sql_mode = ''", 1227, "global-variable"),
    # limit-variable
    ("SET max_statement_time = 0", 1227, "limit-variable"),
    ("SET SESSION max_statement_time=0", 1227, "limit-variable"),
    ("set @@session.MAX_STATEMENT_TIME = 1000", 1227, "limit-variable"),
    ("SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(100)", 1227, "limit-variable"),
    ("SET max_recursive_iterations = 100000000", 1227, "limit-variable"),
    ("SET tmp_table_size = 1073741824", 1227, "limit-variable"),
    # session-variable
    ("SET sql_log_bin = 0", 1227, "session-variable"),
    ("SET pseudo_thread_id = 1", 1227, "session-variable"),
    ("SET NAMES latin1", 1227, "session-variable"),
    ("SET NAMES gbk", 1227, "session-variable"),
    ("SET character_set_client = sjis", 1227, "session-variable"),
    # sql-mode
    ("SET sql_mode = 'ORACLE'", 1227, "sql-mode"),
    ("SET sql_mode = @x", 1227, "sql-mode"),
    # storage-engine
    ("CREATE TABLE c (a INT) ENGINE = CONNECT TABLE_TYPE=DOS FILE_NAME='/etc/passwd'", 1227, "storage-engine"),
    ("create table f (a int) engine=federated connection='mysql://root@127.0.0.1/mysql/user'", 1227, "storage-engine"),
    ("CREATE TABLE m (a INT) ENGINE=MERGE UNION=(t)", 1227, "storage-engine"),
    ("ALTER TABLE t ENGINE = CSV", 1227, "storage-engine"),
    # server-admin
    ("SHUTDOWN", 1227, "server-admin"),
    ("KILL 1", 1227, "server-admin"),
    ("kill query 1", 1227, "server-admin"),
    ("FLUSH PRIVILEGES", 1227, "server-admin"),
    ("flush tables with read lock", 1227, "server-admin"),
    ("RESET QUERY CACHE", 1227, "server-admin"),
    ("SHOW PROCESSLIST", 1227, "server-admin"),
    ("show full processlist", 1227, "server-admin"),
    ("SHOW ENGINE INNODB STATUS", 1227, "server-admin"),
    ("XA START 'x'", 1227, "server-admin"),
    ("HANDLER t OPEN", 1227, "server-admin"),
    ("OPTIMIZE TABLE t", 1227, "server-admin"),
    ("CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST 'x')", 1227, "server-admin"),
    # show
    ("SHOW GLOBAL STATUS", 1227, "show"),
    ("SHOW GLOBAL VARIABLES", 1227, "show"),
    # plugin
    ("INSTALL PLUGIN x SONAME 'x.so'", 1227, "plugin"),
    ("install soname 'ha_connect'", 1227, "plugin"),
    ("UNINSTALL PLUGIN x", 1227, "plugin"),
    ("CREATE FUNCTION sys_exec RETURNS INT SONAME 'lib_mysqludf_sys.so'", 1227, "plugin"),
    ("SELECT sys_exec('id')", 1227, "plugin"),
    ("SHOW PLUGINS", 1227, "plugin"),
    # replication
    ("CHANGE MASTER TO MASTER_HOST = 'evil'", 1227, "replication"),
    ("START SLAVE", 1227, "replication"),
    ("stop replica", 1227, "replication"),
    ("PURGE BINARY LOGS BEFORE NOW()", 1227, "replication"),
    ("SHOW MASTER STATUS", 1227, "replication"),
    ("SHOW BINLOG EVENTS", 1227, "replication"),
    ("SELECT MASTER_POS_WAIT('x', 1)", 1227, "replication"),
    # stored-program
    ("CREATE PROCEDURE p() SELECT 1", 1227, "stored-program"),
    ("CREATE DEFINER = root@localhost VIEW v AS SELECT 1", 1227, "stored-program"),
    ("CREATE FUNCTION f() RETURNS INT RETURN 1", 1227, "stored-program"),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @x = 1", 1227, "stored-program"),
    ("CREATE EVENT e ON SCHEDULE EVERY 1 SECOND DO SELECT 1", 1227, "stored-program"),
    ("CALL p()", 1227, "stored-program"),
    ("call   P ( )", 1227, "stored-program"),
    ("BEGIN NOT ATOMIC SELECT 1; END", 1227, "stored-program"),
    # dynamic-sql
    ("PREPARE s FROM @sql", 1227, "dynamic-sql"),
    ("EXECUTE IMMEDIATE 'SELECT 1'", 1227, "dynamic-sql"),
    ("execute immediate concat('SELECT * FROM mysql', '.user')", 1227, "dynamic-sql"),
    ("PREPARE s FROM 'SELECT * FROM mysql.user'", 1044, "system-database"),
    # server-wide-lock
    ("SELECT GET_LOCK('x', 10)", 1227, "server-wide-lock"),
    ("select release_lock('x')", 1227, "server-wide-lock"),
    ("SELECT IS_USED_LOCK('x')", 1227, "server-wide-lock"),
    # lexical
    ("SELECT 'unterminated", 1064, "lexical"),
    ("SELECT 1 /* unterminated", 1064, "lexical"),
    ("SELECT `unterminated", 1064, "lexical"),
    ("SELECT 1 /*!99999 ; DROP TABLE t */", 1064, "lexical"),
    # client-command
    ("DELIMITER //", 1064, "client-command"),
    # unknown-statement
    ("CREATE SEQUENCE s", 1227, "unknown-statement"),
    ("FROBNICATE EVERYTHING", 1227, "unknown-statement"),
    # a batch is refused as a whole
    ("SELECT 1; SELECT * FROM mysql.user", 1044, "system-database"),
    ("select 1;\n-- comment\nSHUTDOWN", 1227, "server-admin"),
    ("SELECT 1; /*!SHUTDOWN*/", 1227, "server-admin"),
]


def test_the_corpus_is_big_enough_and_covers_every_family() -> None:
    assert len(REFUSED) >= 80
    families = {rule for _, _, rule in REFUSED}
    assert families >= {
        "file-access", "system-database", "other-database", "information-schema", "database-admin",
        "account-admin", "global-variable", "limit-variable", "session-variable", "sql-mode",
        "storage-engine", "server-admin", "show", "plugin", "replication", "stored-program",
        "dynamic-sql", "server-wide-lock", "lexical", "client-command", "unknown-statement",
    }


@pytest.fixture(scope="module")
def conn(proxy: Proxy):
    c = proxy.pymysql("alpha", client_flag=CLIENT.MULTI_STATEMENTS)
    with c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS t (a INT)")
    yield c
    c.close()


@pytest.mark.parametrize("sql,code,rule", REFUSED, ids=[f"{i:03d}" for i in range(len(REFUSED))])
def test_refused_through_the_proxy(conn, sql: str, code: int, rule: str) -> None:
    with conn.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError) as e:
            cur.execute(sql)
        errno, message = e.value.args
        assert errno == code, (sql, message)
        assert message.endswith(f"(query-proxy rule {rule})"), (sql, message)
        # The session stays usable.
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)


def test_refusals_carry_sqlstate_42000(proxy: Proxy) -> None:
    r = proxy.login("alpha")
    for sql, code, _ in REFUSED[:20]:
        r.command(b"\x03" + sql.encode())
        p = r.read()
        assert p[0] == 0xFF and p[3:9] == b"#42000", sql
    r.close()


def test_refusals_are_logged_for_the_operator(proxy: Proxy) -> None:
    r = proxy.login("alpha")
    r.command(b"\x03SELECT LOAD_FILE('/etc/hostname') AS marker_refusal_log")
    r.read()
    r.close()
    import time

    deadline = time.monotonic() + 5
    while "marker_refusal_log" not in proxy.process.stderr_tail(200_000):
        assert time.monotonic() < deadline, proxy.process.stderr_tail()
        time.sleep(0.05)
    assert "file-access" in proxy.process.stderr_tail(200_000)


# What drivers, ORMs and the mysql client send on connect, and common introspection.
ORM_CONNECT = [
    "SET NAMES utf8mb4",
    "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
    "SET NAMES 'utf8'",
    "SET autocommit=0",
    "SET autocommit=1",
    "SELECT @@version",
    "SELECT @@version_comment LIMIT 1",
    "SELECT @@tx_isolation",
    "SELECT @@session.tx_read_only",
    "SHOW VARIABLES LIKE 'sql_mode'",
    "SHOW VARIABLES LIKE 'lower_case_table_names'",
    "SHOW COLLATION",
    "SHOW CHARACTER SET",
    "SELECT DATABASE()",
    "SELECT USER()",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "ROLLBACK",
    "COMMIT",
    "SELECT CAST('test plain returns' AS CHAR(60)) AS anon_1",
    "SELECT CAST('test unicode returns' AS CHAR(60)) AS anon_1",
    "SET sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE'",
    "SET time_zone = '+00:00'",
    "SET SESSION sql_mode = 'TRADITIONAL'",
    "/*!40101 SET NAMES utf8mb4 */",
    "/*!40014 SET FOREIGN_KEY_CHECKS=0 */",
    "/*!40014 SET FOREIGN_KEY_CHECKS=1 */",
    "SHOW TABLES",
    "SHOW FULL TABLES",
    "SHOW TABLE STATUS",
    "SHOW DATABASES",
    "SHOW WARNINGS",
    "SHOW ENGINES",
    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
    "SELECT 1",
    "START TRANSACTION",
    "BEGIN",
    "DO 1",
]


@pytest.mark.parametrize("sql", ORM_CONNECT)
def test_orm_connect_statements_pass(proxy: Proxy, sql: str) -> None:
    with proxy.pymysql("alpha") as c, c.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()
