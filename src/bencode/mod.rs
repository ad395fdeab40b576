//! Bencode, the serialisation of BitTorrent (BEP 3): integers `i42e`, byte strings `4:spam`,
//! lists `l...e` and dictionaries `d...e` with sorted byte-string keys.
//!
//! This module owns the one parser every untrusted input of the lab goes through (.torrent files,
//! tracker responses), so it is strict and bounded:
//!
//! * nesting depth, string length and the input as a whole are limited ([`Limits`]);
//! * integers are canonical (no `i-0e`, no leading zeros) and fit in an `i64`;
//! * dictionary keys must be strictly ascending, so a decoded value re-encodes to the same bytes;
//! * every error says what was wrong and at which byte offset.
//!
//! [`Value::Dict`] keeps, for each dictionary, the exact byte span it was parsed from
//! ([`decode_with_spans`]), because a torrent's info hash is the SHA-1 of the `info` dictionary
//! *as written*, not as we would re-encode it.

use std::collections::BTreeMap;
use std::fmt;

/// A decoded bencode value. Strings are bytes: BitTorrent puts raw SHA-1 digests in them.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if b.len() <= 64 => write!(f, "{s:?}"),
                _ => write!(f, "<{} bytes>", b.len()),
            },
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => f
                .debug_map()
                .entries(d.iter().map(|(k, v)| (String::from_utf8_lossy(k), v)))
                .finish(),
        }
    }
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// Look a key up in a dictionary value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key.as_bytes()))
    }

    /// Encode to bencode bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Append a bencoded byte string.
pub fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Build a dictionary from `(key, value)` pairs; keys are sorted by the map.
pub fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// Bounds on what the decoder accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Longest single byte string.
    pub max_string: usize,
    /// Most values (of any kind) in the whole document.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_string: 64 << 20,
            max_items: 1 << 20,
        }
    }
}

/// Why a document is not acceptable bencode, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unexpected end of input at byte {0}")]
    Eof(usize),
    #[error("unexpected byte {byte:?} at byte {at}")]
    Unexpected { byte: char, at: usize },
    #[error("bad integer at byte {0}")]
    BadInt(usize),
    #[error("string of {len} bytes at byte {at} is longer than the limit of {limit}")]
    StringTooLong { len: usize, at: usize, limit: usize },
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("more than {0} values")]
    TooMany(usize),
    #[error("dictionary key at byte {0} is not in strictly ascending order")]
    KeyOrder(usize),
    #[error("{0} bytes of trailing data after the value")]
    Trailing(usize),
}

/// A span of the input, for values whose exact bytes matter (the `info` dictionary).
pub type Span = std::ops::Range<usize>;

/// Decode one complete value with the default limits; trailing bytes are an error.
pub fn decode(input: &[u8]) -> Result<Value, Error> {
    decode_with(input, Limits::default())
}

/// Decode one complete value with the given limits.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value, Error> {
    decode_with_spans(input, limits, &[]).map(|(v, _)| v)
}

