//! One error type for the whole tool, carrying the exit code DESIGN.md fixes:
//! 1 findings/unreachable, 2 usage, 3 environment, 4 internal (a bug).

use std::path::PathBuf;

/// What went wrong, phrased for the person at the terminal: what failed,
/// why, and (in `hint`) what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a name that does not exist, a flag out of range.
    #[error("{what}{}", hint_suffix(.hint))]
    Usage { what: String, hint: Option<String> },

    /// The machine is not in a state we can work in: not root, a tool
    /// missing, a namespace that does not exist, a lab that is not up.
    #[error("{what}{}", hint_suffix(.hint))]
    Environment { what: String, hint: Option<String> },

    /// A file we read or wrote.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file that exists but does not parse.
    #[error("{path}: {what}")]
    Parse { path: PathBuf, what: String },

    /// A netlink request the kernel refused or that failed on the socket.
    #[error("netlink: {0}")]
    Netlink(String),

    /// An external command (ip, bridge, iptables-restore, ...) failed.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },

    /// knetdoctor itself failed (a worker thread panicked): a bug to
    /// report, not something the machine or the input can be blamed for.
    #[error("internal error: {0} (a bug in knetdoctor; please report it)")]
    Internal(String),
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n  hint: {h}"),
        None => String::new(),
    }
}

impl Error {
    /// A usage error with a hint.
    pub fn usage(what: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Error::Usage {
            what: what.into(),
            hint: hint.into(),
        }
    }

    /// An environment error with a hint.
    pub fn env(what: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Error::Environment {
            what: what.into(),
            hint: hint.into(),
        }
    }

    /// An internal error: what broke.
    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal(what.into())
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error (DESIGN.md conventions).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } | Error::Parse { .. } => 2,
            Error::Environment { .. }
            | Error::Io { .. }
            | Error::Netlink(_)
            | Error::Command { .. } => 3,
            Error::Internal(_) => 4,
        }
    }
}

/// Result with the tool's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
