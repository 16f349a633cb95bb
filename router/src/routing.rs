//! Which app a request is for: a pure function of the Host header and the path over an index
//! built once per route table (no I/O, unit-tested on its own).
//!
//! Order: an exact host match (an app's extra `hosts`, or `APP.<domain>` for each configured
//! domain) wins; otherwise the longest path prefix of an app with a `prefix` route; otherwise
//! nothing (404).

use std::collections::HashMap;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// App number `app` of the table, by its host. The path is forwarded unchanged.
    Host { app: usize },
    /// App number `app` by its path prefix: the app sees `path` (prefix stripped, never
    /// empty) and `X-Berth-Script-Name: script_name`.
    Prefix {
        app: usize,
        script_name: &'a str,
        path: &'a str,
    },
    /// No app serves this host and path.
    NotFound,
}

/// The lookup structure of one route table.
#[derive(Debug, Default, Clone)]
pub struct RouteIndex {
    hosts: HashMap<String, usize>,
    /// `(prefix, app)`, longest first.
    prefixes: Vec<(String, usize)>,
}

/// Why a table's hosts or prefixes cannot be indexed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// Two apps claim one host.
    #[error("host {host:?} is claimed by both app {first:?} and app {second:?}")]
    HostClash {
        /// The host.
        host: String,
        /// The app that claimed it first.
        first: String,
        /// The other app.
        second: String,
    },
    /// Two apps claim one prefix.
    #[error("prefix {prefix:?} is claimed by both app {first:?} and app {second:?}")]
    PrefixClash {
        /// The prefix.
        prefix: String,
        /// The app that claimed it first.
        first: String,
        /// The other app.
        second: String,
    },
}

/// What the index needs to know of one app.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry<'a> {
    /// The app's name.
    pub name: &'a str,
    /// Extra hosts, already normalized.
    pub hosts: &'a [String],
    /// Path prefix, already validated (`/x`, no trailing slash).
    pub prefix: Option<&'a str>,
}

