//! Topics of signed heads (see `kairan_protocol::head`).
//!
//! Origins publish head messages to the national node's `kairan/v1/<node>/ingest-heads`; every
//! relay republishes the newest verified head of each origin retained on
//! `kairan/v1/<node>/heads/<origin>`, and children subscribe to `kairan/v1/<parent>/heads/+`.

/// `kairan/v1/<node>/ingest-heads`: where origins publish their heads.
pub fn ingest_heads_topic(node: &str) -> String {
    format!("kairan/v1/{node}/ingest-heads")
}

/// `kairan/v1/<node>/heads/`: the prefix of a relay's retained heads.
pub fn heads_prefix(node: &str) -> String {
    format!("kairan/v1/{node}/heads/")
}

/// `kairan/v1/<node>/heads/<origin>`.
pub fn heads_topic(node: &str, origin: &str) -> String {
    format!("{}{origin}", heads_prefix(node))
}
