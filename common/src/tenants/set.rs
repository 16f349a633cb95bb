//! The set of tenants a service serves, parsed from a TOML tenants file or from memcached's
//! `-Y` authfile, with authentication that leaks nothing about which apps exist.

use std::collections::btree_map::{BTreeMap, Entry};
use std::path::Path;

use serde::{Deserialize, Serialize};
use subtle::Choice;

use super::tenant::hash_token_sha256;
use super::{hash_token, AppName, OperatorTokens, Tenant, TenantError, TokenHash};
use crate::config::{self, ConfigError};

/// Compared against when the app does not exist, so a miss costs what a hit costs. No token
/// hashes to it in practice, and the result is masked anyway.
const DUMMY_TOKEN: TokenHash = TokenHash {
    sha256: [0; 32],
    mysql_native: None,
};

/// The apps a service knows, by name. Immutable: a reload builds a new set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantSet {
    tenants: BTreeMap<AppName, Tenant>,
    /// Read from a memcached authfile: names and tokens only, every limit a default.
    authfile: bool,
    /// Operator tokens that come with the set (`operator_tokens` of the file, or of berthd's
    /// registry), accepted besides those of the service's own config.
    operators: OperatorTokens,
}

/// The TOML file: optional `operator_tokens` (hex SHA-256 hashes), then `[[app]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    #[serde(default)]
    operator_tokens: OperatorTokens,
    #[serde(default)]
    app: Vec<Tenant>,
}

#[derive(Serialize)]
struct TenantsFileOut<'a> {
    #[serde(skip_serializing_if = "OperatorTokens::is_empty")]
    operator_tokens: &'a OperatorTokens,
    app: Vec<&'a Tenant>,
}

impl TenantSet {
    /// No tenants: services then serve one anonymous namespace, as memcached does.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a set, refusing duplicate names and invalid limits.
    pub fn from_tenants(tenants: impl IntoIterator<Item = Tenant>) -> Result<Self, TenantError> {
        let mut map = BTreeMap::new();
        for tenant in tenants {
            tenant.validate()?;
            match map.entry(tenant.name.clone()) {
                Entry::Occupied(e) => return Err(TenantError::DuplicateApp(e.key().to_string())),
                Entry::Vacant(e) => {
                    e.insert(tenant);
                }
            }
        }
        Ok(Self {
            tenants: map,
            authfile: false,
            operators: OperatorTokens::default(),
        })
    }

    /// The set with `operators` as the operator tokens that come with it.
    pub fn with_operators(mut self, operators: OperatorTokens) -> Self {
        self.operators = operators;
        self
    }

    /// The operator tokens that came with the set (a tenants file's or berthd's registry's
    /// `operator_tokens`); a service accepts these besides its configured ones.
    pub fn operators(&self) -> &OperatorTokens {
        &self.operators
    }

    /// Whether the set came from a memcached authfile, which carries no limits: a service may
    /// then size namespaces itself (the cache server splits `-m` evenly, as `-Y` users expect).
    pub fn is_authfile(&self) -> bool {
        self.authfile
    }

    /// True when there are no tenants.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// How many apps.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// The app named `name`.
    pub fn get(&self, name: &str) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Every app, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// The app if `token` is one of its tokens. Hashes the token and compares it in constant
    /// time against every token of the app (or a dummy when there is no such app), so the
    /// answer takes the same time whether or not the app exists.
    pub fn authenticate(&self, app: &str, token: &str) -> Option<&Tenant> {
        let digest = hash_token_sha256(token);
        let tenant = self.tenants.get(app);
        let tokens = match tenant {
            Some(t) if !t.tokens.is_empty() => t.tokens.as_slice(),
            _ => std::slice::from_ref(&DUMMY_TOKEN),
        };
        let found = tokens.iter().fold(Choice::from(0), |found, t| {
            found | t.matches_sha256(&digest)
        });
        let found = found & Choice::from(u8::from(tenant.is_some_and(|t| !t.tokens.is_empty())));
        if bool::from(found) {
            tenant
        } else {
            None
        }
    }

    /// The app holding `token`, for protocols that carry a token without the app's name
    /// (HTTP `Authorization: Bearer`). Every token of every app is compared, in constant time
    /// each, so the time taken depends on how many tokens exist, never on which one matched.
    pub fn authenticate_token(&self, token: &str) -> Option<&Tenant> {
        let digest = hash_token_sha256(token);
        let mut found: Option<&Tenant> = None;
        for tenant in self.tenants.values() {
            let hit = tenant
                .tokens
                .iter()
                .fold(Choice::from(0), |acc, t| acc | t.matches_sha256(&digest));
            if bool::from(hit) {
                found = Some(tenant);
            }
        }
        found
    }

    /// Parses a TOML tenants file (`[[app]]` tables).
    pub fn from_toml_str(text: &str) -> Result<Self, TenantError> {
        Self::parse_toml(text, "<tenants>")
    }

