//! App names: the one identifier an app has in every service, so the rules that keep it safe
//! as a MySQL user, a key prefix and a path segment live here.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TenantError;

/// Longest app name: `app_` + 28 characters fills MySQL's 32-character user names.
pub const MAX_APP_NAME_LEN: usize = 28;

/// Names that would collide with system accounts, databases or Berth's own roles.
pub const RESERVED_APP_NAMES: [&str; 7] =
    ["root", "mysql", "sys", "admin", "berth", "test", "operator"];

/// A valid app name: `[a-z]([a-z0-9-]{0,26}[a-z0-9])?`, not reserved.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

impl AppName {
    /// Checks `name` against the naming rules.
    pub fn parse(name: &str) -> Result<AppName, TenantError> {
        let refuse = |reason| TenantError::InvalidAppName {
            name: name.to_owned(),
            reason,
        };
        let bytes = name.as_bytes();
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return Err(refuse("it is empty"));
        };
        if bytes.len() > MAX_APP_NAME_LEN {
            return Err(refuse("it is longer than 28 characters"));
        }
        if !first.is_ascii_lowercase() {
            return Err(refuse("it must start with a lowercase letter a-z"));
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(refuse(
                "only lowercase letters a-z, digits and '-' are allowed",
            ));
        }
        if last == b'-' {
            return Err(refuse("it must not end with '-'"));
        }
        if RESERVED_APP_NAMES.contains(&name) {
            return Err(refuse("the name is reserved"));
        }
        Ok(AppName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name in MySQL identifiers (database and user): `app_` + name, `-` as `_`.
    pub fn mysql_ident(&self) -> String {
        format!("app_{}", self.0.replace('-', "_"))
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AppName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `AppName` be queried with a `&str`.
impl Borrow<str> for AppName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for AppName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        AppName::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for name in [
            "a",
            "guestbook",
            "my-app",
            "a1",
            "x-1-y",
            "abc9",
            &"a".repeat(28),
            &format!("a{}z", "-".repeat(26)),
        ] {
            let parsed = AppName::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.to_string(), name);
        }
    }

    #[test]
    fn refuses_invalid_names() {
        let cases = [
            ("", "empty"),
            (&*"a".repeat(29), "longer than 28"),
            ("1app", "start with a lowercase"),
            ("-app", "start with a lowercase"),
            ("App", "start with a lowercase"),
            ("my_app", "only lowercase"),
            ("myApp", "only lowercase"),
            ("my app", "only lowercase"),
            ("app-", "end with '-'"),
            ("appé", "only lowercase"),
        ];
        for (name, reason) in cases {
            let err = AppName::parse(name).expect_err(name).to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
    }

    #[test]
    fn refuses_reserved_names() {
        for name in ["root", "mysql", "sys", "admin", "berth", "test", "operator"] {
            let err = AppName::parse(name).expect_err(name).to_string();
            assert!(err.contains("reserved"), "{err}");
        }
        // Only the exact names are reserved.
        assert!(AppName::parse("tests").is_ok());
        assert!(AppName::parse("admin-panel").is_ok());
    }

    #[test]
    fn mysql_ident_fits_mysql_user_names() {
        let name = AppName::parse("my-guest-book").unwrap();
        assert_eq!(name.mysql_ident(), "app_my_guest_book");
        let longest = AppName::parse(&"z".repeat(28)).unwrap();
        assert_eq!(longest.mysql_ident().len(), 32);
    }

    #[test]
    fn serde_checks_the_rules() {
        #[derive(Deserialize, Serialize)]
        struct W {
            name: AppName,
        }
        let w: W = toml::from_str("name = \"guestbook\"").unwrap();
        assert_eq!(w.name.as_str(), "guestbook");
        assert_eq!(toml::to_string(&w).unwrap().trim(), "name = \"guestbook\"");
        let err = toml::from_str::<W>("name = \"Root\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid app name \"Root\""), "{err}");
    }
}
