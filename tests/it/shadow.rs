//! The ground of the Shadow engine: the lab's own binaries, unmodified, under Shadow 3.3.0 (a
//! simulated network and simulated time, built by `make deps` into /opt/shadow). A small world
//! completes, every copy is the file, and the same config and seed give the same run, down to
//! every line of the tracker's access log.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::common::*;

/// The tracker's address in the simulation (the torrent's announce URL names it).
const TRACKER_IP: &str = "11.0.0.1";

/// Whether Shadow is installed; under `CI=true` a missing one fails the test.
pub fn have_shadow() -> bool {
    let there = Path::new(SHADOW).is_file();
    if !there {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{SHADOW} is missing (make deps builds it)"
        );
        eprintln!("SKIPPED: {SHADOW} is not installed (make deps builds it)");
    }
    there
}

/// A Shadow config: the tracker, one seed of `data` and `leechers` empty leechers of
/// `torrent`, each capped at 100 KB/s up, each leecher leaving 2 s after it completes.
/// System calls take no simulated time (`model_unblocked_syscall_latency: false`): with it on,
/// the two simulations of this config differed in 4 of 17 tries, by 13 to 32 µs at a
/// leecher's announce (that leecher made more or fewer system calls from run to run); with it
/// off, 17 of 17 pairs were byte-identical.
fn world(torrent: &Path, data: &Path, leechers: usize) -> String {
    let bin = testbed_bin();
    let torrent = torrent.display();
    let peer = |extra: &str, start: u32, end: &str| {
        format!(
            "    processes:\n    - path: {bin}\n      args: peer --bind 0.0.0.0 --port 6881 \
             --max-upload-rate 100 {extra} {torrent}\n      start_time: {start}s\n      \
             expected_final_state: {end}\n"
        )
    };
    let mut yaml = format!(
        "general:\n  stop_time: 120s\n  seed: 7\n  model_unblocked_syscall_latency: false\n\
         network:\n  graph:\n    type: 1_gbit_switch\n\
         hosts:\n  tracker:\n    network_node_id: 0\n    ip_addr: {TRACKER_IP}\n    processes:\n    \
         - path: {bin}\n      args: tracker --bind 0.0.0.0 --port 6970 --interval 5 --log tracker.log\n      \
         start_time: 0s\n      expected_final_state: running\n  seed:\n    network_node_id: 0\n"
    );
    yaml.push_str(&peer(
        &format!("--seed --data {}", data.display()),
        1,
        "running",
    ));
    for k in 0..leechers {
        yaml.push_str(&format!("  leecher{k}:\n    network_node_id: 0\n"));
        yaml.push_str(&peer("--data movie.bin --linger 2", 2, "{exited: 0}"));
    }
    yaml
}

/// Runs Shadow on `config` in `dir` (its hosts' folders land in `dir/shadow.data`, its own
/// log in `dir/shadow.log`), ended by the test if it has not ended in 120 s of wall time.
/// Returns its exit status and its log.
fn simulate(dir: &Path, config: &Path) -> (ExitStatus, String) {
    let status = run_shadow(dir, config, 1, Duration::from_secs(120)).unwrap();
    let text = std::fs::read_to_string(dir.join("shadow.log")).unwrap_or_default();
    let tail: String = text.lines().rev().take(40).collect::<Vec<_>>().join("\n");
    match status {
        Some(s) => (s, tail),
        None => panic!("shadow did not end within 120 s: {}\n{tail}", dir.display()),
    }
}

/// `movie` as `dir/movie.bin`, and its torrent (32 KiB pieces) announcing to the simulation's
/// tracker.
fn movie_file(dir: &Path, movie: &[u8]) -> (PathBuf, PathBuf) {
    let announce = format!("http://{TRACKER_IP}:6970/announce");
    make_swarm_file(dir, "movie.bin", movie, &announce, 32 * 1024)
}

/// Simulates `yaml` in `dir`, which must end with every process as it expects.
fn simulate_to_the_end(dir: &Path, yaml: &str) {
    let config = dir.join("shadow.yaml");
    std::fs::write(&config, yaml).unwrap();
    let (status, log) = simulate(dir, &config);
    assert!(status.success(), "shadow: {status}\n{log}");
}

/// Host `name` of the simulation in `dir` ended with the movie.
fn assert_has_movie(dir: &Path, name: &str, movie: &[u8]) {
    let copy = host(dir, name).join("movie.bin");
    assert!(
        std::fs::read(&copy).is_ok_and(|c| c == movie),
        "{}: not the movie",
        copy.display()
    );
}

/// A host's folder in a finished simulation.
fn host(dir: &Path, name: &str) -> PathBuf {
    dir.join("shadow.data/hosts").join(name)
}

