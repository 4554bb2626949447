//! Opening sled databases (the state store and the tracker share this). sled takes an
//! exclusive file lock per database; a handle another process holds, or one just dropped
//! whose flusher still runs, makes `open` fail with `WouldBlock` for a moment, so opening
//! waits and retries. I/O: the database files.

use std::path::Path;

/// True when opening failed because another handle holds the database's file lock (sled
/// reports it as an `Other` I/O error wrapping `WouldBlock`).
pub fn is_busy(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().starts_with("could not acquire lock")
        }
        _ => false,
    }
}

/// Opens a sled database, waiting up to `attempts` × 50 ms while another handle (another
/// process, or a just-dropped handle's flusher) still holds its lock.
pub fn open_sled(path: &Path, attempts: u32) -> Result<sled::Db, sled::Error> {
    let mut attempt = 0;
    loop {
        match sled::Config::new().path(path).open() {
            Err(e) if is_busy(&e) && attempt < attempts => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}
