//! `[web]` of clinic.toml: where the clinic serves its inbox page.
//!
//! ```toml
//! [web]
//! listen = "127.0.0.1:8765"   # the default; loopback only
//! enabled = true              # false: no web page
//! ```
//!
//! The page has no login and shows TLP:RED and TLP:AMBER advisories, so it is served on a
//! loopback address only; another PC reaches it through an SSH tunnel, never a LAN bind.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::error::CliError;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// `[web]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Serve the web inbox (default true).
    pub enabled: Option<bool>,
    /// Listen address (default `127.0.0.1:8765`; port 0 = any free port).
    pub listen: Option<String>,
}

impl WebSection {
    /// The checked listen address, or `None` when the page is turned off. Errors name the
    /// field (`web.listen: …`).
    pub fn check(&self) -> Result<Option<SocketAddr>, CliError> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let addr: SocketAddr = text.trim().parse().map_err(|e| {
            CliError::Config(format!("web.listen: {text:?}: {e} (expected IP:PORT, e.g. {DEFAULT_LISTEN:?})"))
        })?;
        if !addr.ip().is_loopback() {
            return Err(CliError::Config(format!(
                "web.listen: {addr} is not a loopback address: the page has no login and shows \
                 TLP:RED/AMBER advisories, so it is served on 127.0.0.1 or [::1] only \
                 (reach it from another PC through an SSH tunnel; or set web.enabled = false)"
            )));
        }
        Ok(Some(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(enabled: Option<bool>, listen: Option<&str>) -> Result<Option<SocketAddr>, String> {
        WebSection { enabled, listen: listen.map(str::to_owned) }.check().map_err(|e| e.to_string())
    }

    #[test]
    fn on_by_default_on_loopback() {
        assert_eq!(check(None, None), Ok(Some(SocketAddr::from(([127, 0, 0, 1], 8765)))));
        assert_eq!(check(Some(true), Some("[::1]:9000")).map(|a| a.map(|a| a.port())), Ok(Some(9000)));
        assert_eq!(check(Some(false), Some("not an address")), Ok(None));
    }

    #[test]
    fn bad_addresses_name_the_field() {
        for bad in ["localhost:8765", "127.0.0.1", "127.0.0.1:99999", ""] {
            let error = check(None, Some(bad)).expect_err(bad);
            assert!(error.starts_with("configuration error: web.listen: "), "{error}");
        }
        let error = check(None, Some("0.0.0.0:8765")).expect_err("wildcard");
        assert!(error.contains("not a loopback address"), "{error}");
        assert!(check(None, Some("192.168.1.10:8765")).is_err());
    }

    #[test]
    fn exit_code_is_64() {
        let error = WebSection { enabled: None, listen: Some("nonsense".into()) }.check().expect_err("bad");
        assert_eq!(error.exit_code(), 64);
    }
}
