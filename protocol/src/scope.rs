//! Region scopes: `jp`, `jp/13`, `jp/13/chuo`.
//!
//! A scope is a path of segments from the country down. Scope `a` *contains* `b` when `a`'s
//! segments are a prefix of `b`'s. Relays route by scope, certificates nest by scope.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{MAX_ID_BYTES, MAX_SCOPE_DEPTH};

/// A region path. Segments are 1–32 characters of lowercase ASCII letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    segments: Vec<String>,
}

impl Scope {
    /// Parses a path such as `jp/13/chuo`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_ID_BYTES * 2 {
            return Err(format!("scope must be 1 to {} bytes, got {}", MAX_ID_BYTES * 2, text.len()));
        }
        let segments: Vec<String> = text.split('/').map(str::to_owned).collect();
        if segments.len() > MAX_SCOPE_DEPTH {
            return Err(format!("scope {text:?} is deeper than {MAX_SCOPE_DEPTH} segments"));
        }
        for segment in &segments {
            let valid = !segment.is_empty()
                && segment.len() <= 32
                && segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(format!(
                    "scope {text:?}: segment {segment:?} must be 1-32 characters of a-z, 0-9 and '-'"
                ));
            }
        }
        Ok(Self { segments })
    }

    /// The segments, country first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Number of segments (`jp` is 1, `jp/13` is 2).
    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    /// Whether `other` lies inside this scope (or is equal to it).
    pub fn contains(&self, other: &Scope) -> bool {
        other.segments.len() >= self.segments.len()
            && other.segments[..self.segments.len()] == self.segments[..]
    }

    /// Whether one of the two scopes contains the other: an advisory for `jp` concerns the
    /// relay of `jp/13`, and an advisory for `jp/13` concerns the relay of `jp`.
    pub fn overlaps(&self, other: &Scope) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The scope one level down: `jp`.child("13") is `jp/13`.
    pub fn child(&self, segment: &str) -> Result<Self, String> {
        Scope::parse(&format!("{self}/{segment}"))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::parse(text)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Scope::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        Scope::parse(text).expect("valid scope")
    }

    #[test]
    fn containment_is_by_whole_segments() {
        assert!(scope("jp").contains(&scope("jp/13")));
        assert!(scope("jp/13").contains(&scope("jp/13")));
        assert!(scope("jp/13").contains(&scope("jp/13/chuo")));
        assert!(!scope("jp/1").contains(&scope("jp/13")));
        assert!(!scope("jp/13").contains(&scope("jp")));
        assert!(!scope("jp/13").contains(&scope("jp/14/x")));
    }

    #[test]
    fn overlap_is_either_direction() {
        assert!(scope("jp/13").overlaps(&scope("jp")));
        assert!(scope("jp").overlaps(&scope("jp/13/chuo")));
        assert!(!scope("jp/13").overlaps(&scope("jp/27")));
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "jp/", "/jp", "JP", "jp//13", "jp/1 3", "a/b/c/d/e/f/g"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
