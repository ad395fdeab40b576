//! The peer wire protocol (BEP 3, with BEP 6 fast-extension messages), sans I/O.
//!
//! Bytes in, messages out: [`Handshake::parse`] and [`Decoder::decode`] read from a buffer that
//! the caller fills from a socket (or a test, or a fuzzer), and [`Message::encode`] appends to a
//! buffer that the caller writes. Nothing here touches a socket or a clock, so every rule of the
//! protocol is tested without a network.
//!
//! A connection opens with a 68-byte handshake each way; then every message is a 4-byte
//! big-endian length followed by that many bytes, the first of which is the message id (a length
//! of zero is a keep-alive). The decoder refuses lengths above its limit and payloads of the wrong
//! size for their id, with a [`WireError`] that the session logs before closing the connection.

mod bitfield;

pub use bitfield::Bitfield;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of a handshake on the wire.
pub const HANDSHAKE_LEN: usize = 68;
/// The block size every client uses for requests.
pub const BLOCK_SIZE: u32 = 16 * 1024;
/// Largest block we serve when asked (BEP 3 allows refusing more than 16 KiB; some clients ask
/// for 32 KiB).
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;

/// Reserved bit (byte 7, 0x04) announcing the fast extension (BEP 6).
pub const RESERVED_FAST: u8 = 0x04;

/// The handshake: protocol, 8 reserved bytes, info hash, peer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl Handshake {
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Self {
        let mut reserved = [0u8; 8];
        reserved[7] |= RESERVED_FAST;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & RESERVED_FAST != 0
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(PROTOCOL.len() as u8);
        out.put_slice(PROTOCOL);
        out.put_slice(&self.reserved);
        out.put_slice(&self.info_hash);
        out.put_slice(&self.peer_id);
    }

    /// Parse a handshake from the front of `buf`, consuming it. `Ok(None)`: not enough bytes yet.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Handshake>, WireError> {
        if let Some(&n) = buf.first() {
            if n as usize != PROTOCOL.len() {
                return Err(WireError::BadHandshake);
            }
        }
        let have = buf.len().min(20);
        if have > 1 && buf[1..have] != PROTOCOL[..have - 1] {
            return Err(WireError::BadHandshake);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let h = buf.split_to(HANDSHAKE_LEN);
        Ok(Some(Handshake {
            reserved: h[20..28].try_into().expect("8 bytes"),
            info_hash: h[28..48].try_into().expect("20 bytes"),
            peer_id: h[48..68].try_into().expect("20 bytes"),
        }))
    }
}

/// A block: `length` bytes at `begin` within piece `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// One peer wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// The raw bitfield payload; see [`Bitfield::from_wire`] to check it against a torrent.
    Bitfield(Bytes),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        data: Bytes,
    },
    Cancel(BlockRef),
    /// DHT port (BEP 5): read and ignored by the lab.
    Port(u16),
    // BEP 6, the fast extension.
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    /// BEP 10 extension messages: read and ignored.
    Extended(Bytes),
}

impl Message {
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => 0,
            Message::Unchoke => 1,
            Message::Interested => 2,
            Message::NotInterested => 3,
            Message::Have(_) => 4,
            Message::Bitfield(_) => 5,
            Message::Request(_) => 6,
            Message::Piece { .. } => 7,
            Message::Cancel(_) => 8,
            Message::Port(_) => 9,
            Message::Suggest(_) => 0x0d,
            Message::HaveAll => 0x0e,
            Message::HaveNone => 0x0f,
            Message::Reject(_) => 0x10,
            Message::AllowedFast(_) => 0x11,
            Message::Extended(_) => 20,
        })
    }

    /// Append this message, length prefix included.
    pub fn encode(&self, out: &mut BytesMut) {
        let body_len = match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Bitfield(b) | Message::Extended(b) => 1 + b.len(),
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Port(_) => 3,
        };
        out.reserve(4 + body_len);
        out.put_u32(body_len as u32);
        let Some(id) = self.id() else { return };
        out.put_u8(id);
        match self {
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => out.put_u32(*i),
            Message::Bitfield(b) | Message::Extended(b) => out.put_slice(b),
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
                out.put_u32(b.index);
                out.put_u32(b.begin);
                out.put_u32(b.length);
            }
            Message::Piece { index, begin, data } => {
                out.put_u32(*index);
                out.put_u32(*begin);
                out.put_slice(data);
            }
            Message::Port(p) => out.put_u16(*p),
            _ => {}
        }
    }

    /// The 13-byte header of a piece message carrying `len` bytes, for writers that send the
    /// block's data from their own buffer.
    pub fn piece_header(index: u32, begin: u32, len: u32, out: &mut BytesMut) {
        out.put_u32(9 + len);
        out.put_u8(7);
        out.put_u32(index);
        out.put_u32(begin);
    }
}

/// Why a connection's byte stream is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad handshake (not the BitTorrent protocol)")]
    BadHandshake,
    #[error("message of {len} bytes is longer than the limit of {limit}")]
    TooLong { len: u32, limit: u32 },
    #[error("message id {id} with a payload of {len} bytes is malformed")]
    BadPayload { id: u8, len: u32 },
    #[error("unknown message id {0}")]
    UnknownId(u8),
}

