//! How knetdoctor writes files, in one place. State that root reads back and
//! acts on (repair journals and locks, a lab's state and generated configs)
//! is private — directories 0700, files 0600, whatever the umask — and
//! written whole through a temporary file that is synced and renamed, so a
//! crash leaves the old version or the new one, never half of one. Outputs a
//! person asked for (`capture -w`, `collect -o`) are written the same way
//! beside their target, so an error leaves a previous file untouched and a
//! symlink planted at the path is replaced, never written through.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates `dir` (and missing parents) and makes it 0700 even when it was
/// there already.
pub fn private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))
}

/// Opens `path` for appending, creating it 0600; a symlink there is refused.
pub fn open_private_append(path: &Path) -> Result<File> {
    open_0600(path, OpenOptions::new().append(true))
}

/// Opens `path` for reading and writing (a lock file), creating it 0600;
/// a symlink there is refused.
pub fn open_private(path: &Path) -> Result<File> {
    open_0600(
        path,
        OpenOptions::new().read(true).write(true).truncate(false),
    )
}

fn open_0600(path: &Path, how: &mut OpenOptions) -> Result<File> {
    let f = how
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_permissions(Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, e))?;
    Ok(f)
}

/// Syncs a directory, so that a file created or renamed in it survives a
/// crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Writes `bytes` to `path` whole, 0600: a temporary file beside it,
/// synced, renamed over it, the directory synced.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = Output::create(path, Replace::Yes)?;
    out.write_all(bytes).map_err(|e| Error::io(path, e))?;
    out.commit()
}

/// Whether an output may replace a file already at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it (as tcpdump -w does); a symlink there is replaced itself.
    Yes,
    /// Refuse when anything is at the path, a dangling symlink included.
    No,
}

/// A file being written: a temporary 0600 file beside its target that
/// becomes the target only on [`Output::commit`]; dropped uncommitted, it is
/// removed and the target is as it was.
pub struct Output {
    tmp: Option<tempfile::NamedTempFile>,
    target: PathBuf,
    replace: Replace,
}

impl Output {
    /// Starts writing `target`. Fails at once when the directory cannot be
    /// written or when `replace` is [`Replace::No`] and the path is taken.
    pub fn create(target: &Path, replace: Replace) -> Result<Output> {
        if let Ok(m) = std::fs::symlink_metadata(target)
            && !m.is_file()
            && !m.is_symlink()
        {
            // Renaming over a device (/dev/full) or a FIFO would replace
            // it; writing into it is not writing a file.
            return Err(Error::usage(
                format!("{} is not a regular file", target.display()),
                Some("name a file to write to".to_string()),
            ));
        }
        if replace == Replace::No && std::fs::symlink_metadata(target).is_ok() {
            return Err(Error::usage(
                format!("{} exists", target.display()),
                Some("name a new file; knetdoctor never writes over an output".to_string()),
            ));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if target.file_name().is_none() {
            return Err(Error::usage(
                format!("{} names no file", target.display()),
                None,
            ));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".knetdoctor-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(Output {
            tmp: Some(tmp),
            target: target.to_path_buf(),
            replace,
        })
    }

    /// The file to write to.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_mut().expect("not committed yet").as_file_mut()
    }

    /// Syncs the file and puts it in place: renamed over the target (or,
    /// with [`Replace::No`], linked only if the path is still free).
    pub fn commit(mut self) -> Result<()> {
        let tmp = self.tmp.take().expect("committed once");
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&self.target, e))?;
        match self.replace {
            Replace::Yes => tmp.persist(&self.target).map(drop),
            Replace::No => tmp.persist_noclobber(&self.target).map(drop),
        }
        .map_err(|e| Error::io(&self.target, e.error))?;
        if let Some(dir) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn private_files_and_dirs_are_private_whatever_the_umask() {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        private_dir(&sub).unwrap();
        write_private(&sub.join("f"), b"x").unwrap();
        drop(open_private(&sub.join("lock")).unwrap());
        drop(open_private_append(&sub.join("log")).unwrap());
        nix::sys::stat::umask(old);
        assert_eq!(std::fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        for f in ["f", "lock", "log"] {
            assert_eq!(
                std::fs::metadata(sub.join(f)).unwrap().mode() & 0o777,
                0o600,
                "{f}"
            );
        }
    }

    #[test]
    fn an_uncommitted_output_leaves_the_old_file_and_a_symlink_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.pcapng");
        std::fs::write(&target, b"previous").unwrap();
        let mut o = Output::create(&target, Replace::Yes).unwrap();
        o.write_all(b"half").unwrap();
        drop(o);
        assert_eq!(std::fs::read(&target).unwrap(), b"previous");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);

        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let mut o = Output::create(&link, Replace::Yes).unwrap();
        o.write_all(b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());

        assert!(Output::create(Path::new("/dev/null"), Replace::Yes).is_err());
        assert!(Output::create(d.path(), Replace::Yes).is_err());

        let dangling = d.path().join("dangling.tar.gz");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        assert!(Output::create(&dangling, Replace::No).is_err());
        assert!(!d.path().join("nowhere").exists());
    }
}
