//! Parsing announce and scrape queries from the raw query string, without I/O.
//!
//! `info_hash` and `peer_id` are 20 raw bytes, percent-encoded: a `String` query extractor would
//! refuse or mangle them, so the raw query is split here and each value percent-decoded to
//! bytes. A `+` stays a `+` (clients encode every byte that is not unreserved).

use percent_encoding::percent_decode;

use super::{Announce, Event};

/// The longest query string accepted.
pub const MAX_QUERY: usize = 4096;
/// numwant when the client does not say.
pub const DEFAULT_NUMWANT: usize = 50;
/// numwant is capped here.
pub const MAX_NUMWANT: usize = 200;

/// A refused request: the text goes into the bencoded `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("query longer than {MAX_QUERY} bytes")]
    TooLong,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0} must be 20 bytes, got {1}")]
    BadLength(&'static str, usize),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Split `a=b&c=d` into decoded byte pairs.
pub fn pairs(raw: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    raw.split('&').filter(|s| !s.is_empty()).map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (
            percent_decode(k.as_bytes()).collect(),
            percent_decode(v.as_bytes()).collect(),
        )
    })
}

fn hash20(field: &'static str, v: &[u8]) -> Result<[u8; 20], QueryError> {
    v.try_into()
        .map_err(|_| QueryError::BadLength(field, v.len()))
}

fn number<T: std::str::FromStr>(field: &'static str, v: &[u8]) -> Result<T, QueryError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(QueryError::Invalid(field))
}

/// Parse an announce query.
pub fn parse_announce(raw: &str) -> Result<Announce, QueryError> {
    if raw.len() > MAX_QUERY {
        return Err(QueryError::TooLong);
    }
    let (mut info_hash, mut peer_id, mut port) = (None, None, None);
    let mut a = Announce {
        info_hash: [0; 20],
        peer_id: [0; 20],
        port: 0,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: None,
        numwant: DEFAULT_NUMWANT,
        compact: true,
        no_peer_id: false,
        ip: None,
    };
    for (k, v) in pairs(raw) {
        match &k[..] {
            b"info_hash" => info_hash = Some(hash20("info_hash", &v)?),
            b"peer_id" => peer_id = Some(hash20("peer_id", &v)?),
            b"port" => {
                let p: u16 = number("port", &v)?;
                if p == 0 {
                    return Err(QueryError::Invalid("port"));
                }
                port = Some(p);
            }
            b"uploaded" => a.uploaded = number("uploaded", &v)?,
            b"downloaded" => a.downloaded = number("downloaded", &v)?,
            b"left" => a.left = number("left", &v)?,
            b"numwant" => {
                let n: i64 = number("numwant", &v)?;
                a.numwant = n.clamp(0, MAX_NUMWANT as i64) as usize;
            }
            b"compact" => a.compact = &v[..] != b"0",
            b"no_peer_id" => a.no_peer_id = &v[..] == b"1",
            b"event" => {
                a.event = match &v[..] {
                    b"started" => Some(Event::Started),
                    b"completed" => Some(Event::Completed),
                    b"stopped" => Some(Event::Stopped),
                    b"" | b"empty" | b"paused" => None,
                    _ => return Err(QueryError::Invalid("event")),
                }
            }
            b"ip" => a.ip = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()),
            _ => {}
        }
    }
    a.info_hash = info_hash.ok_or(QueryError::Missing("info_hash"))?;
    a.peer_id = peer_id.ok_or(QueryError::Missing("peer_id"))?;
    a.port = port.ok_or(QueryError::Missing("port"))?;
    Ok(a)
}

/// Parse a scrape query: every `info_hash` given (none: all swarms).
pub fn parse_scrape(raw: &str) -> Result<Vec<[u8; 20]>, QueryError> {
    if raw.len() > MAX_QUERY {
        return Err(QueryError::TooLong);
    }
    pairs(raw)
        .filter(|(k, _)| k == b"info_hash")
        .map(|(_, v)| hash20("info_hash", &v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IH: &str = "%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%FF";

    #[test]
    fn parses_raw_bytes_and_defaults() {
        let q =
            format!("info_hash={IH}&peer_id=-TB0100-abcdefghijkl&port=6881&left=10&event=started");
        let a = parse_announce(&q).unwrap();
        assert_eq!(a.info_hash[19], 0xff);
        assert_eq!(&a.peer_id, b"-TB0100-abcdefghijkl");
        assert_eq!(a.port, 6881);
        assert_eq!(a.left, 10);
        assert_eq!(a.event, Some(Event::Started));
        assert_eq!(a.numwant, DEFAULT_NUMWANT);
        assert!(a.compact);
    }

    #[test]
    fn every_bad_form_is_named() {
        let ok = format!("info_hash={IH}&peer_id=-TB0100-abcdefghijkl&port=6881");
        assert!(parse_announce(&ok).is_ok());
        let cases = [
            (
                "peer_id=-TB0100-abcdefghijkl&port=1",
                QueryError::Missing("info_hash"),
            ),
            (
                "info_hash=abc&peer_id=-TB0100-abcdefghijkl&port=1",
                QueryError::BadLength("info_hash", 3),
            ),
            (
                &format!("info_hash={IH}&port=1")[..],
                QueryError::Missing("peer_id"),
            ),
            (
                &format!("info_hash={IH}&peer_id=short&port=1")[..],
                QueryError::BadLength("peer_id", 5),
            ),
            (
                &format!("info_hash={IH}&peer_id=-TB0100-abcdefghijkl")[..],
                QueryError::Missing("port"),
            ),
            (&format!("{ok}&port=0")[..], QueryError::Invalid("port")),
            (&format!("{ok}&port=70000")[..], QueryError::Invalid("port")),
            (&format!("{ok}&left=-1")[..], QueryError::Invalid("left")),
            (
                &format!("{ok}&event=exploded")[..],
                QueryError::Invalid("event"),
            ),
        ];
        for (q, want) in cases {
            assert_eq!(parse_announce(q), Err(want.clone()), "{q}");
        }
        assert_eq!(
            parse_announce(&"x".repeat(MAX_QUERY + 1)),
            Err(QueryError::TooLong)
        );
        let big = format!("{ok}&numwant=100000");
        assert_eq!(parse_announce(&big).unwrap().numwant, MAX_NUMWANT);
    }

    #[test]
    fn scrape_takes_many_hashes() {
        let q = format!("info_hash={IH}&info_hash={IH}");
        assert_eq!(parse_scrape(&q).unwrap().len(), 2);
        assert_eq!(parse_scrape("").unwrap().len(), 0);
        assert!(parse_scrape("info_hash=abc").is_err());
    }
}
