//! Section `sha1`: SHA-1 of pieces, the sha1 crate (SHA-NI when the CPU has it) against openssl.

use super::*;

pub(crate) fn sha1(b: &mut Bench) -> Result<()> {
    let secs = if b.quick { 1.0 } else { 3.0 };
    let piece = vec![0x5au8; 256 * 1024];
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut acc = 0u8;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            acc ^= testbed::metainfo::Sha1Hash::of(std::hint::black_box(&piece)).0[0];
            bytes += piece.len() as u64;
        }
    }
    std::hint::black_box(acc);
    let ours = bytes as f64 / t.elapsed().as_secs_f64() / MIB as f64;
    let out = Command::new("openssl")
        .args(["speed", "-evp", "sha1", "-bytes", "262144", "-seconds"])
        .arg(format!("{}", secs as u32))
        .stderr(Stdio::null())
        .output()
        .context("running openssl speed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: "sha1  1677887.09k" (thousands of bytes per second).
    let k: f64 = text
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.trim_end_matches('k').parse().ok())
        .ok_or_else(|| anyhow!("could not read openssl speed's output: {text}"))?;
    let i = b.add("sha1", "SHA-1 of 256 KiB pieces, one core", ours, "MiB/s");
    b.anchor(i, "openssl speed", k * 1000.0 / MIB as f64, true);
    Ok(())
}
