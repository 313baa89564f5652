//! The recipients file of a district relay: the recipient (X25519) key of each enrolled clinic,
//! from which the relay builds and signs its recipient directory
//! ([`kairan_protocol::directory`]). `kairan enroll issue` adds rows, `kairan enroll remove`
//! takes them out; the file sits next to the members file and is named by `[node] recipients`.
//!
//! ```toml
//! [[recipients]]
//! id = "chuo-clinic-1"          # the clinic's id (its certificate subject, its member id)
//! scope = "jp/13/chuo"          # its certificate's scope (the district's)
//! key = "…64 hex…"              # its X25519 recipient key
//! cert = "jp-13-chuo-17…"       # the serial of the certificate the district issued it
//! ```
//!
//! The keys are public, but the file says who the district's clinics are, so it is written
//! like the members file (mode 0600, temporary file, synced, renamed).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use kairan_protocol::Scope;
use kairan_protocol::directory::DirectoryEntry;

/// The recipients file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientsFile {
    /// One row per enrolled clinic.
    #[serde(default)]
    pub recipients: Vec<DirectoryEntry>,
}

impl RecipientsFile {
    /// Reads and checks the file at `path` for a relay of scope `scope`; a missing file is an
    /// empty one (a district with no clinic enrolled yet).
    pub fn load(path: &Path, scope: &Scope) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::parse(&text, scope).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks the text of a recipients file.
    pub fn parse(text: &str, scope: &Scope) -> Result<Self, String> {
        let file: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = BTreeSet::new();
        for row in &file.recipients {
            kairan_protocol::advisory::check_id("id", &row.id)?;
            kairan_protocol::advisory::check_id("cert", &row.cert)?;
            if !scope.contains(&row.scope) {
                return Err(format!("{}: scope {} is outside this relay's scope {scope}", row.id, row.scope));
            }
            if !seen.insert(row.id.as_str()) {
                return Err(format!("{} is listed twice", row.id));
            }
        }
        Ok(file)
    }

    /// The row of clinic `id`.
    pub fn get(&self, id: &str) -> Option<&DirectoryEntry> {
        self.recipients.iter().find(|row| row.id == id)
    }

    /// The file's text (a header, then the rows sorted by id, so the same membership always
    /// has the same bytes and the directory version moves only when membership does).
    pub fn render(&self) -> Result<String, String> {
        let mut sorted = self.clone();
        sorted.recipients.sort_by(|a, b| a.id.cmp(&b.id));
        let text = toml::to_string(&sorted).map_err(|e| e.to_string())?;
        Ok(format!("# Recipient keys of the clinics of a kairan district (kairan enroll issue).\n{text}"))
    }

    /// Writes the file (mode 0600, atomically).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = self.render()?;
        crate::secrets::write_private(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_checked_and_written_sorted() {
        let scope = Scope::parse("jp/13/chuo").expect("scope");
        let key = "11".repeat(32);
        let row = |id: &str, scope: &str| {
            format!("[[recipients]]\nid = \"{id}\"\nscope = \"{scope}\"\nkey = \"{key}\"\ncert = \"s-1\"\n")
        };
        let both = format!("{}{}", row("c2", "jp/13/chuo"), row("c1", "jp/13/chuo"));
        let file = RecipientsFile::parse(&both, &scope).expect("parses");
        let rendered = file.render().expect("render");
        assert!(rendered.find("c1").expect("c1") < rendered.find("c2").expect("c2"), "{rendered}");
        assert_eq!(RecipientsFile::parse(&rendered, &scope).expect("round trip").recipients.len(), 2);
        let twice = format!("{}{}", row("c1", "jp/13/chuo"), row("c1", "jp/13/chuo"));
        assert!(RecipientsFile::parse(&twice, &scope).expect_err("twice").contains("twice"));
        let outside = row("c1", "jp/27");
        assert!(RecipientsFile::parse(&outside, &scope).expect_err("outside").contains("outside"));
        let missing = RecipientsFile::load(Path::new("/nonexistent/recipients.toml"), &scope).expect("empty");
        assert!(missing.recipients.is_empty());
    }
}
