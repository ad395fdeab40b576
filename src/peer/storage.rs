//! Storage: the torrent's content on disk, read and written at byte offsets.
//!
//! A torrent's pieces run through its files back to back; [`Storage`] maps a (piece, offset)
//! span to the file ranges it covers and uses positional I/O (`pread`/`pwrite`), so the many
//! connections of a session never share a file cursor. Opening checks what is already there
//! (resume): every piece whose SHA-1 matches counts as held. A complete copy is opened read-only,
//! so a seed cannot change the files it shares.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha1::{Digest, Sha1};

use crate::metainfo::Torrent;
use crate::wire::Bitfield;

pub struct Storage {
    files: Vec<(File, u64, u64)>, // (file, offset in content, length)
    pub root: PathBuf,
    writable: bool,
}

impl Storage {
    /// Open the content at `data` (the file itself for a single-file torrent, the folder for a
    /// multi-file one), check every piece, and return the storage with the pieces held.
    /// `create`: make missing files (a leecher); otherwise they must exist (a seed).
    pub fn open(
        torrent: &Torrent,
        data: &Path,
        create: bool,
    ) -> anyhow::Result<(Storage, Bitfield)> {
        let paths: Vec<PathBuf> = if torrent.multi_file {
            torrent.files.iter().map(|f| data.join(&f.path)).collect()
        } else {
            vec![data.to_path_buf()]
        };
        // First read-only: a complete copy stays untouched.
        let mut files = Vec::with_capacity(paths.len());
        let mut all_present = true;
        for (p, f) in paths.iter().zip(&torrent.files) {
            match File::open(p) {
                Ok(file) => {
                    let len = file
                        .metadata()
                        .with_context(|| p.display().to_string())?
                        .len();
                    if len != f.length {
                        all_present = false;
                    }
                    files.push(Some(file));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    all_present = false;
                    files.push(None);
                }
                Err(e) => return Err(e).with_context(|| format!("{}", p.display())),
            }
        }
        let mut storage = Storage {
            files: Vec::new(),
            root: data.to_path_buf(),
            writable: false,
        };
        if all_present {
            storage.files = files
                .into_iter()
                .zip(&torrent.files)
                .map(|(f, e)| (f.expect("present"), e.offset, e.length))
                .collect();
            let have = storage.check(torrent)?;
            if have.is_complete() || !create {
                return Ok((storage, have));
            }
        }
        let created = storage.reopen_writable(torrent, &paths)?;
        // Files we just created hold nothing: no need to hash them.
        let have = if created {
            Bitfield::new(torrent.num_pieces())
        } else {
            storage.check(torrent)?
        };
        Ok((storage, have))
    }

    /// Open every file read-write, creating and sizing what is missing. Returns whether every
    /// file was newly created.
    fn reopen_writable(&mut self, torrent: &Torrent, paths: &[PathBuf]) -> anyhow::Result<bool> {
        self.files.clear();
        let mut all_new = true;
        for (p, f) in paths.iter().zip(&torrent.files) {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            }
            all_new &= !p.exists();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .with_context(|| format!("{}", p.display()))?;
            let len = file.metadata()?.len();
            if len != f.length {
                file.set_len(f.length)
                    .with_context(|| format!("{}: resize", p.display()))?;
            }
            self.files.push((file, f.offset, f.length));
        }
        self.writable = true;
        Ok(all_new)
    }

    /// Hash every piece on disk; the ones that match are held.
    pub fn check(&self, torrent: &Torrent) -> anyhow::Result<Bitfield> {
        let mut have = Bitfield::new(torrent.num_pieces());
        let mut buf = vec![0u8; torrent.piece_length as usize];
        for i in 0..torrent.num_pieces() {
            let len = torrent.piece_len(i) as usize;
            self.read(torrent.piece_offset(i), &mut buf[..len])?;
            if Sha1::digest(&buf[..len]).as_slice() == torrent.pieces[i as usize].0 {
                have.set(i);
            }
        }
        Ok(have)
    }

    /// Visit the file spans covering `len` bytes at content offset `at`.
    fn spans(
        &self,
        at: u64,
        len: usize,
        mut f: impl FnMut(&File, u64, std::ops::Range<usize>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let end = at + len as u64;
        for (file, off, flen) in &self.files {
            let (fs, fe) = (*off, off + flen);
            if fe <= at || fs >= end || *flen == 0 {
                continue;
            }
            let s = at.max(fs);
            let e = end.min(fe);
            f(file, s - fs, (s - at) as usize..(e - at) as usize)?;
        }
        Ok(())
    }

    /// Read `buf.len()` bytes at content offset `at`.
    pub fn read(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.spans(at, buf.len(), |file, pos, range| {
            file.read_exact_at(&mut buf[range], pos)
        })
    }

    /// Write `data` at content offset `at`.
    pub fn write(&self, at: u64, data: &[u8]) -> std::io::Result<()> {
        if !self.writable {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "storage opened read-only (complete copy)",
            ));
        }
        self.spans(at, data.len(), |file, pos, range| {
            file.write_all_at(&data[range], pos)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::make_torrent;

    #[test]
    fn resume_counts_only_matching_pieces_and_seed_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f.bin");
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let t = Torrent::from_bytes(&make_torrent(&src, "http://x/a", 16384).unwrap()).unwrap();

        let (seed, have) = Storage::open(&t, &src, false).unwrap();
        assert!(have.is_complete());
        assert!(seed.write(0, b"x").is_err(), "a complete copy is read-only");

        // A partial copy: piece 1 right, the rest zero or wrong.
        let part = dir.path().join("part.bin");
        let mut partial = vec![0u8; data.len()];
        partial[16384..32768].copy_from_slice(&data[16384..32768]);
        std::fs::write(&part, &partial).unwrap();
        let (st, have) = Storage::open(&t, &part, true).unwrap();
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), vec![1]);
        st.write(0, &data[..16384]).unwrap();
        assert_eq!(st.check(&t).unwrap().count(), 2);

        // Missing file: created at full length, nothing held.
        let fresh = dir.path().join("sub/new.bin");
        let (_st, have) = Storage::open(&t, &fresh, true).unwrap();
        assert_eq!(have.count(), 0);
        assert_eq!(std::fs::metadata(&fresh).unwrap().len(), 50_000);
    }
}
