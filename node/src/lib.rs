//! kairan node (placeholder until the CLI lands).
