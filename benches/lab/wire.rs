//! Section `wire`: one file seed -> leecher, ours against libtorrent.

use super::*;

pub(crate) fn wire(b: &mut Bench) -> Result<()> {
    let size = if b.quick { 256 * MIB } else { 1024 * MIB };
    let dir = b.dir.join("wire");
    let src = dir.join("src/blob.bin");
    random_file(&src, size, 7)?;
    let torrent = dir.join("blob.torrent");
    make_torrent(&src, &torrent, 1024 * 1024)?;
    let gb = size as f64 / (1024.0 * MIB as f64);
    let mb = size as f64 / MIB as f64;
    let timeout = Duration::from_secs(if b.quick { 120 } else { 300 });

    // On a virtual machine the first write to a page of guest memory costs a fault in the
    // host: `dd` of 1 GiB into a new file ran at 0.5 GB/s the first time here and 4 GB/s once
    // the memory had been used and freed. Whichever client wrote first would pay it alone, so
    // both run on memory that has been touched: a throw-away file of twice the size first, then
    // the two clients in turn, three rounds, each download deleted before the next run.
    let warm = dir.join("warm.bin");
    random_file(&warm, 2 * size, 1)?;
    std::fs::remove_file(&warm)?;
    let rounds = 3;
    let (mut ours, mut lt) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(ours_transfer(&dir, &src, &torrent, timeout)?);
        lt.push(lt_transfer(&dir, &src, &torrent, timeout)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The median round of each (by time; its CPU with it).
    let median = |v: &mut Vec<(f64, f64)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let rates = |v: &[(f64, f64)]| {
        v.iter()
            .map(|(s, _)| format!("{:.0}", mb / s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = format!(
        "{:.0} MiB seed->leecher (median of {rounds}; ours {} MB/s, libtorrent {})",
        mb,
        rates(&ours),
        rates(&lt)
    );
    let (ours_secs, ours_cpu) = median(&mut ours);
    let (lt_secs, lt_cpu) = median(&mut lt);
    let i = b.add("wire", &name, mb / ours_secs, "MB/s");
    b.at_least(i, "libtorrent", mb / lt_secs, 2.0);
    let i = b.add(
        "wire",
        "CPU per GiB moved (both ends, seed start-up excluded)",
        ours_cpu / gb,
        "s",
    );
    b.anchor(i, "libtorrent", lt_cpu / gb, false);
    Ok(())
}

/// Our seed and leecher: seconds from starting the leecher to its exit with every piece
/// checked, and CPU of both processes (less the seed's start-up check). The copy is compared
/// with the source, then deleted.
pub(crate) fn ours_transfer(
    dir: &Path,
    src: &Path,
    torrent: &Path,
    timeout: Duration,
) -> Result<(f64, f64)> {
    let port = free_port();
    let out = dir.join("ours/blob.bin");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let cpu0 = children_cpu();
    let seed = our_seed(port, src, torrent, &[])?;
    wait_port(port, Duration::from_secs(60))?;
    // Our seed checks its copy at start (libtorrent's, in seed mode, does not): that CPU is not
    // part of moving the data.
    let seed_start_cpu = proc_cpu(seed.pid());
    timed_leech(
        seed,
        cpu0 + seed_start_cpu,
        Command::new(TESTBED)
            .args(["peer", "--exit-on-complete", "--tracker", ""])
            .args(["--peer", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(&out)
            .arg(torrent)
            .stdout(Stdio::null()),
        "our leecher",
        timeout,
        src,
        &out,
    )
}

/// `testbed peer --seed` of `src` on `port`, no tracker, with `extra` flags.
pub(crate) fn our_seed(port: u16, src: &Path, torrent: &Path, extra: &[&str]) -> Result<Proc> {
    spawn(
        Command::new(TESTBED)
            .args([
                "peer",
                "--seed",
                "--tracker",
                "",
                "--port",
                &port.to_string(),
            ])
            .args(extra)
            .arg("--data")
            .arg(src)
            .arg(torrent)
            .stdout(Stdio::null()),
    )
}

/// Start the leecher, wait for its exit, stop the seed; then the seconds the leecher took and
/// the CPU of both since `cpu_before` (their start-up excluded by the caller). The download is
/// compared with `src`, then deleted.
pub(crate) fn timed_leech(
    seed: Proc,
    cpu_before: f64,
    leech: &mut Command,
    what: &str,
    timeout: Duration,
    src: &Path,
    out: &Path,
) -> Result<(f64, f64)> {
    let t = Instant::now();
    let mut leech = spawn(leech)?;
    let st = wait_exit(&mut leech, what, timeout)?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("{what} exited with {st}");
    }
    drop(seed);
    drop(leech);
    let cpu = children_cpu() - cpu_before;
    if !same_content(src, out)? {
        bail!("{what}'s file differs from the seed's");
    }
    std::fs::remove_file(out)?;
    Ok((secs, cpu))
}

/// The same with libtorrent (`benches/lt_transfer.py`, TCP only).
pub(crate) fn lt_transfer(
    dir: &Path,
    src: &Path,
    torrent: &Path,
    timeout: Duration,
) -> Result<(f64, f64)> {
    let script = Path::new(ROOT).join("benches/lt_transfer.py");
    let port = free_port();
    let lt_dir = dir.join("lt");
    std::fs::create_dir_all(&lt_dir)?;
    let cpu0 = children_cpu();
    let mut seed = spawn(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg("seed")
            .arg(torrent)
            .arg(src.parent().unwrap())
            .arg(port.to_string())
            .stdout(Stdio::piped()),
    )?;
    let lines = lines_of(&mut seed);
    match lines.recv_timeout(Duration::from_secs(60)) {
        Ok(l) if l == "ready" => {}
        other => bail!("libtorrent seed did not get ready: {other:?} (python3-libtorrent?)"),
    }
    let seed_start_cpu = proc_cpu(seed.pid());
    timed_leech(
        seed,
        cpu0 + seed_start_cpu,
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg("leech")
            .arg(torrent)
            .arg(&lt_dir)
            .arg(port.to_string())
            .stdout(Stdio::null()),
        "libtorrent's leecher",
        timeout,
        src,
        &lt_dir.join("blob.bin"),
    )
}
