//! `vod-client`: the default "my client" (work in progress: see the VoD issue).
fn main() -> std::process::ExitCode {
    eprintln!("vod-client: not yet implemented");
    std::process::ExitCode::FAILURE
}
