//! `testbed`: the lab and its tools. See `testbed --help`.
fn main() -> std::process::ExitCode {
    testbed::cli::main()
}
