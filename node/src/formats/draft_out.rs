//! An advisory written back as an authoring file (TOML) that `kairan advisory sign` reads.

use kairan_protocol::advisory::Advisory;

/// The authoring file for `advisory`, with a header saying where it came from and which
/// fields were `defaulted` (absent from the imported document) and should be reviewed.
pub fn draft_toml(advisory: &Advisory, from: &str, defaulted: &[&str]) -> Result<String, String> {
    let body = toml::to_string_pretty(advisory).map_err(|e| format!("writing TOML: {e}"))?;
    let mut out = format!(
        "# kairan advisory authoring file, imported from {from} by `kairan advisory import`.\n\
         # Review it, then: kairan advisory sign --key keys/ORIGIN.key THIS_FILE\n\
         # (`kairan publish` assigns seq and prev from the origin's state instead of the values here.)\n"
    );
    if !defaulted.is_empty() {
        out.push_str(&format!(
            "# Not in the {from} document, defaulted (check them): {}\n",
            defaulted.join(", ")
        ));
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kairan_protocol::Timestamp;
    use kairan_protocol::fixtures;

    use super::*;
    use crate::draft::{AdvisoryDraft, SAMPLES};

    #[test]
    fn written_draft_reads_back_identically() {
        let now = Timestamp::from_unix_ms(0);
        let mut advisories =
            vec![fixtures::sample_advisory("mhlw", 2, Some(kairan_protocol::Digest::of(b"p")))];
        for (name, text) in SAMPLES {
            let draft = AdvisoryDraft::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            advisories.push(draft.into_advisory(now, None).unwrap_or_else(|e| panic!("{name}: {e}")));
        }
        for advisory in advisories {
            let text = draft_toml(&advisory, "CSAF", &["scope"]).expect("toml");
            assert!(text.contains("defaulted (check them): scope"), "{text}");
            let back = AdvisoryDraft::parse(&text).and_then(|d| d.into_advisory(now, None));
            assert_eq!(back.as_ref(), Ok(&advisory), "{text}");
        }
    }
}
