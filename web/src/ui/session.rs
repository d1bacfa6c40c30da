//! Dashboard sessions: the API token is exchanged at /login for a random session id in an
//! HttpOnly, SameSite=Strict cookie; every state-changing form carries the session's CSRF
//! token. Sessions live in memory (a daemon restart logs everyone out) for 12 hours.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};

use super::UiState;

pub const COOKIE: &str = "wasmnet_session";
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

struct Session {
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session; returns (session id, CSRF token).
    pub fn create(&self) -> (String, String) {
        let (id, csrf) = (wasmnet_engine::ids::new_id(), wasmnet_engine::ids::new_id());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    fn csrf_of(&self, id: &str) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A logged-in request: its session id and CSRF token. Anyone else is sent to /login.
pub struct Authed {
    pub session: String,
    pub csrf: String,
}

impl Authed {
    /// Whether a submitted form's CSRF token is this session's.
    pub fn check(&self, submitted: &str) -> bool {
        use subtle::ConstantTimeEq;
        submitted.len() == self.csrf.len()
            && bool::from(submitted.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

impl FromRequestParts<UiState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        let session = cookie(&parts.headers, COOKIE);
        match session
            .as_deref()
            .and_then(|s| state.sessions.csrf_of(s).map(|c| (s.to_string(), c)))
        {
            Some((session, csrf)) => Ok(Authed { session, csrf }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        LIFETIME.as_secs()
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; wasmnet_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn sessions_expire_and_can_be_removed() {
        let s = Sessions::default();
        let (id, csrf) = s.create();
        assert_eq!(s.csrf_of(&id), Some(csrf));
        s.remove(&id);
        assert_eq!(s.csrf_of(&id), None);
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict"));
    }
}
