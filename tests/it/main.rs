//! Integration tests: real `testbed` processes, real sockets on loopback, real files, and real
//! BitTorrent clients where installed. One test binary for all of them (see README, Tests).

mod common;
mod engine;
mod fuzz_corpus;
mod hostile;
mod interop;
mod lab;
mod netem;
mod page;
mod shadow;
mod shadow_run;
mod slurm;
mod support;
mod tracker;
mod twohosts;
mod vod;
mod webdriver;
