//! Storage: the torrent's content on disk, read and written at byte offsets.
//!
//! A torrent's pieces run through its files back to back; [`Storage`] maps a (piece, offset)
//! span to the file ranges it covers and uses positional I/O (`pread`/`pwrite`), so the many
//! connections of a session never share a file cursor. Opening checks what is already there
//! (resume): every piece whose SHA-1 matches counts as held. A complete copy is opened read-only,
//! so a seed cannot change the files it shares.
//!
//! Verified pieces go to disk by two lanes: the direct one, unless the device is already busy
//! with [`DIRECT_DEPTH`] of them, when the piece overflows to the page cache:
//!
//! * **direct**: `O_DIRECT` where the file system takes it (the aligned part of each write),
//!   bound by the device's write bandwidth;
//! * **page cache**: a plain write, bound by memory (on a virtual machine, every page never
//!   touched before costs a fault in the host: 0.4–0.5 GB/s here into fresh memory, 4 GB/s into
//!   memory used before).
//!
//! Either alone ties the download to one machine's luck: with the page cache only, a 1 GiB
//! download spent two thirds of its CPU copying into fresh pages; with `O_DIRECT` only, it ran
//! at 870 MB/s on a disk that writes 1–2 GB/s and at 395 MB/s with the same disk capped at
//! 400 MB/s (BENCHMARKS.md). Direct first, since it costs no CPU copy (a page-cache write
//! copies on the same two cores that receive the data), and the page cache for what the device
//! cannot take. (Choosing by each lane's measured write time sent most pieces to a warm page
//! cache and lost a third of the fast disk's speed.) A piece
//! is written once and read back only when a peer asks for it. [`PieceBuf`] gives the session a
//! page-aligned buffer to assemble pieces in, so direct writes need no extra copy.

use std::fs::{File, OpenOptions};
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use anyhow::Context;
use sha1::{Digest, Sha1};

use crate::metainfo::Torrent;
use crate::wire::Bitfield;

/// Alignment `O_DIRECT` asks of file offsets, lengths and buffers (a page covers every
/// common logical block size).
const DIRECT_ALIGN: usize = 4096;

pub struct Storage {
    files: Vec<Entry>,
    writable: bool,
    /// Cleared the first time the file system refuses a direct write.
    direct_ok: AtomicBool,
    /// The two ways to disk: [`DIRECT`] and [`CACHED`].
    lanes: [Lane; 2],
}

const DIRECT: usize = 0;
const CACHED: usize = 1;

/// One way to disk: writes under way, and writes done.
#[derive(Default)]
struct Lane {
    in_flight: AtomicU32,
    done: AtomicU64,
}

/// Direct writes under way before a piece overflows to the page cache: the device is then the
/// bottleneck. (With 2, a disk that kept up still saw half the pieces overflow: 1 GiB in
/// 853-986 MB/s; with 4, 968-1020 MB/s, and 576-732 MB/s with the disk capped at 400 MB/s.)
const DIRECT_DEPTH: u32 = 4;

struct Entry {
    file: File,
    /// The same file opened with `O_DIRECT`, when the file system allows it.
    direct: Option<File>,
    /// Where the file starts in the torrent's content, and its length.
    offset: u64,
    length: u64,
}

/// A piece's bytes, starting on a page boundary so that it can be written with `O_DIRECT`.
pub struct PieceBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl PieceBuf {
    pub fn zeroed(len: usize) -> PieceBuf {
        let raw = vec![0u8; len + DIRECT_ALIGN - 1];
        // `align_offset` may decline (usize::MAX); the buffer is then merely unaligned and its
        // writes go through the page cache.
        let start = match raw.as_ptr().align_offset(DIRECT_ALIGN) {
            off if off < DIRECT_ALIGN => off,
            _ => 0,
        };
        PieceBuf { raw, start, len }
    }
}