/// One seed and four leechers under Shadow: every leecher ends with the file and exits as
/// told, and a second simulation of the same config gives the same tracker log, byte for byte.
#[test]
fn a_world_under_shadow_completes_and_runs_again_the_same() {
    if !have_shadow() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let movie = content(1 << 20, 48);
    let (data, torrent) = movie_file(d.path(), &movie);
    let config = d.path().join("shadow.yaml");
    std::fs::write(&config, world(&torrent, &data, 4)).unwrap();
    let mut logs = Vec::new();
    for run in ["a", "b"] {
        let dir = d.path().join(run);
        std::fs::create_dir(&dir).unwrap();
        let (status, log) = simulate(&dir, &config);
        assert!(status.success(), "shadow ({run}): {status}\n{log}");
        for k in 0..4 {
            assert_has_movie(&dir, &format!("leecher{k}"), &movie);
        }
        let log = std::fs::read_to_string(host(&dir, "tracker").join("tracker.log")).unwrap();
        assert!(
            log.matches("completed").count() >= 4,
            "every leecher told the tracker it completed: {log}"
        );
        eprintln!(
            "shadow ({run}): {} tracker log lines, the last: {}",
            log.lines().count(),
            log.lines().last().unwrap_or_default()
        );
        logs.push(log);
    }
    let first_difference = logs[0].lines().zip(logs[1].lines()).find(|(x, y)| x != y);
    assert!(
        logs[0] == logs[1],
        "two simulations of one config differ, first at:\n{first_difference:?}"
    );
}

/// aria2c and Transmission, unmodified (aria2c with its defaults but for the network features
/// a lab has no use for: DHT, local discovery), download the file from our seed through our
/// tracker under Shadow. Transmission keeps seeding, as it does outside.
#[test]
fn real_clients_download_from_our_seed_under_shadow() {
    if !have_shadow() || !have_tool("aria2c") || !have_tool("transmission-cli") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let movie = content(1 << 20, 49);
    let (data, torrent) = movie_file(d.path(), &movie);
    let mut yaml = world(&torrent, &data, 0);
    yaml.push_str(&format!(
        "  aria2:\n    network_node_id: 0\n    processes:\n    - path: /usr/bin/aria2c\n      \
         args: --seed-time=0 --enable-dht=false --bt-enable-lpd=false --dir=. {0}\n      \
         start_time: 2s\n      expected_final_state: {{exited: 0}}\n\
         \x20 transmission:\n    network_node_id: 0\n    processes:\n    - path: /usr/bin/transmission-cli\n      \
         args: -w . {0}\n      environment: {{HOME: .}}\n      start_time: 2s\n      \
         expected_final_state: running\n",
        torrent.display()
    ));
    simulate_to_the_end(d.path(), &yaml);
    for client in ["aria2", "transmission"] {
        assert_has_movie(d.path(), client, &movie);
    }
}

/// libtorrent (python3-libtorrent) under Shadow: it picks its interface from the routing table,
/// which Shadow's netlink does not answer (RTM_GETROUTE), so it is told its address
/// (`listen_interfaces`, `outgoing_interfaces`, `announce_ip`); then it downloads the file from
/// our seed through our tracker.
#[test]
fn libtorrent_told_its_address_downloads_under_shadow() {
    if !have_shadow() || !crate::interop::have_libtorrent() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let movie = content(1 << 20, 50);
    let (data, torrent) = movie_file(d.path(), &movie);
    let ip = "11.0.0.9";
    let script = d.path().join("lt.py");
    std::fs::write(
        &script,
        format!(
            "import time, libtorrent as lt\n\
             s = lt.session({{'listen_interfaces': '{ip}:6881', 'outgoing_interfaces': '{ip}',\n\
             \x20   'announce_ip': '{ip}', 'enable_dht': False, 'enable_lsd': False,\n\
             \x20   'enable_upnp': False, 'enable_natpmp': False}})\n\
             h = s.add_torrent({{'ti': lt.torrent_info('{}'), 'save_path': '.'}})\n\
             while not h.status().is_seeding:\n    time.sleep(0.5)\n",
            torrent.display()
        ),
    )
    .unwrap();
    let mut yaml = world(&torrent, &data, 0);
    yaml.push_str(&format!(
        "  libtorrent:\n    network_node_id: 0\n    ip_addr: {ip}\n    processes:\n    \
         - path: /usr/bin/python3\n      args: {}\n      start_time: 2s\n      \
         expected_final_state: {{exited: 0}}\n",
        script.display()
    ));
    simulate_to_the_end(d.path(), &yaml);
    assert_has_movie(d.path(), "libtorrent", &movie);
}
