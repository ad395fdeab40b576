//! The client's half of an announce (BEP 3, with the compact peer lists of BEP 23 and BEP 7):
//! [`AnnounceRequest::url`] builds the announce URL (info hash and peer id as raw
//! percent-encoded bytes) and [`parse_response`] reads the tracker's bencoded answer. Both are
//! pure; `peer::tracker_client` does the HTTP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use percent_encoding::{percent_encode, NON_ALPHANUMERIC};

use super::Announce;
#[cfg(test)]
use super::Event;
use crate::bencode::{self, Value};

/// Why a tracker's answer gave no peers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("tracker answer is not bencode: {0}")]
    NotBencode(String),
    /// The tracker's `failure reason`.
    #[error("tracker refused: {0}")]
    Refused(String),
    #[error("tracker answer: {0}")]
    Malformed(String),
}

impl Announce {
    /// The announce URL: `announce` with this announce as its query (info hash and peer id as
    /// raw percent-encoded bytes; `compact=0` and `no_peer_id=1` only when set, as clients do).
    pub fn url(&self, announce: &str) -> String {
        let sep = if announce.contains('?') { '&' } else { '?' };
        let mut url = format!(
            "{announce}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}&numwant={}",
            percent_encode(&self.info_hash, NON_ALPHANUMERIC),
            percent_encode(&self.peer_id, NON_ALPHANUMERIC),
            self.port,
            self.uploaded,
            self.downloaded,
            self.left,
            u8::from(self.compact),
            self.numwant,
        );
        if self.no_peer_id {
            url.push_str("&no_peer_id=1");
        }
        if let Some(ip) = self.ip {
            url.push_str(&format!("&ip={ip}"));
        }
        if let Some(e) = self.event {
            url.push_str("&event=");
            url.push_str(e.as_str());
        }
        url
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    pub peers: Vec<SocketAddr>,
    pub complete: Option<u64>,
    pub incomplete: Option<u64>,
}

/// Read a tracker's bencoded answer; a `failure reason` becomes the error.
pub fn parse_response(body: &[u8]) -> Result<AnnounceResponse, ResponseError> {
    let v = bencode::decode(body).map_err(|e| ResponseError::NotBencode(e.to_string()))?;
    if let Some(reason) = v.get("failure reason") {
        return Err(ResponseError::Refused(
            String::from_utf8_lossy(reason.as_bytes().unwrap_or(b"?")).into_owned(),
        ));
    }
    let secs = |k| {
        v.get(k)
            .and_then(Value::as_int)
            .filter(|&i| i >= 0)
            .map(|i| Duration::from_secs(i as u64))
    };
    let interval = secs("interval").ok_or(ResponseError::Malformed("no interval".into()))?;
    let mut peers = Vec::new();
    match v.get("peers") {
        Some(Value::Bytes(b)) => {
            if b.len() % 6 != 0 {
                return Err(ResponseError::Malformed(format!(
                    "compact peer list of {} bytes",
                    b.len()
                )));
            }
            for c in b.chunks_exact(6) {
                let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                peers.push(SocketAddr::new(
                    IpAddr::V4(ip),
                    u16::from_be_bytes([c[4], c[5]]),
                ));
            }
        }
        Some(Value::List(list)) => {
            for p in list {
                let ip = p
                    .get("ip")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<IpAddr>().ok());
                let port = p
                    .get("port")
                    .and_then(Value::as_int)
                    .and_then(|p| u16::try_from(p).ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        None => {}
        Some(_) => {
            return Err(ResponseError::Malformed(
                "peers is neither a string nor a list".into(),
            ))
        }
    }
    if let Some(Value::Bytes(b)) = v.get("peers6") {
        for c in b.chunks_exact(18) {
            let ip: [u8; 16] = c[..16].try_into().expect("16 bytes");
            peers.push(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes([c[16], c[17]]),
            ));
        }
    }
    let count = |k| v.get(k).and_then(Value::as_int).map(|i| i.max(0) as u64);
    Ok(AnnounceResponse {
        interval,
        min_interval: secs("min interval"),
        peers,
        complete: count("complete"),
        incomplete: count("incomplete"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce() -> Announce {
        Announce {
            info_hash: [0xff; 20],
            peer_id: *b"-TB0001-abcdefghijkl",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Some(Event::Started),
            numwant: 50,
            compact: true,
            no_peer_id: false,
            ip: None,
        }
    }

    #[test]
    fn what_a_peer_writes_the_tracker_reads() {
        let mut a = announce();
        for (event, compact, no_peer_id, ip) in [
            (Some(Event::Started), true, false, None),
            (None, false, true, Some("10.77.0.3".parse().unwrap())),
            (
                Some(Event::Stopped),
                true,
                true,
                Some("::1".parse().unwrap()),
            ),
        ] {
            (a.event, a.compact, a.no_peer_id, a.ip) = (event, compact, no_peer_id, ip);
            a.info_hash[3] = b'&';
            a.peer_id[0] = b'%';
            let url = a.url("http://t/announce");
            let query = url.split_once('?').unwrap().1;
            assert_eq!(
                crate::announce::query::parse_announce(query).unwrap(),
                a,
                "{url}"
            );
        }
    }

    #[test]
    fn url_encodes_raw_bytes() {
        let req = announce();
        let u = req.url("http://127.0.0.1:6970/announce");
        assert!(u.starts_with("http://127.0.0.1:6970/announce?info_hash=%FF%FF"));
        assert!(u.contains("peer_id=%2DTB0001%2Dabcdefghijkl"));
        assert!(u.ends_with("&event=started"));
        assert!(req
            .url("http://t/a?key=1")
            .starts_with("http://t/a?key=1&info_hash="));
    }

    #[test]
    fn parses_compact_dict_and_failure() {
        let compact = b"d8:intervali10e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x01\x1a\xe2e";
        let r = parse_response(compact).unwrap();
        assert_eq!(r.interval, Duration::from_secs(10));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "127.0.0.1:6882".parse().unwrap()
            ]
        );
        let dict = b"d8:intervali5e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti7000eeee";
        assert_eq!(
            parse_response(dict).unwrap().peers,
            vec!["127.0.0.1:7000".parse().unwrap()]
        );
        let fail = b"d14:failure reason7:go awaye";
        assert_eq!(
            parse_response(fail).unwrap_err().to_string(),
            "tracker refused: go away"
        );
        assert!(parse_response(b"d5:peers5:xxxxxe").is_err());
    }
}
