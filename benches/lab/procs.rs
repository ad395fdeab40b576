//! Processes and waiting: spawning, waiting on ports and exits, /proc figures (CPU, RSS), test
//! files and torrents.

use super::*;

pub(crate) fn spawn(cmd: &mut Command) -> Result<Proc> {
    let name = format!("{:?}", cmd.get_program());
    Ok(Proc::start(&name, cmd.stdin(Stdio::null()))?)
}

pub(crate) fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) -> Result<()> {
    wait_for(what, timeout, f).map_err(anyhow::Error::msg)
}

/// Wait for a process to exit, killing it at the deadline.
pub(crate) fn wait_exit(
    p: &mut Proc,
    what: &str,
    timeout: Duration,
) -> Result<std::process::ExitStatus> {
    match p.wait_timeout(timeout) {
        Some(st) => Ok(st),
        None => {
            let _ = p.child.kill();
            bail!("{what} did not finish within {timeout:?}")
        }
    }
}

pub(crate) fn wait_port(port: u16, timeout: Duration) -> Result<()> {
    wait_until(&format!("port {port}"), timeout, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// The body of a GET that answered 200.
pub(crate) fn http_get(port: u16, path: &str) -> Result<String> {
    let (code, body) = support::http_get(port, path)?;
    if code != 200 {
        bail!("HTTP {code} from :{port}{path}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// CPU seconds (user + system) of children reaped so far.
pub(crate) fn children_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let r = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(r.user_time()) + t(r.system_time())
}

/// CPU seconds (user + system) a live process has used, from /proc.
pub(crate) fn proc_cpu(pid: i32) -> f64 {
    proc_cpu_at(&format!("/proc/{pid}/stat"))
}

/// User + system CPU seconds from a `stat` file of /proc (a process's or a thread's).
pub(crate) fn proc_cpu_at(path: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let Some((_, rest)) = s.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

/// /proc's clock ticks per second (USER_HZ, 100 on every Linux architecture the lab runs on).
pub(crate) fn clock_ticks() -> f64 {
    100.0
}

/// Resident memory of a live process in bytes: every page mapped, its own and those of files
/// it shares with other processes (the `testbed` binary: one copy for the whole world).
pub(crate) fn proc_rss(pid: i32) -> u64 {
    proc_status_kb(pid, "VmRSS:") * 1024
}

/// A live process's own resident memory in bytes (RssAnon: heap, stacks, pages it wrote),
/// what each more client costs.
pub(crate) fn proc_rss_private(pid: i32) -> u64 {
    proc_status_kb(pid, "RssAnon:") * 1024
}

/// A figure in kB from /proc/PID/status (0 when the process is gone).
fn proc_status_kb(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Alive and not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub(crate) fn random_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    let mut f = std::io::BufWriter::with_capacity(4 * MIB as usize, std::fs::File::create(path)?);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

pub(crate) fn make_torrent(file: &Path, out: &Path, piece_length: u32) -> Result<Torrent> {
    let st = Command::new(TESTBED)
        .args(["make-torrent", "--announce", "http://127.0.0.1:9/announce"])
        .arg("--piece-length")
        .arg(piece_length.to_string())
        .arg("-o")
        .arg(out)
        .arg(file)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("testbed make-torrent {} failed", file.display());
    }
    Torrent::from_file(out)
}

pub(crate) fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 4 * MIB as usize], vec![0u8; 4 * MIB as usize]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Lines a child prints, readable with a timeout.
pub(crate) fn lines_of(p: &mut Proc) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = p.child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}
