//! Signed-in browsers: a random session id in an `HttpOnly`, `SameSite=Strict` cookie, mapped
//! in memory to the token the user signed in with (re-checked on every request, so a revoked
//! token ends its sessions at once) and a per-session CSRF token every form carries. Sessions
//! end after `session_idle` without use, on sign-out, and when berthd restarts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_common::tenants::generate_token;
use parking_lot::Mutex;
use subtle::ConstantTimeEq;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    /// A message for the next page shown ("Rolled back to v3").
    pub flash: Option<String>,
    last_used: Instant,
}

/// The sessions.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            max: max.max(1),
        }
    }

    /// Starts a session for `token`; its id. The oldest idle sessions go when full.
    pub fn create(&self, token: &str) -> String {
        let id = generate_token();
        let mut map = self.map.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_used) < self.idle);
        while map.len() >= self.max {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                token: token.to_string(),
                csrf: generate_token(),
                flash: None,
                last_used: now,
            },
        );
        id
    }

    /// The session `id`, marked used; `None` when unknown or idle too long.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock();
        let now = Instant::now();
        let s = map.get_mut(id)?;
        if now.duration_since(s.last_used) >= self.idle {
            map.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Takes the session's flash message.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.map.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.map.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().remove(id);
    }

    /// Ends every session of `token` (it stopped working).
    pub fn remove_token(&self, token: &str) {
        self.map.lock().retain(|_, s| s.token != token);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// Whether `given` is the session's CSRF token (constant time).
pub fn csrf_ok(session: &Session, given: &str) -> bool {
    !given.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_make_room() {
        let s = Sessions::new(Duration::from_millis(50), 2);
        let a = s.create("ta");
        let b = s.create("tb");
        assert_eq!(s.get(&a).unwrap().token, "ta");
        let c = s.create("tc");
        assert_eq!(s.len(), 2);
        // b was used least recently.
        assert!(s.get(&b).is_none());
        assert!(s.get(&c).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.get(&a).is_none());
    }

    #[test]
    fn flash_and_csrf() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let id = s.create("t");
        s.set_flash(&id, "done".into());
        assert_eq!(s.take_flash(&id).as_deref(), Some("done"));
        assert_eq!(s.take_flash(&id), None);
        let session = s.get(&id).unwrap();
        assert!(csrf_ok(&session, &session.csrf.clone()));
        assert!(!csrf_ok(&session, ""));
        assert!(!csrf_ok(&session, "x"));
        s.remove_token("t");
        assert!(s.get(&id).is_none());
    }
}
