//! The data directory: one sled database (accounts, mailbox and news
//! metadata, each in its own tree) beside the spool and mail files that
//! Postern fsyncs itself; the queue's index keeps a database of its own
//! under `queue/`. sled locks the database, so one process owns it at a
//! time: the server, or a CLI command when no server is running.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {0}: cannot create it: {1}")]
    Create(PathBuf, std::io::Error),
    #[error("data directory {0} is in use by another postern process")]
    Locked(PathBuf),
    #[error("data directory {0}: cannot open the database: {1}")]
    Open(PathBuf, sled::Error),
}

pub struct DataDir {
    pub path: PathBuf,
    pub db: sled::Db,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        crate::util::create_dir_durably(path).map_err(|e| DataDirError::Create(path.into(), e))?;
        let db = sled::Config::new().path(path.join("db")).open().map_err(|e| match &e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                DataDirError::Locked(path.into())
            }
            _ => DataDirError::Open(path.into(), e),
        })?;
        Ok(DataDir { path: path.to_path_buf(), db })
    }
}

#[cfg(test)]
impl DataDir {
    /// For tests that simulate a restart in one process: open, waiting out
    /// sled's lock, which a store dropped just before lets go of only once
    /// sled's background thread has finished (a moment on a loaded machine).
    pub fn open_when_free(path: &Path) -> DataDir {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match DataDir::open(path) {
                Err(DataDirError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                r => return r.expect("open the data directory"),
            }
        }
    }
}