    fn parse_toml(text: &str, origin: &str) -> Result<Self, TenantError> {
        let file: TenantsFile = config::from_toml_str(text, origin)?;
        Ok(Self::from_tenants(file.app)?.with_operators(file.operator_tokens))
    }

    /// Parses memcached's `-Y` authfile: one `name:token` per line, blank lines ignored. The
    /// same name on several lines gives that app several tokens; limits are the defaults.
    pub fn from_memcached_authfile(text: &str) -> Result<Self, TenantError> {
        Self::parse_authfile(text, "<authfile>")
    }

    fn parse_authfile(text: &str, origin: &str) -> Result<Self, TenantError> {
        let mut tenants: BTreeMap<AppName, Tenant> = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let refuse = |reason: String| TenantError::Authfile {
                origin: origin.to_owned(),
                line: index + 1,
                reason,
            };
            let (name, token) = line
                .split_once(':')
                .ok_or_else(|| refuse("expected name:token".to_owned()))?;
            let name = AppName::parse(name).map_err(|e| refuse(e.to_string()))?;
            // The login line is `<app> <token>`, so a token with whitespace could never match.
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err(refuse(format!(
                    "the token of app {name} is empty or contains whitespace"
                )));
            }
            tenants
                .entry(name.clone())
                .or_insert_with(|| Tenant::new(name))
                .tokens
                .push(hash_token(token));
        }
        Ok(Self {
            tenants,
            authfile: true,
            operators: OperatorTokens::default(),
        })
    }

    /// Reads a tenants file, TOML or memcached authfile (see [`looks_like_authfile`]).
    pub fn load(path: &Path) -> Result<TenantSet, TenantError> {
        let text = std::fs::read_to_string(path).map_err(|source| TenantError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        if looks_like_authfile(&text) {
            Self::parse_authfile(&text, &origin)
        } else {
            Self::parse_toml(&text, &origin)
        }
    }

    /// The set as a TOML tenants file (tokens as hashes only).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        config::to_toml(&TenantsFileOut {
            operator_tokens: &self.operators,
            app: self.tenants.values().collect(),
        })
    }
}

