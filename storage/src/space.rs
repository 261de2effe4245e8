//! Free space of the filesystem a store lives on.

use std::io;
use std::path::Path;

/// Bytes an unprivileged writer may still use on the filesystem holding `path`.
#[cfg(unix)]
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs only writes into the struct it is given; an all-zero statvfs is valid.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a NUL-terminated string that outlives the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
pub fn available_bytes(_: &Path) -> io::Result<u64> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no statvfs"))
}

/// Whether `e` says the filesystem (or the user's quota) is full. sled hands ENOSPC back
/// wrapped in an error of its own kind with no OS code, so the kind is compared too.
pub fn is_disk_full(e: &io::Error) -> bool {
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
        return true;
    }
    #[cfg(unix)]
    if e.kind() == io::Error::from_raw_os_error(libc::ENOSPC).kind() {
        return true;
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Shortage>())
        .is_some()
}

/// Keeps writes away from a full filesystem: a write that would start with less than the
/// reserve free is refused before it touches the disk. The reserve exists because some
/// writers cannot recover from ENOSPC (sled 0.34 refuses every later write until reopened).
#[derive(Debug, Clone)]
pub struct Reserve {
    path: std::path::PathBuf,
    bytes: u64,
}

impl Reserve {
    /// `bytes` free kept on the filesystem of `path`; 0 turns the check off.
    pub fn new(path: impl Into<std::path::PathBuf>, bytes: u64) -> Self {
        Reserve {
            path: path.into(),
            bytes,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Fails with [`crate::Error::NoSpace`] while less than `bytes` is free. A failing
    /// statvfs is not a reason to refuse a write: the write itself will say what is wrong.
    pub fn check(&self, bytes: u64) -> crate::Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        match available_bytes(&self.path) {
            Ok(available) if available < bytes => Err(crate::Error::NoSpace {
                available,
                reserve: bytes,
            }),
            _ => Ok(()),
        }
    }

    /// [`Reserve::check`] against the whole reserve (bulk data: blob bytes).
    pub fn check_data(&self) -> crate::Result<()> {
        self.check(self.bytes)
    }

    /// [`Reserve::check`] against half the reserve: metadata writes are small, and the ones
    /// that finish what bulk writes started (recording an uploaded blob, deleting a tag) should
    /// still work when bulk data has used the space down to the reserve.
    pub fn check_metadata(&self) -> crate::Result<()> {
        self.check(self.bytes / 2)
    }
}

/// A refusal carried inside an `io::Error` through code that only speaks io (a blob write).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the data directory has {available} bytes free, less than the {reserve} bytes kept in reserve (min_free_bytes)")]
pub struct Shortage {
    pub available: u64,
    pub reserve: u64,
}

impl From<Shortage> for io::Error {
    fn from(s: Shortage) -> Self {
        io::Error::other(s)
    }
}

impl Reserve {
    /// [`Reserve::check_data`] as an `io::Error`.
    pub fn check_data_io(&self) -> io::Result<()> {
        match self.check_data() {
            Err(crate::Error::NoSpace { available, reserve }) => {
                Err(Shortage { available, reserve }.into())
            }
            _ => Ok(()),
        }
    }
}

/// The storage error for an io error, a carried [`Shortage`] becoming `Error::NoSpace`.
pub fn from_io(e: io::Error) -> crate::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<Shortage>()) {
        Some(s) => crate::Error::NoSpace {
            available: s.available,
            reserve: s.reserve,
        },
        None => crate::Error::Io(e),
    }
}
