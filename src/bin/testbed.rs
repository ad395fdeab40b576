//! `testbed`: the lab's orchestrator and tools. See `testbed --help`.
fn main() -> std::process::ExitCode {
    testbed::cli::main()
}