/// Whether every non-empty line reads `name:token`: the text before the first `:` holds no
/// whitespace, `=`, `[`, `{`, quote or `#`, which every meaningful TOML line breaks. The token
/// itself may contain `=` (base64 passwords in existing memcached authfiles).
pub fn looks_like_authfile(text: &str) -> bool {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some()
        && lines.all(|line| match line.split_once(':') {
            Some((name, _)) => {
                !name.is_empty()
                    && !name.contains(|c: char| c.is_whitespace() || "=[{\"'#".contains(c))
            }
            None => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    const TOML: &str = r#"
[[app]]
name = "guestbook"
tokens = [{ sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8" }]
cache_bytes = "16MiB"

[[app]]
name = "blog"
token = "blog-dev-token"
"#;

    #[test]
    fn bearer_tokens_find_their_app() {
        let set = TenantSet::from_toml_str(
            "[[app]]\nname = \"alpha\"\ntoken = \"ta\"\n[[app]]\nname = \"beta\"\ntoken = \"tb\"\n",
        )
        .unwrap();
        assert_eq!(set.authenticate_token("ta").unwrap().name.as_str(), "alpha");
        assert_eq!(set.authenticate_token("tb").unwrap().name.as_str(), "beta");
        assert!(set.authenticate_token("tc").is_none());
        assert!(set.authenticate_token("").is_none());
        assert!(TenantSet::empty().authenticate_token("ta").is_none());
    }

    #[test]
    fn toml_file_parses() {
        let set = TenantSet::from_toml_str(TOML).unwrap();
        assert_eq!(set.len(), 2);
        assert!(!set.is_empty());
        assert_eq!(set.get("guestbook").unwrap().cache_bytes, ByteSize::mib(16));
        assert_eq!(set.get("blog").unwrap().cache_bytes, ByteSize::mib(64));
        assert!(set.get("nope").is_none());
        let names: Vec<&str> = set.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["blog", "guestbook"]);

        let printed = set.to_toml().unwrap();
        assert!(!printed.contains("blog-dev-token"), "{printed}");
        assert_eq!(TenantSet::from_toml_str(&printed).unwrap(), set);

        assert!(TenantSet::from_toml_str("").unwrap().is_empty());
        assert!(TenantSet::empty().is_empty());
    }

    #[test]
    fn authenticate_checks_app_and_token() {
        let set = TenantSet::from_toml_str(TOML).unwrap();
        assert_eq!(
            set.authenticate("guestbook", "password")
                .unwrap()
                .name
                .as_str(),
            "guestbook"
        );
        assert_eq!(
            set.authenticate("blog", "blog-dev-token")
                .unwrap()
                .name
                .as_str(),
            "blog"
        );
        assert!(set.authenticate("blog", "password").is_none());
        assert!(set.authenticate("guestbook", "blog-dev-token").is_none());
        assert!(set.authenticate("nope", "password").is_none());
        assert!(set.authenticate("", "").is_none());

        let tokenless = Tenant::new(AppName::parse("quiet").unwrap());
        let set = TenantSet::from_tenants([tokenless]).unwrap();
        assert!(set.authenticate("quiet", "").is_none());
    }

    #[test]
    fn toml_errors_name_line_and_key() {
        let err = TenantSet::from_toml_str("[[app]]\nname = \"a\"\nmax_conections = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("<tenants>:3:1: ") && err.contains("unknown field `max_conections`"),
            "{err}"
        );

        let err = TenantSet::from_toml_str("[[apps]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `apps`"), "{err}");

        let err = TenantSet::from_toml_str("[[app]]\nname = \"admin\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("<tenants>:2:") && err.contains("reserved"),
            "{err}"
        );

        let err = TenantSet::from_toml_str("[[app]]\nname = \"a\"\n[[app]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "app a is listed twice");
    }

    #[test]
    fn authfile_parses() {
        let set = TenantSet::from_memcached_authfile(
            "guestbook:tok1\r\n\n  \nblog:b=tok:2\nguestbook:tok3",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.authenticate("guestbook", "tok1").is_some());
        assert!(set.authenticate("guestbook", "tok3").is_some());
        assert!(set.authenticate("blog", "b=tok:2").is_some());
        assert!(set.authenticate("blog", "tok1").is_none());
        assert_eq!(set.get("blog").unwrap().cache_bytes, ByteSize::mib(64));
        assert!(TenantSet::from_memcached_authfile("").unwrap().is_empty());
    }

    #[test]
    fn authfile_errors_name_the_line() {
        let cases = [
            ("ok:t\nnocolon\n", ":2: expected name:token"),
            (
                "Bad:t",
                ":1: invalid app name \"Bad\": it must start with a lowercase letter a-z",
            ),
            (
                "ok:t\n\nroot:t",
                ":3: invalid app name \"root\": the name is reserved",
            ),
            (
                "ok:",
                ":1: the token of app ok is empty or contains whitespace",
            ),
            (
                "ok:a b",
                ":1: the token of app ok is empty or contains whitespace",
            ),
        ];
        for (text, expected) in cases {
            let err = TenantSet::from_memcached_authfile(text)
                .unwrap_err()
                .to_string();
            assert_eq!(err, format!("<authfile>{expected}"), "{text:?}");
        }
    }

    #[test]
    fn format_detection() {
        assert!(looks_like_authfile("app:tok\n\nother:x=y[z]\n"));
        assert!(looks_like_authfile("Bad_Name:tok"));
        assert!(!looks_like_authfile(""));
        assert!(!looks_like_authfile(TOML));
        assert!(!looks_like_authfile("# only: a comment\n"));
        assert!(!looks_like_authfile("app:tok\nname = \"x:y\""));
        assert!(!looks_like_authfile("app:tok\n[[app]]"));
    }

    #[test]
    fn operator_tokens_come_with_the_set_and_survive_a_round_trip() {
        let op = crate::tenants::generate_token();
        let hash = hex::encode(crate::tenants::hash_token(&op).sha256);
        let text = format!("operator_tokens = [\"{hash}\"]\n\n{TOML}");
        let set = TenantSet::from_toml_str(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.operators().verify(&op));
        assert!(!set.operators().verify("not-it"));
        let again = TenantSet::from_toml_str(&set.to_toml().unwrap()).unwrap();
        assert_eq!(again, set);
        assert!(TenantSet::from_toml_str("operator_tokens = [\"zz\"]\n").is_err());
        assert!(TenantSet::from_toml_str(TOML)
            .unwrap()
            .operators()
            .is_empty());

        // A service accepts its configured tokens and those of its tenants' current set.
        let handle = crate::tenants::TenantsHandle::new(TenantSet::empty());
        let configured = crate::tenants::generate_token();
        let ops = crate::tenants::Operators::following(
            crate::tenants::OperatorTokens::from_tokens(&[&configured]),
            handle.clone(),
        );
        assert!(ops.verify(&configured) && !ops.verify(&op));
        assert_eq!(ops.len(), 1);
        handle.replace(set);
        assert!(ops.verify(&configured) && ops.verify(&op));
        assert_eq!(ops.len(), 2);
    }

    #[test]
    fn load_detects_the_format() {
        let dir = std::env::temp_dir().join(format!("berth-common-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("tenants.toml");
        std::fs::write(&toml_path, TOML).unwrap();
        assert_eq!(TenantSet::load(&toml_path).unwrap().len(), 2);

        let auth_path = dir.join("authfile");
        std::fs::write(&auth_path, "one:t1\ntwo:t2\nthree:t3\n").unwrap();
        let set = TenantSet::load(&auth_path).unwrap();
        assert_eq!(set.len(), 3);
        assert!(set.authenticate("two", "t2").is_some());

        std::fs::write(&auth_path, "one:t1\nTwo:t2\n").unwrap();
        let err = TenantSet::load(&auth_path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2: ", auth_path.display())),
            "{err}"
        );

        let err = TenantSet::load(&dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read tenants file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