impl RouteIndex {
    /// Indexes `apps` (in table order) for `domains`.
    pub fn build(apps: &[IndexEntry<'_>], domains: &[String]) -> Result<RouteIndex, IndexError> {
        let mut index = RouteIndex::default();
        for (i, app) in apps.iter().enumerate() {
            let derived = domains.iter().map(|d| format!("{}.{d}", app.name));
            for host in app.hosts.iter().cloned().chain(derived) {
                if let Some(&first) = index.hosts.get(&host) {
                    if first == i {
                        continue;
                    }
                    return Err(IndexError::HostClash {
                        host,
                        first: apps[first].name.to_owned(),
                        second: app.name.to_owned(),
                    });
                }
                index.hosts.insert(host, i);
            }
            if let Some(prefix) = app.prefix {
                if let Some(&(_, first)) = index.prefixes.iter().find(|(p, _)| p == prefix) {
                    return Err(IndexError::PrefixClash {
                        prefix: prefix.to_owned(),
                        first: apps[first].name.to_owned(),
                        second: app.name.to_owned(),
                    });
                }
                index.prefixes.push((prefix.to_owned(), i));
            }
        }
        index.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(index)
    }

    /// Routes a request by its raw Host header value (or URI authority) and path.
    pub fn route<'a>(&'a self, host: Option<&str>, path: &'a str) -> Route<'a> {
        if let Some(host) = host.and_then(normalize_host) {
            if let Some(&app) = self.hosts.get(&host) {
                return Route::Host { app };
            }
        }
        for (prefix, app) in &self.prefixes {
            if let Some(rest) = path.strip_prefix(prefix.as_str()) {
                if rest.is_empty() {
                    return Route::Prefix {
                        app: *app,
                        script_name: prefix,
                        path: "/",
                    };
                }
                if rest.starts_with('/') {
                    return Route::Prefix {
                        app: *app,
                        script_name: prefix,
                        path: rest,
                    };
                }
            }
        }
        Route::NotFound
    }
}

/// A Host header value as a lookup key: port and a trailing dot removed, lowercased.
/// `None` for values that are not a host name or IP literal.
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: "[::1]" or "[::1]:8080".
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return Some(format!("[{}]", rest[..end].to_ascii_lowercase()));
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) => {
                if !valid_port(port) {
                    return None;
                }
                h
            }
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        || host
            .split('.')
            .any(|label| label.is_empty() || label.len() > 63)
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// A route prefix is `/` followed by path segments of `[A-Za-z0-9._~-]`, no trailing slash.
pub fn valid_prefix(prefix: &str) -> bool {
    let Some(rest) = prefix.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && prefix.len() <= 256
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn index() -> RouteIndex {
        let shop_hosts = hosts(&["shop.example.com", "www.shop.test"]);
        let apps = [
            IndexEntry {
                name: "guestbook",
                hosts: &[],
                prefix: Some("/guestbook"),
            },
            IndexEntry {
                name: "shop",
                hosts: &shop_hosts,
                prefix: Some("/shop"),
            },
            IndexEntry {
                name: "shop-admin",
                hosts: &[],
                prefix: Some("/shop/admin"),
            },
        ];
        RouteIndex::build(&apps, &hosts(&["localhost", "apps.example.com"])).unwrap()
    }

    #[test]
    fn host_normalization() {
        for (raw, want) in [
            ("guestbook.localhost", Some("guestbook.localhost")),
            ("GuestBook.LocalHost:8080", Some("guestbook.localhost")),
            ("guestbook.localhost.", Some("guestbook.localhost")),
            ("guestbook.localhost.:80", Some("guestbook.localhost")),
            (" shop.example.com ", Some("shop.example.com")),
            ("127.0.0.1:8080", Some("127.0.0.1")),
            ("[::1]:8080", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("[::1]x", None),
            ("host:port", None),
            ("host:", None),
            ("", None),
            (":80", None),
            ("a..b", None),
            ("a b", None),
            ("evil/x", None),
        ] {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn routes_by_host_with_ports_and_case() {
        let ix = index();
        assert_eq!(
            ix.route(Some("guestbook.localhost"), "/x"),
            Route::Host { app: 0 }
        );
        assert_eq!(
            ix.route(Some("GUESTBOOK.localhost:8080"), "/"),
            Route::Host { app: 0 }
        );
        assert_eq!(
            ix.route(Some("shop.apps.example.com"), "/"),
            Route::Host { app: 1 }
        );
        assert_eq!(
            ix.route(Some("Shop.Example.Com:443"), "/"),
            Route::Host { app: 1 }
        );
        assert_eq!(ix.route(Some("www.shop.test"), "/"), Route::Host { app: 1 });
        // A host route never strips a prefix, even one that looks like another app's.
        assert_eq!(
            ix.route(Some("shop.localhost"), "/guestbook/x"),
            Route::Host { app: 1 }
        );
        assert_eq!(ix.route(Some("nope.localhost"), "/"), Route::NotFound);
        assert_eq!(ix.route(Some("localhost"), "/"), Route::NotFound);
        assert_eq!(
            ix.route(Some("x.guestbook.localhost"), "/"),
            Route::NotFound
        );
        assert_eq!(ix.route(None, "/"), Route::NotFound);
    }

    #[test]
    fn routes_by_prefix_longest_first_on_segment_boundaries() {
        let ix = index();
        let p = |app, script_name, path| Route::Prefix {
            app,
            script_name,
            path,
        };
        assert_eq!(
            ix.route(Some("localhost"), "/guestbook/entries"),
            p(0, "/guestbook", "/entries")
        );
        assert_eq!(
            ix.route(Some("localhost:8080"), "/guestbook"),
            p(0, "/guestbook", "/")
        );
        assert_eq!(ix.route(None, "/guestbook/"), p(0, "/guestbook", "/"));
        assert_eq!(ix.route(Some("localhost"), "/guestbooks"), Route::NotFound);
        assert_eq!(
            ix.route(Some("localhost"), "/shop/cart"),
            p(1, "/shop", "/cart")
        );
        assert_eq!(
            ix.route(Some("localhost"), "/shop/admin/users"),
            p(2, "/shop/admin", "/users")
        );
        assert_eq!(
            ix.route(Some("localhost"), "/shop/administrator"),
            p(1, "/shop", "/administrator")
        );
        // Prefixes are case-sensitive, like paths.
        assert_eq!(ix.route(Some("localhost"), "/Shop/cart"), Route::NotFound);
        assert_eq!(ix.route(Some("unknown.host"), "/"), Route::NotFound);
    }

    #[test]
    fn clashes_are_refused() {
        let taken = hosts(&["guestbook.localhost"]);
        let apps = [
            IndexEntry {
                name: "guestbook",
                hosts: &[],
                prefix: Some("/a"),
            },
            IndexEntry {
                name: "other",
                hosts: &taken,
                prefix: None,
            },
        ];
        let e = RouteIndex::build(&apps, &hosts(&["localhost"])).unwrap_err();
        assert!(matches!(e, IndexError::HostClash { .. }), "{e}");
        assert!(e.to_string().contains("guestbook.localhost"));
        let apps = [
            IndexEntry {
                name: "a",
                hosts: &[],
                prefix: Some("/x"),
            },
            IndexEntry {
                name: "b",
                hosts: &[],
                prefix: Some("/x"),
            },
        ];
        let e = RouteIndex::build(&apps, &[]).unwrap_err();
        assert!(matches!(e, IndexError::PrefixClash { .. }), "{e}");
    }

    #[test]
    fn prefix_syntax() {
        for ok in ["/a", "/guestbook", "/a/b-c/d_e.f~"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in [
            "", "/", "a", "/a/", "//a", "/a//b", "/a/../b", "/a b", "/a?x", "/%2e",
        ] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
