//! Any bytes from a peer: a handshake, then messages for a 1000-piece torrent. Each call ends in
//! a message, a need for more bytes, or an error; never a panic, and never a loop that does not
//! consume input.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use testbed::wire::{Decoder, Handshake};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(_)) = Handshake::parse(&mut buf) {}
    let dec = Decoder::for_pieces(1000);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match dec.decode(&mut buf) {
            Ok(Some(_)) => assert!(buf.len() < before, "a message consumes bytes"),
            Ok(None) | Err(_) => break,
        }
    }
});
