//! How start-up fails, and the exit status that tells the operator why.

/// Why the process could not start or keep running; decides the exit status.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A configuration problem: exit 2.
    #[error("{0}")]
    Config(String),
    /// A runtime failure (database unreachable, migration failed, port taken): exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl StartupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Runtime(_) => 1,
        }
    }
}
