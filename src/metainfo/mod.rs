//! Metainfo: what a `.torrent` file says (BEP 3), and how the lab writes one.
//!
//! [`Torrent::from_bytes`] reads single- and multi-file v1 torrents. The info hash is the SHA-1
//! of the exact bytes of the `info` dictionary in the file. Everything is checked before use:
//! piece length and count, the `pieces` string length against the total size, and every path
//! component, so that a hostile name (`..`, `/etc/passwd`, an empty component) can never make a
//! client write outside its download folder.
//!
//! [`make_torrent`] writes the single-file torrents that `testbed make-torrent` and
//! `testbed start` produce, hashing with the `sha1` crate (SHA-NI where the CPU has it).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::bencode::{self, Value};

/// A 20-byte SHA-1 digest: info hashes and piece hashes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha1Hash(pub [u8; 20]);

impl Sha1Hash {
    pub fn hex(&self) -> String {
        crate::util::hex(&self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Sha1Hash(out))
    }
    pub fn of(data: &[u8]) -> Self {
        Sha1Hash(Sha1::digest(data).into())
    }
}

impl std::fmt::Debug for Sha1Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl std::fmt::Display for Sha1Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// One file of a torrent, in the order the pieces run through them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path below the download folder (for a single-file torrent: the name).
    pub path: PathBuf,
    pub length: u64,
    /// Byte offset of the file's start in the torrent's concatenated content.
    pub offset: u64,
}

/// A parsed, validated torrent.
#[derive(Debug, Clone)]
pub struct Torrent {
    pub info_hash: Sha1Hash,
    pub announce: Option<String>,
    pub name: String,
    pub piece_length: u32,
    pub pieces: Vec<Sha1Hash>,
    pub files: Vec<FileEntry>,
    pub total_length: u64,
    /// Whether the torrent is multi-file (its files live in a folder named `name`).
    pub multi_file: bool,
}

