//! Opening sled databases and keeping skyform's files private (the state store and the
//! tracker share this). sled takes an exclusive file lock per database; a handle another
//! process holds, or one just dropped whose flusher still runs, makes `open` fail with
//! `WouldBlock` for a moment, so opening waits and retries. Everything skyform writes under
//! `.skyform` is the owner's only: directories 0700, files 0600. I/O: those files.

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

/// Writes a file readable by the owner only, atomically (temp file, then rename).
pub fn write_private(p: &Path, data: &[u8]) -> std::io::Result<()> {
    // A temporary name of its own: concurrent writers of the same file (commits sharing a
    // flush) must not rename each other's halves.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = {
        let mut s = p.as_os_str().to_owned();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.push(format!(".{}.{n}.tmp", std::process::id()));
        std::path::PathBuf::from(s)
    };
    {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        f.write_all(data)?;
    }
    std::fs::rename(&tmp, p).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

pub fn restrict_dir(p: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
    }
}

/// Makes the state files readable by the owner only (0600 files, 0700 directories).
pub fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                let p = e.path();
                let mode = if p.is_dir() { 0o700 } else { 0o600 };
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
                if p.is_dir() {
                    restrict_permissions(&p);
                }
            }
        }
    }
}
