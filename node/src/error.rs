//! Errors: [`CliError`] for commands, with the process exit code for each kind, and
//! [`NodeError`] for the daemons, which the CLI maps to a [`CliError`].

use std::path::Path;

/// Why a command failed. Each kind maps to a distinct exit code (sysexits.h where one fits).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Wrong arguments or unusable input files (exit 64, `EX_USAGE`).
    #[error("{0}")]
    Usage(String),
    /// A configuration file is invalid; the message names the field (exit 64).
    #[error("configuration error: {0}")]
    Config(String),
    /// Verification refused the input; the message starts with the reason code (exit 1).
    #[error("verification failed: {code}: {message}")]
    Rejected {
        /// Stable reason code from the protocol crate.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// Reading or writing a file failed (exit 74, `EX_IOERR`).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Anything else that stopped the command (exit 70, `EX_SOFTWARE` / unavailable service).
    #[error("{0}")]
    Failed(String),
    /// Done as far as this side can tell, not confirmed by the other side in time; running
    /// the command again is safe and finishes it (exit 75, `EX_TEMPFAIL`).
    #[error("not confirmed: {0}")]
    Unconfirmed(String),
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CliError::Io { path: path.display().to_string(), source }
    }

    /// A protocol rejection.
    pub fn rejected(error: &kairan_protocol::Error) -> Self {
        CliError::Rejected { code: error.code(), message: error.to_string() }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 64,
            CliError::Rejected { .. } => 1,
            CliError::Io { .. } => 74,
            CliError::Failed(_) => 70,
            CliError::Unconfirmed(_) => 75,
        }
    }
}

/// Why a daemon (relay node, clinic subscriber) stopped. The CLI maps it to an exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration cannot work (a field is named).
    #[error("configuration error: {0}")]
    Config(String),
    /// The store failed: the node stops so nothing is acknowledged that is not stored.
    #[error("{0}; stopping so nothing is acknowledged that is not stored")]
    Store(#[from] crate::store::StoreError),
    /// The embedded broker could not start.
    #[error("broker: {0}")]
    Broker(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A task of the node failed.
    #[error("{0}")]
    Task(String),
}

impl NodeError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        NodeError::Io { path: path.display().to_string(), source }
    }
}

impl From<NodeError> for CliError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Config(message) => CliError::Config(message),
            NodeError::Io { path, source } => CliError::Io { path, source },
            other => CliError::Failed(other.to_string()),
        }
    }
}
