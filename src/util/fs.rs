//! Files the lab rewrites while others read them (reports, status files, the pid file): written
//! to a temporary beside the target and renamed, so that a reader sees the old file or the new
//! one, never half of one.

use std::path::Path;

/// Write a file atomically: a temporary beside it, then rename. The error names the file.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_via_temp(path, data, false)
}

/// [`write_atomic`] for a record that must outlive a power cut (a compare's runs.csv): the
/// temporary reaches the disk before the rename, so a file system that orders neither (not
/// every one does what ext4's `auto_da_alloc` does) cannot leave an empty file in its place.
/// Not for the files the lab rewrites every second, where a flush would cost its runs time.
pub fn write_durable(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_via_temp(path, data, true)
}

fn write_via_temp(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let named = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    });
    let moved = written
        .map_err(|e| named(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| named(path, e)));
    if moved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    moved
}

/// A JSON file as `T`, or `None` when it is missing or does not parse (a writer that has not
/// written it yet). Where a bad file must be told apart from a missing one, read it yourself.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"[1,2]").unwrap();
        write_durable(&p, b"[3]").unwrap();
        assert_eq!(read_json::<Vec<u32>>(&p), Some(vec![3]));
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        assert_eq!(read_json::<Vec<u32>>(&d.path().join("none")), None);
        let e = write_atomic(&d.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
    }
}
