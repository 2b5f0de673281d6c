//! Library error type. Every error that came from outside names the file and the problem.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    /// (The message carries the cause; it is not also exposed as `source()`, so that printing
    /// the error chain does not repeat it.)
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    /// A file was read but its contents are not what they should be.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// A setting or an argument is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Input data (not from a file) is unusable: NaN coordinates, an empty mesh, ...
    #[error("invalid input: {0}")]
    Input(String),
    /// The job's memory plan does not fit the memory it may use (checked before allocating).
    #[error("not enough memory: {0}")]
    Memory(String),
    /// The run was interrupted (Ctrl-C); the last checkpoint is on disk.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), message: message.into() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