impl Deref for PieceBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl DerefMut for PieceBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
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
            writable: false,
            direct_ok: AtomicBool::new(true),
            lanes: Default::default(),
        };
        if all_present {
            storage.files = files
                .into_iter()
                .zip(&torrent.files)
                .map(|(f, e)| Entry {
                    file: f.expect("present"),
                    direct: None,
                    offset: e.offset,
                    length: e.length,
                })
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
            // Refused by some file systems (tmpfs): then everything goes through `file`.
            let direct = OpenOptions::new()
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
                .open(p)
                .ok();
            self.files.push(Entry {
                file,
                direct,
                offset: f.offset,
                length: f.length,
            });
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
        mut f: impl FnMut(&Entry, u64, std::ops::Range<usize>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let end = at + len as u64;
        for entry in &self.files {
            let (fs, fe) = (entry.offset, entry.offset + entry.length);
            if fe <= at || fs >= end || entry.length == 0 {
                continue;
            }
            let s = at.max(fs);
            let e = end.min(fe);
            f(entry, s - fs, (s - at) as usize..(e - at) as usize)?;
        }
        Ok(())
    }

    /// Read `buf.len()` bytes at content offset `at`.
    pub fn read(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.spans(at, buf.len(), |entry, pos, range| {
            entry.file.read_exact_at(&mut buf[range], pos)
        })
    }

    /// Write `data` at `pos` of one file: by the direct lane, the page-aligned whole pages
    /// with `O_DIRECT` when offset and buffer allow it (the rest through the page cache); else
    /// all through the page cache. (A span of a multi-file torrent may start mid-buffer.)
    fn write_span(&self, entry: &Entry, pos: u64, data: &[u8], lane: usize) -> std::io::Result<()> {
        let pages = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        if lane == DIRECT {
            if let Some(direct) = entry.direct.as_ref().filter(|_| {
                pages > 0
                    && pos.is_multiple_of(DIRECT_ALIGN as u64)
                    && (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
                    && self.direct_ok.load(Ordering::Relaxed)
            }) {
                match direct.write_all_at(&data[..pages], pos) {
                    Ok(()) => return entry.file.write_all_at(&data[pages..], pos + pages as u64),
                    Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                        tracing::debug!("O_DIRECT write refused, using the page cache: {e}");
                        self.direct_ok.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        entry.file.write_all_at(data, pos)
    }

    /// The lane for a write of `data`: the direct one for a page-aligned buffer on a file
    /// system that takes it, unless [`DIRECT_DEPTH`] direct writes are already under way.
    fn lane_for(&self, data: &[u8]) -> usize {
        let direct = self.direct_ok.load(Ordering::Relaxed)
            && self.files.iter().any(|e| e.direct.is_some())
            && (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
            && data.len() >= DIRECT_ALIGN;
        if direct && self.lanes[DIRECT].in_flight.load(Ordering::Relaxed) < DIRECT_DEPTH {
            DIRECT
        } else {
            CACHED
        }
    }

    /// Writes done by each lane so far: (direct, page cache).
    pub fn lane_writes(&self) -> (u64, u64) {
        (
            self.lanes[DIRECT].done.load(Ordering::Relaxed),
            self.lanes[CACHED].done.load(Ordering::Relaxed),
        )
    }

    /// Write `data` at content offset `at`.
    pub fn write(&self, at: u64, data: &[u8]) -> std::io::Result<()> {
        if !self.writable {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "storage opened read-only (complete copy)",
            ));
        }
        let lane = self.lane_for(data);
        let l = &self.lanes[lane];
        l.in_flight.fetch_add(1, Ordering::Relaxed);
        let r = self.spans(at, data.len(), |entry, pos, range| {
            self.write_span(entry, pos, &data[range], lane)
        });
        l.in_flight.fetch_sub(1, Ordering::Relaxed);
        if r.is_ok() {
            l.done.fetch_add(1, Ordering::Relaxed);
        }
        r
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

    #[test]
    fn aligned_and_unaligned_writes_read_back_the_same() {
        writes_read_back(tempfile::tempdir().unwrap());
        // tmpfs, where O_DIRECT may be refused: the page cache takes over.
        if Path::new("/dev/shm").is_dir() {
            writes_read_back(tempfile::tempdir_in("/dev/shm").unwrap());
        }
    }

    fn writes_read_back(dir: tempfile::TempDir) {
        let src = dir.path().join("f.bin");
        // 3 pieces of 32 KiB and a tail of 1,000 bytes.
        let data: Vec<u8> = (0..99_304u32).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let t = Torrent::from_bytes(&make_torrent(&src, "http://x/a", 32768).unwrap()).unwrap();
        let out = dir.path().join("out.bin");
        let (st, _) = Storage::open(&t, &out, true).unwrap();
        for i in 0..t.num_pieces() {
            let (at, len) = (t.piece_offset(i), t.piece_len(i) as usize);
            let piece = &data[at as usize..at as usize + len];
            if i % 2 == 0 {
                // A page-aligned buffer: the O_DIRECT path where the file system has it.
                let mut buf = PieceBuf::zeroed(len);
                assert!((buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN));
                buf.copy_from_slice(piece);
                st.write(at, &buf).unwrap();
            } else {
                // An odd address: through the page cache.
                let mut v = vec![0u8; len + 1];
                v[1..].copy_from_slice(piece);
                st.write(at, &v[1..]).unwrap();
            }
        }
        assert!(st.check(&t).unwrap().is_complete());
        assert!(std::fs::read(&out).unwrap() == data);
    }

    #[test]
    fn writes_go_direct_until_the_lane_is_full_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f.bin");
        let data: Vec<u8> = (0..16 * 65536u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let t = Torrent::from_bytes(&make_torrent(&src, "http://x/a", 65536).unwrap()).unwrap();
        let out = dir.path().join("out.bin");
        let (st, _) = Storage::open(&t, &out, true).unwrap();
        for i in 0..t.num_pieces() {
            let (at, len) = (t.piece_offset(i), t.piece_len(i) as usize);
            let mut buf = PieceBuf::zeroed(len);
            buf.copy_from_slice(&data[at as usize..at as usize + len]);
            if i >= 12 {
                // As if the device were busy with DIRECT_DEPTH writes: these overflow.
                st.lanes[DIRECT]
                    .in_flight
                    .store(DIRECT_DEPTH, Ordering::Relaxed);
            }
            st.write(at, &buf).unwrap();
        }
        st.lanes[DIRECT].in_flight.store(0, Ordering::Relaxed);
        assert!(std::fs::read(&out).unwrap() == data);
        let (direct, cached) = st.lane_writes();
        assert_eq!(direct + cached, 16);
        if st.files[0].direct.is_some() && st.direct_ok.load(Ordering::Relaxed) {
            assert_eq!((direct, cached), (12, 4), "direct until the lane is full");
        } else {
            assert_eq!(direct, 0, "no O_DIRECT here: all through the page cache");
        }
    }

    #[test]
    fn a_multi_file_torrent_is_written_across_its_files() {
        use crate::bencode::{self, Value};
        // Two files, 10,000 and 60,000 bytes, in 16 KiB pieces: piece 0 spans both, the
        // others start at unaligned offsets of the second file.
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let pieces: Vec<u8> = data
            .chunks(16384)
            .flat_map(|c| Sha1::digest(c).to_vec())
            .collect();
        let file = |n: &str, l: i64| {
            bencode::dict([
                ("length", Value::Int(l)),
                (
                    "path",
                    Value::List(vec![Value::Bytes(n.as_bytes().to_vec())]),
                ),
            ])
        };
        let info = bencode::dict([
            (
                "files",
                Value::List(vec![file("a", 10_000), file("b", 60_000)]),
            ),
            ("name", Value::Bytes(b"dir".to_vec())),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(pieces)),
        ]);
        let bytes = bencode::dict([
            ("announce", Value::Bytes(b"http://t/a".to_vec())),
            ("info", info),
        ])
        .encode();
        let t = Torrent::from_bytes(&bytes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dir");
        let (st, have) = Storage::open(&t, &root, true).unwrap();
        assert_eq!(have.count(), 0);
        for i in 0..t.num_pieces() {
            let (at, len) = (t.piece_offset(i) as usize, t.piece_len(i) as usize);
            let mut buf = PieceBuf::zeroed(len);
            buf.copy_from_slice(&data[at..at + len]);
            st.write(at as u64, &buf).unwrap();
        }
        assert!(st.check(&t).unwrap().is_complete());
        assert!(std::fs::read(root.join("a")).unwrap() == data[..10_000]);
        assert!(std::fs::read(root.join("b")).unwrap() == data[10_000..]);
        // A span whose bytes do not start on a page (piece 0's part in "b") goes through the
        // page cache; it never makes the file system refuse a direct write, which would turn
        // O_DIRECT off for the rest of the download.
        if st.files.iter().any(|e| e.direct.is_some()) {
            assert!(st.direct_ok.load(Ordering::Relaxed), "O_DIRECT still on");
        }
    }
}
