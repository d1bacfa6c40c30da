//! Network namespaces that wasmnet creates: bind-mounted on a file under its run dir, like
//! `ip netns add` does, so they outlive the daemon.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::{on_dedicated_thread, KResult, KernelError};

/// Creates a namespace bind-mounted at `path`. Idempotent: an existing mount is kept.
pub async fn create_netns(path: &Path) -> KResult<()> {
    if netns_exists(path) {
        return Ok(());
    }
    let op = || format!("creating network namespace {}", path.display());
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| KernelError::new(op(), e))?;
    }
    File::create(path).map_err(|e| KernelError::new(op(), e))?;
    let target = path.to_path_buf();
    let made = on_dedicated_thread(move || -> nix::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .await;
    if let Err(e) = made {
        let _ = fs::remove_file(path);
        return Err(KernelError::new(op(), io::Error::from(e)));
    }
    Ok(())
}

/// Bind-mounts the namespace at `from` at `to` too (as `ip netns attach` does), making `to`'s
/// directory if needed. Idempotent: a namespace already mounted at `to` is kept.
pub fn link_netns(from: &Path, to: &Path) -> KResult<()> {
    let op = || format!("linking {} at {}", from.display(), to.display());
    if netns_exists(to) {
        let ino = |p: &Path| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        return match ino(from) == ino(to) {
            true => Ok(()),
            false => Err(KernelError::new(op(), nix::errno::Errno::EEXIST.into())),
        };
    }
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(|e| KernelError::new(op(), e))?;
    }
    File::create(to).map_err(|e| KernelError::new(op(), e))?;
    if let Err(e) = mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
        let _ = fs::remove_file(to);
        return Err(KernelError::new(op(), io::Error::from(e)));
    }
    Ok(())
}

/// Unmounts and removes a namespace wasmnet created. Missing is fine (already gone).
pub fn remove_netns(path: &Path) -> KResult<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(KernelError::new(
                format!("unmounting {}", path.display()),
                e.into(),
            ))
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(KernelError::new(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Whether `path` is a network namespace (a bind mount or a /proc ns link).
pub fn netns_exists(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // NSFS_MAGIC: the file is a namespace, not the empty placeholder of a lost mount.
    nix::sys::statfs::fstatfs(&file).is_ok_and(|s| s.filesystem_type().0 as u64 == 0x6e73_6673)
}

/// Opens a netlink connection inside the namespace at `path`, after setting `sysctls` there
/// (keys under /proc/sys, which shows the namespace of the thread that opens it).
pub(super) async fn netlink_in(
    path: &Path,
    sysctls: &[(String, &'static str)],
) -> KResult<rtnetlink::Handle> {
    let op = || format!("opening netlink in {}", path.display());
    let file = File::open(path).map_err(|e| KernelError::new(op(), e))?;
    let runtime = tokio::runtime::Handle::current();
    let sysctls = sysctls.to_vec();
    let opened = on_dedicated_thread(move || -> io::Result<_> {
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET)?;
        for (key, value) in &sysctls {
            fs::write(Path::new("/proc/sys").join(key), value)
                .map_err(|e| io::Error::new(e.kind(), format!("setting {key}: {e}")))?;
        }
        // The socket is created here, in the namespace, and registered with the runtime.
        let _guard = runtime.enter();
        let (connection, handle, _) = rtnetlink::new_connection()?;
        Ok((connection, handle))
    })
    .await;
    let (connection, handle) = opened.map_err(|e| KernelError::new(op(), e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Files under `dir` (the namespaces wasmnet created, by id).
pub fn list_netns(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}