/// Splits a byte stream into messages, refusing any longer than `max_len`.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    pub max_len: u32,
}

impl Decoder {
    /// A decoder for a torrent of `num_pieces` pieces: the longest legal message is either its
    /// bitfield or a piece message of the largest block we accept.
    pub fn for_pieces(num_pieces: u32) -> Self {
        let bitfield = 1 + num_pieces.div_ceil(8);
        Decoder {
            max_len: bitfield.max(9 + MAX_REQUEST_LEN),
        }
    }

    /// Take one message off the front of `buf`. `Ok(None)`: wait for more bytes.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
        if len > self.max_len {
            return Err(WireError::TooLong {
                len,
                limit: self.max_len,
            });
        }
        if buf.len() < 4 + len as usize {
            buf.reserve(4 + len as usize - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        if len == 0 {
            return Ok(Some(Message::KeepAlive));
        }
        let mut body = buf.split_to(len as usize).freeze();
        let id = body.get_u8();
        let plen = len - 1;
        let bad = || WireError::BadPayload { id, len: plen };
        let expect = |n: u32| if plen == n { Ok(()) } else { Err(bad()) };
        let block = |b: &mut Bytes| BlockRef {
            index: b.get_u32(),
            begin: b.get_u32(),
            length: b.get_u32(),
        };
        let msg = match id {
            0 => expect(0).map(|_| Message::Choke)?,
            1 => expect(0).map(|_| Message::Unchoke)?,
            2 => expect(0).map(|_| Message::Interested)?,
            3 => expect(0).map(|_| Message::NotInterested)?,
            4 => expect(4).map(|_| Message::Have(body.get_u32()))?,
            5 => Message::Bitfield(body),
            6 => expect(12).map(|_| Message::Request(block(&mut body)))?,
            7 => {
                if plen < 8 {
                    return Err(bad());
                }
                let index = body.get_u32();
                let begin = body.get_u32();
                Message::Piece {
                    index,
                    begin,
                    data: body,
                }
            }
            8 => expect(12).map(|_| Message::Cancel(block(&mut body)))?,
            9 => expect(2).map(|_| Message::Port(body.get_u16()))?,
            0x0d => expect(4).map(|_| Message::Suggest(body.get_u32()))?,
            0x0e => expect(0).map(|_| Message::HaveAll)?,
            0x0f => expect(0).map(|_| Message::HaveNone)?,
            0x10 => expect(12).map(|_| Message::Reject(block(&mut body)))?,
            0x11 => expect(4).map(|_| Message::AllowedFast(body.get_u32()))?,
            20 => Message::Extended(body),
            other => return Err(WireError::UnknownId(other)),
        };
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<Message> {
        let b = BlockRef {
            index: 3,
            begin: 16384,
            length: 16384,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(Bytes::from_static(&[0xf0])),
            Message::Request(b),
            Message::Piece {
                index: 1,
                begin: 0,
                data: Bytes::from(vec![9u8; 100]),
            },
            Message::Cancel(b),
            Message::Port(6881),
            Message::Suggest(2),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(b),
            Message::AllowedFast(4),
            Message::Extended(Bytes::from_static(b"\0d1:mdee")),
        ]
    }

    #[test]
    fn every_message_round_trips_even_byte_by_byte() {
        let msgs = all_messages();
        let mut wire = BytesMut::new();
        for m in &msgs {
            m.encode(&mut wire);
        }
        let dec = Decoder::for_pieces(4);
        // All at once.
        let mut buf = wire.clone();
        let mut got = Vec::new();
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            got.push(m);
        }
        assert_eq!(got, msgs);
        assert!(buf.is_empty());
        // One byte at a time: the decoder waits, never misreads a partial message.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn refuses_oversized_and_malformed() {
        let dec = Decoder::for_pieces(8);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 7][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(WireError::TooLong { .. })
        ));
        // A have with 3 bytes of payload.
        let mut buf = BytesMut::from(&[0, 0, 0, 4, 4, 0, 0, 1][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(WireError::BadPayload { id: 4, len: 3 })
        );
        // A choke with a payload.
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 0, 0][..]);
        assert!(dec.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 99][..]);
        assert_eq!(dec.decode(&mut buf), Err(WireError::UnknownId(99)));
        // A piece message shorter than its header.
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 7, 0, 0, 0, 1][..]);
        assert!(dec.decode(&mut buf).is_err());
    }

    #[test]
    fn handshake_round_trip_and_garbage() {
        let h = Handshake::new([1; 20], [2; 20]);
        let mut buf = BytesMut::new();
        h.encode(&mut buf);
        assert_eq!(buf.len(), HANDSHAKE_LEN);
        let mut partial = BytesMut::from(&buf[..30]);
        assert_eq!(Handshake::parse(&mut partial), Ok(None));
        let got = Handshake::parse(&mut buf).unwrap().unwrap();
        assert_eq!(got, h);
        assert!(got.supports_fast());
        let mut garbage = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert_eq!(Handshake::parse(&mut garbage), Err(WireError::BadHandshake));
        let mut wrong = BytesMut::from(&b"\x13BitTorrent protocoX"[..]);
        assert_eq!(Handshake::parse(&mut wrong), Err(WireError::BadHandshake));
    }
}
