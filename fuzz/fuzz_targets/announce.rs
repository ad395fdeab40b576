//! Any query string at /announce and /scrape: parsed or refused with a reason; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    let _ = testbed::announce::query::parse_announce(&q);
    let _ = testbed::announce::query::parse_scrape(&q);
});