/// Why a torrent was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    #[error("not valid bencode: {0}")]
    Bencode(#[from] bencode::Error),
    #[error("field `{0}` is missing or has the wrong type")]
    Field(&'static str),
    #[error("field `{field}`: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("unsafe path in `{field}`: {path:?} would escape the download folder")]
    UnsafePath { field: &'static str, path: String },
}

/// Most pieces a torrent may have (a 64 GiB file in 16 KiB pieces has 4 M).
pub const MAX_PIECES: usize = 1 << 22;
/// Largest piece length accepted (libtorrent's limit is 128 MiB as well).
pub const MAX_PIECE_LENGTH: u64 = 128 << 20;

impl Torrent {
    /// Read and parse a `.torrent` file.
    pub fn from_file(path: &Path) -> anyhow::Result<Torrent> {
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(256 << 20).read_to_end(&mut buf))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Torrent::from_bytes(&buf).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parse a torrent from its bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Torrent, MetainfoError> {
        let limits = bencode::Limits {
            max_depth: 32,
            max_string: 20 * MAX_PIECES,
            max_items: 1 << 20,
        };
        let (root, spans) = bencode::decode_with_spans(data, limits, &["info"])?;
        let info_span = spans
            .into_iter()
            .find(|(k, _)| k == "info")
            .map(|(_, s)| s)
            .ok_or(MetainfoError::Field("info"))?;
        let info_hash = Sha1Hash::of(&data[info_span]);
        let info = root.get("info").ok_or(MetainfoError::Field("info"))?;
        if info.as_dict().is_none() {
            return Err(MetainfoError::Field("info"));
        }
        let announce = root
            .get("announce")
            .and_then(Value::as_str)
            .map(String::from);

        let name = info
            .get("name")
            .and_then(Value::as_str)
            .ok_or(MetainfoError::Field("info.name"))?
            .to_string();
        check_component("info.name", &name)?;

        let piece_length = piece_length(info)?;
        let pieces = piece_hashes(info)?;
        let (files, multi_file) = match info.get("length") {
            Some(len) => (
                vec![FileEntry {
                    path: PathBuf::from(&name),
                    length: non_negative("info.length", len)?,
                    offset: 0,
                }],
                false,
            ),
            None => (file_list(info)?, true),
        };
        let total_length: u64 = files.iter().map(|f| f.length).sum();
        let expected = total_length.div_ceil(piece_length as u64);
        if expected != pieces.len() as u64 || total_length == 0 {
            return Err(MetainfoError::Invalid {
                field: "info.pieces",
                why: format!(
                    "{} piece hashes for {total_length} bytes in pieces of {piece_length} (want {expected})",
                    pieces.len()
                ),
            });
        }
        Ok(Torrent {
            info_hash,
            announce,
            name,
            piece_length,
            pieces,
            files,
            total_length,
            multi_file,
        })
    }

    pub fn num_pieces(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Length of piece `i` (the last one may be short).
    pub fn piece_len(&self, i: u32) -> u32 {
        let start = i as u64 * self.piece_length as u64;
        (self.total_length - start).min(self.piece_length as u64) as u32
    }

    /// Byte offset of piece `i` in the content.
    pub fn piece_offset(&self, i: u32) -> u64 {
        i as u64 * self.piece_length as u64
    }
}

fn non_negative(field: &'static str, v: &Value) -> Result<u64, MetainfoError> {
    match v.as_int() {
        Some(n) if n >= 0 => Ok(n as u64),
        _ => Err(MetainfoError::Invalid {
            field,
            why: format!("{v:?} is not a non-negative integer"),
        }),
    }
}

/// `info.piece length`, within 1..=[`MAX_PIECE_LENGTH`].
fn piece_length(info: &Value) -> Result<u32, MetainfoError> {
    let piece_length = info
        .get("piece length")
        .and_then(Value::as_int)
        .ok_or(MetainfoError::Field("info.piece length"))?;
    if piece_length <= 0 || piece_length as u64 > MAX_PIECE_LENGTH {
        return Err(MetainfoError::Invalid {
            field: "info.piece length",
            why: format!("{piece_length} is not in 1..={MAX_PIECE_LENGTH}"),
        });
    }
    Ok(piece_length as u32)
}

/// `info.pieces`: 20 bytes a piece, at most [`MAX_PIECES`] of them.
fn piece_hashes(info: &Value) -> Result<Vec<Sha1Hash>, MetainfoError> {
    let raw = info
        .get("pieces")
        .and_then(Value::as_bytes)
        .ok_or(MetainfoError::Field("info.pieces"))?;
    if raw.len() % 20 != 0 {
        return Err(MetainfoError::Invalid {
            field: "info.pieces",
            why: format!("length {} is not a multiple of 20", raw.len()),
        });
    }
    if raw.len() / 20 > MAX_PIECES {
        return Err(MetainfoError::Invalid {
            field: "info.pieces",
            why: format!(
                "{} pieces, more than the limit {MAX_PIECES}",
                raw.len() / 20
            ),
        });
    }
    Ok(raw
        .chunks_exact(20)
        .map(|c| Sha1Hash(c.try_into().expect("chunk of 20")))
        .collect())
}

/// `info.files` of a multi-file torrent: each file's path (every component checked) and
/// length, at its offset in the torrent's bytes.
fn file_list(info: &Value) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = info
        .get("files")
        .and_then(Value::as_list)
        .ok_or(MetainfoError::Field("info.length or info.files"))?;
    if list.is_empty() {
        return Err(MetainfoError::Invalid {
            field: "info.files",
            why: "empty list".into(),
        });
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset = 0u64;
    for f in list {
        let length = non_negative(
            "info.files.length",
            f.get("length")
                .ok_or(MetainfoError::Field("info.files.length"))?,
        )?;
        let parts = f
            .get("path")
            .and_then(Value::as_list)
            .filter(|p| !p.is_empty())
            .ok_or(MetainfoError::Field("info.files.path"))?;
        let mut path = PathBuf::new();
        for p in parts {
            let s = p.as_str().ok_or(MetainfoError::Field("info.files.path"))?;
            check_component("info.files.path", s)?;
            path.push(s);
        }
        files.push(FileEntry {
            path,
            length,
            offset,
        });
        offset = offset.checked_add(length).ok_or(MetainfoError::Invalid {
            field: "info.files.length",
            why: "total overflows".into(),
        })?;
    }
    Ok(files)
}

/// A single path component must be a plain name: no separators, no `.`/`..`, not empty.
fn check_component(field: &'static str, s: &str) -> Result<(), MetainfoError> {
    let unsafe_path = || MetainfoError::UnsafePath {
        field,
        path: s.to_string(),
    };
    if s.is_empty() || s.contains('/') || s.contains('\\') || s.contains('\0') {
        return Err(unsafe_path());
    }
    let mut comps = Path::new(s).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err(unsafe_path()),
    }
}

/// Piece length the lab picks when none is given: about 1000-2000 pieces, between 16 KiB and 4 MiB.
pub fn default_piece_length(size: u64) -> u32 {
    let mut pl: u64 = 16 << 10;
    while size / pl > 2000 && pl < 4 << 20 {
        pl *= 2;
    }
    pl as u32
}

/// Build a single-file v1 torrent of `file`, returning its bencoded bytes.
/// `testbed make-torrent`: write the torrent of `file` to `output` (default: FILE.torrent in
/// the current folder) with `piece_length` (default: [`default_piece_length`]); returns where
/// it went and the torrent.
pub fn write_torrent(
    file: &Path,
    announce: &str,
    piece_length: Option<u32>,
    output: Option<&Path>,
) -> anyhow::Result<(std::path::PathBuf, Torrent)> {
    use anyhow::Context;
    let size = std::fs::metadata(file)
        .with_context(|| format!("{}", file.display()))?
        .len();
    let pl = piece_length.unwrap_or_else(|| default_piece_length(size));
    let bytes = make_torrent(file, announce, pl)?;
    let out = match output {
        Some(o) => o.to_path_buf(),
        None => {
            let mut n = file
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            n.push(".torrent");
            std::path::PathBuf::from(n)
        }
    };
    std::fs::write(&out, &bytes).with_context(|| format!("{}", out.display()))?;
    Ok((out, Torrent::from_bytes(&bytes)?))
}

/// The same torrent with `url` as its web seed (BEP 19 `url-list`, outside the info
/// dictionary: the info hash does not change).
pub fn with_web_seed(torrent: &[u8], url: &str) -> Result<Vec<u8>, bencode::Error> {
    let mut root = bencode::decode(torrent)?;
    if let Value::Dict(d) = &mut root {
        d.insert(b"url-list".to_vec(), Value::Bytes(url.as_bytes().to_vec()));
    }
    Ok(root.encode())
}

pub fn make_torrent(file: &Path, announce: &str, piece_length: u32) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    if piece_length == 0 || piece_length as u64 > MAX_PIECE_LENGTH {
        anyhow::bail!("--piece-length {piece_length} is not in 1..={MAX_PIECE_LENGTH}");
    }
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: no usable file name", file.display()))?
        .to_string();
    let mut f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("{}", file.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{}: not a regular file", file.display());
    }
    if meta.len() == 0 {
        anyhow::bail!("{}: empty file, nothing to share", file.display());
    }
    let mut pieces = Vec::with_capacity(meta.len().div_ceil(piece_length as u64) as usize * 20);
    let mut buf = vec![0u8; piece_length as usize];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = f
                .read(&mut buf[filled..])
                .with_context(|| format!("{}", file.display()))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        total += filled as u64;
        pieces.extend_from_slice(&Sha1::digest(&buf[..filled]));
        if filled < buf.len() {
            break;
        }
    }
    let info = bencode::dict([
        ("length", Value::Int(total as i64)),
        ("name", Value::Bytes(name.into_bytes())),
        ("piece length", Value::Int(piece_length as i64)),
        ("pieces", Value::Bytes(pieces)),
    ]);
    let root = bencode::dict([
        ("announce", Value::Bytes(announce.as_bytes().to_vec())),
        ("created by", Value::Bytes(b"testbed".to_vec())),
        ("info", info),
    ]);
    Ok(root.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn torrent_bytes(info: Value) -> Vec<u8> {
        bencode::dict([
            ("announce", Value::Bytes(b"http://t/a".to_vec())),
            ("info", info),
        ])
        .encode()
    }

    #[test]
    fn make_then_parse_single_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("movie.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let bytes = make_torrent(&p, "http://127.0.0.1:6970/announce", 16384).unwrap();
        let t = Torrent::from_bytes(&bytes).unwrap();
        assert_eq!(t.name, "movie.bin");
        assert_eq!(t.total_length, 100_000);
        assert_eq!(t.num_pieces(), 7);
        assert_eq!(t.piece_len(6), 100_000 - 6 * 16384);
        assert_eq!(t.pieces[1], Sha1Hash::of(&data[16384..32768]));
        // The info hash is the SHA-1 of the info dictionary's exact bytes.
        let root = bencode::decode(&bytes).unwrap();
        assert_eq!(
            t.info_hash,
            Sha1Hash::of(&root.get("info").unwrap().encode())
        );
        assert_eq!(
            t.announce.as_deref(),
            Some("http://127.0.0.1:6970/announce")
        );
    }

    #[test]
    fn refuses_escaping_names() {
        for bad in ["..", "../x", "/etc/passwd", "", "a/b", "."] {
            let info = bencode::dict([
                ("length", Value::Int(1)),
                ("name", Value::Bytes(bad.as_bytes().to_vec())),
                ("piece length", Value::Int(16384)),
                ("pieces", Value::Bytes(vec![0; 20])),
            ]);
            let e = Torrent::from_bytes(&torrent_bytes(info)).unwrap_err();
            assert!(matches!(e, MetainfoError::UnsafePath { .. }), "{bad}: {e}");
        }
        let info = bencode::dict([
            (
                "files",
                Value::List(vec![bencode::dict([
                    ("length", Value::Int(1)),
                    (
                        "path",
                        Value::List(vec![
                            Value::Bytes(b"..".to_vec()),
                            Value::Bytes(b"x".to_vec()),
                        ]),
                    ),
                ])]),
            ),
            ("name", Value::Bytes(b"dir".to_vec())),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![0; 20])),
        ]);
        assert!(matches!(
            Torrent::from_bytes(&torrent_bytes(info)),
            Err(MetainfoError::UnsafePath { .. })
        ));
    }

    #[test]
    fn multi_file_offsets_and_piece_count_checked() {
        let file = |n: &str, l: i64| {
            bencode::dict([
                ("length", Value::Int(l)),
                (
                    "path",
                    Value::List(vec![Value::Bytes(n.as_bytes().to_vec())]),
                ),
            ])
        };
        let info = |pieces: usize| {
            bencode::dict([
                ("files", Value::List(vec![file("a", 10), file("b", 20000)])),
                ("name", Value::Bytes(b"dir".to_vec())),
                ("piece length", Value::Int(16384)),
                ("pieces", Value::Bytes(vec![0; 20 * pieces])),
            ])
        };
        let t = Torrent::from_bytes(&torrent_bytes(info(2))).unwrap();
        assert!(t.multi_file);
        assert_eq!(t.files[1].offset, 10);
        assert_eq!(t.total_length, 20010);
        assert!(matches!(
            Torrent::from_bytes(&torrent_bytes(info(3))),
            Err(MetainfoError::Invalid {
                field: "info.pieces",
                ..
            })
        ));
    }

    #[test]
    fn hex_round_trip() {
        let h = Sha1Hash::of(b"abc");
        assert_eq!(h.hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(Sha1Hash::from_hex(&h.hex()), Some(h));
        assert_eq!(Sha1Hash::from_hex("zz"), None);
    }
}
