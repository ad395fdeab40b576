//! Any bytes into the bencode decoder: an error or a value, never a panic; a value re-encodes
//! to bytes that decode to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = testbed::bencode::decode(data) {
        let again = testbed::bencode::decode(&v.encode()).expect("our own encoding decodes");
        assert_eq!(again, v);
    }
});
