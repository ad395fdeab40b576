//! `vod-client`: the default "my client". See `vod-client --help` and docs/vod.md.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = testbed::vod::client::Args::parse();
    match testbed::vod::client::main_with(args) {
        Ok(r) => {
            println!(
                "playback done: {} of {} bytes from the VoD server ({} pieces), penalty {}",
                r.bytes_from_server, r.size, r.pieces_from_server, r.penalty
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vod-client: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
