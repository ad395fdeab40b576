//! One compare a folder: a compare holds its `--out` with an advisory lock for as long as it
//! runs, and `--from` looks at the lock to tell a finished folder from one still being written.

use std::path::Path;

use anyhow::Context;

/// Holds `dir` for this compare until the guard drops: an advisory lock on `dir/.lock`, which
/// the kernel lets go of however the process ends. A second compare with the same `--out`
/// would run the same runs again, and could lose rows when it rewrites runs.csv. An ordinary
/// file, not the folder itself: over NFS (a Slurm cluster's shared folders) `flock` becomes a
/// lock on a byte range, which the server keeps for every node, and that needs a file opened
/// for writing.
///
/// The folder itself is locked too where the file system allows it: the builds of 3dd77e1 to
/// 002597a locked only the folder, and one of them may still be running a compare in it when
/// a user rebuilds and resumes (the flow docs/compare.md gives). A lock a pool's check holds for an
/// instant ([`folder_in_use`]) is waited out, for at most [`LOCK_WAIT`].
pub(super) struct Held {
    _file: nix::fcntl::Flock<std::fs::File>,
    _folder: Option<nix::fcntl::Flock<std::fs::File>>,
}

pub(super) fn hold_folder(dir: &Path) -> anyhow::Result<Held> {
    let path = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let file = exclusive(f, deadline)
        .map_err(|e| anyhow::anyhow!("{}: cannot lock it: {e}", path.display()))?
        .ok_or_else(|| in_use(dir))?;
    // Where a folder cannot be locked (NFS) no older build could have locked it either.
    let folder = match std::fs::File::open(dir).map(|f| exclusive(f, deadline)) {
        Ok(Ok(None)) => return Err(in_use(dir)),
        Ok(Ok(held)) => held,
        _ => None,
    };
    Ok(Held {
        _file: file,
        _folder: folder,
    })
}

/// An exclusive lock on `f`, retried until `deadline` while another holds it; `None` if it is
/// still held then.
fn exclusive(
    mut f: std::fs::File,
    deadline: std::time::Instant,
) -> nix::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use nix::fcntl::{Flock, FlockArg};
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Some(held)),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                if std::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                f = back;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err((_, e)) => return Err(e),
        }
    }
}

/// The file a compare locks in its `--out` ([`hold_folder`]).
pub(super) const LOCK: &str = ".lock";

/// How long [`hold_folder`] waits for a lock held by another: long enough for a pool's check
/// of the folder to let go, too short to wait for a compare.
pub(super) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

pub(super) fn in_use(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: another compare is using this folder; wait for it to end, or give another --out",
        dir.display()
    )
}

/// Whether a compare holds `dir` now (see [`hold_folder`]): its lock file, or the folder
/// itself (an older build's compare).
pub(super) fn folder_in_use(dir: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let held = |f: std::fs::File| {
        matches!(
            Flock::lock(f, FlockArg::LockSharedNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    };
    std::fs::File::open(dir.join(LOCK)).is_ok_and(held) || std::fs::File::open(dir).is_ok_and(held)
}