/// Decode, and also report the byte span of the top-level dictionary's values named in
/// `span_keys` (e.g. `info`).
pub fn decode_with_spans(
    input: &[u8],
    limits: Limits,
    span_keys: &[&str],
) -> Result<(Value, Vec<(String, Span)>), Error> {
    let mut p = Parser {
        input,
        pos: 0,
        limits,
        items: 0,
        span_keys,
        spans: Vec::new(),
    };
    let v = p.value(0)?;
    if p.pos != input.len() {
        return Err(Error::Trailing(input.len() - p.pos));
    }
    Ok((v, p.spans))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    items: usize,
    span_keys: &'a [&'a str],
    spans: Vec<(String, Span)>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, Error> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(Error::Eof(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(Error::TooMany(self.limits.max_items));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.int_until(b'e')?;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?.to_vec())),
            b'l' => {
                if depth >= self.limits.max_depth {
                    return Err(Error::TooDeep(self.limits.max_depth));
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                if depth >= self.limits.max_depth {
                    return Err(Error::TooDeep(self.limits.max_depth));
                }
                self.pos += 1;
                let mut map = BTreeMap::new();
                let mut last: Option<&'a [u8]> = None;
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    let key = self.bytes()?;
                    if last.is_some_and(|l| l >= key) {
                        return Err(Error::KeyOrder(key_at));
                    }
                    last = Some(key);
                    let start = self.pos;
                    let v = self.value(depth + 1)?;
                    if depth == 0 {
                        let span_keys: &'a [&'a str] = self.span_keys;
                        if let Some(k) = span_keys.iter().find(|k| k.as_bytes() == key) {
                            self.spans.push((k.to_string(), start..self.pos));
                        }
                    }
                    map.insert(key.to_vec(), v);
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            b => Err(Error::Unexpected {
                byte: b as char,
                at: self.pos,
            }),
        }
    }

    /// A canonical decimal integer terminated by `end`.
    fn int_until(&mut self, end: u8) -> Result<i64, Error> {
        let start = self.pos;
        let rest = &self.input[start..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(Error::Eof(self.input.len()))?;
        let digits = &rest[..len];
        let (neg, mag) = match digits.split_first() {
            Some((b'-', m)) => (true, m),
            _ => (false, digits),
        };
        let canonical = !mag.is_empty()
            && mag.iter().all(u8::is_ascii_digit)
            && (mag[0] != b'0' || mag.len() == 1)
            && !(neg && mag == b"0");
        if !canonical {
            return Err(Error::BadInt(start));
        }
        // Safe: all ASCII digits (and an optional sign).
        let n = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(Error::BadInt(start))?;
        self.pos = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let at = self.pos;
        let len = self.int_until(b':')?;
        if len < 0 {
            return Err(Error::BadInt(at));
        }
        let len = len as usize;
        if len > self.limits.max_string {
            return Err(Error::StringTooLong {
                len,
                at,
                limit: self.limits.max_string,
            });
        }
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(Error::Eof(self.input.len()))?;
        self.pos = end;
        let input: &'a [u8] = self.input;
        Ok(&input[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let doc = b"d4:infod6:lengthi-42e4:name4:spame4:listl1:ai0eee";
        let v = decode(doc).unwrap();
        assert_eq!(
            v.get("info").unwrap().get("length").unwrap().as_int(),
            Some(-42)
        );
        assert_eq!(v.get("list").unwrap().as_list().unwrap().len(), 2);
        assert_eq!(v.encode(), doc.to_vec());
    }

    #[test]
    fn rejects_non_canonical_integers() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i1x2e",
            b"i99999999999999999999e",
        ] {
            assert!(matches!(decode(bad), Err(Error::BadInt(_))), "{bad:?}");
        }
        assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
    }

    #[test]
    fn rejects_unsorted_or_duplicate_keys() {
        assert_eq!(decode(b"d1:bi1e1:ai2ee"), Err(Error::KeyOrder(7)));
        assert_eq!(decode(b"d1:ai1e1:ai2ee"), Err(Error::KeyOrder(7)));
    }

    #[test]
    fn enforces_limits() {
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert_eq!(decode(deep.as_bytes()), Err(Error::TooDeep(64)));
        let lim = Limits {
            max_string: 3,
            ..Limits::default()
        };
        assert!(matches!(
            decode_with(b"4:spam", lim),
            Err(Error::StringTooLong { len: 4, .. })
        ));
        assert!(matches!(decode(b"5:spam"), Err(Error::Eof(_))));
        assert!(matches!(
            decode(b"99999999999999999999:x"),
            Err(Error::BadInt(_))
        ));
        assert_eq!(decode(b"i1ei2e"), Err(Error::Trailing(3)));
        let lim = Limits {
            max_items: 3,
            ..Limits::default()
        };
        assert_eq!(decode_with(b"li1ei2ei3ee", lim), Err(Error::TooMany(3)));
    }

    #[test]
    fn reports_span_of_top_level_key() {
        let doc = b"d8:announce3:url4:infod1:xi1eee";
        let (_, spans) = decode_with_spans(doc, Limits::default(), &["info"]).unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(&doc[spans[0].1.clone()], b"d1:xi1ee");
    }
}
