//! Network emulation with the real testbed: a run with a `network:` section shows every
//! client's link (API, page, `status`), its world still trades through the link stage, and
//! `stop` leaves the host's qdiscs, links, namespaces, rules and routes as they were, also
//! after the supervisor was SIGKILLed. A config with `network:` where no namespace can be made
//! is refused with one line. (The stage's RTT, loss and throughput are measured in the
//! `netem::tun` unit tests, with sockets on the lab's addresses.)

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// The host's network as `tc`, `ip link`, `ip netns`, `ip rule` and `ip route` print it,
/// without the named namespaces of the two-host test (which may run meanwhile).
fn host_network() -> String {
    let mut s = String::new();
    for args in [
        &["tc", "qdisc", "show"][..],
        &["ip", "-d", "link", "show"],
        &["ip", "netns", "list"],
        &["ip", "rule", "show"],
        &["ip", "route", "show", "table", "all"],
    ] {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        s += &format!("$ {}\n", args.join(" "));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if !line.starts_with("tb-a-") && !line.starts_with("tb-b-") {
                s += line;
                s.push('\n');
            }
        }
    }
    s
}

fn lab() -> Scenario {
    Scenario::new(
        &[("movie.bin", content(300_000, 21))],
        "interval: 1",
        "seed: 9\ntorrents:\n  piece_length: 16384\nworld:\n  clients: 3\n  seeds: 1\n  \
         upload_rate: 400\n  linger: 0.5\n  respawn_jitter: 0.2\n\
         network:\n  rtt_ms: {min: 20, max: 60}\n  loss_percent: 0.5\n  \
         download_rate: {min: 500, max: 900}\n  my_client: {rtt_ms: 30}\n",
    )
}

#[test]
fn a_run_with_a_network_shows_every_link_and_stop_leaves_the_host_as_it_was() {
    if !have_tool("ip") || !have_tool("tc") {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "iproute2 missing"
        );
        eprintln!("SKIPPED: no ip/tc here");
        return;
    }
    let before = host_network();
    let lab = lab();
    ok(&lab.testbed("start", &[]));
    let pid: serde_json::Value =
        serde_json::from_slice(&read(&lab.run_dir().join("testbed.pid"))).unwrap();
    let run_id = pid["run_id"].as_str().unwrap().to_string();
    // Every slot has its link, drawn within the config's ranges; my client's is the config's.
    let (_, body) = http_get(lab.port, "/api/world").unwrap();
    let w: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(w["run"]["my_link"]["rtt_ms"], 30.0);
    let slots = w["world"].as_array().unwrap();
    assert_eq!(slots.len(), 4);
    for s in slots {
        let l = &s["link"];
        let rtt = l["rtt_ms"].as_f64().unwrap();
        let down = l["download_rate"].as_f64().unwrap();
        assert!((20.0..=60.0).contains(&rtt), "{l}");
        assert!((500.0..=900.0).contains(&down), "{l}");
        assert_eq!(l["loss_percent"], 0.5);
    }
    let text = ok(&lab.testbed("status", &[]));
    assert!(
        text.contains("network      emulated: my client rtt 30 ms") && text.contains("LINK"),
        "{text}"
    );
    let first = slots[0]["link"]["rtt_ms"].as_f64().unwrap();
    assert!(text.contains(&format!("rtt {first} ms")), "{text}");
    let (_, page) = http_get(lab.port, "/").unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains(&format!("<span class=\"link\">rtt {first} ms")),
        "the page shows the links"
    );
    // The world trades through the stage: a client completes and a new generation starts.
    a_client_completes(lab.port);
    // SIGKILL the supervisor: nothing it added may outlive `stop`.
    let sup = pid["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the supervisor is gone", Duration::from_secs(5), || {
        !marked(&run_id).contains(&sup)
    });
    ok(&lab.testbed("stop", &[]));
    assert_eq!(marked(&run_id), Vec::<i32>::new());
    assert_eq!(
        host_network(),
        before,
        "the host's network after SIGKILL and stop"
    );
    // And a plain start and stop.
    ok(&lab.testbed("start", &[]));
    ok(&lab.testbed("stop", &[]));
    assert_eq!(
        host_network(),
        before,
        "the host's network after start and stop"
    );
}

#[test]
fn a_network_where_no_namespace_can_be_made_is_refused_with_one_line() {
    let lab = lab();
    // A config that keeps the world out of a namespace.
    let text = std::fs::read_to_string(&lab.config).unwrap();
    let loopback = lab.root().join("loopback.yaml");
    std::fs::write(&loopback, format!("addresses: loopback\n{text}")).unwrap();
    let o = Command::new(testbed_bin())
        .args(["start", "--config"])
        .arg(&loopback)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("loopback.yaml: network:") && err.contains("namespace"),
        "{err}"
    );
    // A machine that allows no namespace: a user namespace whose limits are 0 (as root in it,
    // the testbed tries a plain network namespace, and the kernel says no).
    if !have_tool("unshare") {
        return;
    }
    let script = format!(
        "echo 0 > /proc/sys/user/max_net_namespaces && echo 0 > /proc/sys/user/max_user_namespaces \
         && exec {} start --config {}",
        testbed_bin(),
        lab.config.display()
    );
    let o = Command::new("unshare")
        .args(["-Ur", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("unshare failed") {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{err}");
        eprintln!("SKIPPED: no user namespace for the trial ({err})");
        return;
    }
    assert!(!o.status.success(), "started without its network: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("network:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("needs a network namespace") && lines[0].contains("leave out network:"),
        "{err}"
    );
    assert!(!lab.run_dir().join("testbed.pid").exists());
}

/// Without root: the same run as uid 65534, in a user + network namespace the supervisor makes
/// itself. Links on the API, and the world trades through the stage.
#[test]
fn a_network_without_root_runs_in_a_user_namespace() {
    use std::os::unix::fs::PermissionsExt;
    if !have_tool("setpriv") || !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to become another user (setpriv)");
        return;
    }
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.args(args);
        c
    };
    // The test binary's folder must be reachable by that user (not so in every checkout).
    let reach = as_nobody(&["test", "-x", testbed_bin()]).status().unwrap();
    if !reach.success() {
        eprintln!("SKIPPED: {} is not executable by uid 65534", testbed_bin());
        return;
    }
    // So must the TUN device (mode 0666 as distributions ship it; 0600 on some machines).
    let mut tun = as_nobody(&["test", "-r", "/dev/net/tun", "-a", "-w", "/dev/net/tun"]);
    if !tun.status().unwrap().success() {
        eprintln!("SKIPPED: /dev/net/tun is not open to uid 65534 on this machine");
        return;
    }
    let lab = lab();
    for e in walk(lab.root()) {
        nix::unistd::chown(&e, Some(65534.into()), Some(65534.into())).unwrap();
    }
    std::fs::set_permissions(lab.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = lab.config.to_str().unwrap();
    let run_id;
    {
        let o = as_nobody(&[testbed_bin(), "start", "--config", config])
            .output()
            .unwrap();
        ok(&o);
        let pid: serde_json::Value =
            serde_json::from_slice(&read(&lab.run_dir().join("testbed.pid"))).unwrap();
        run_id = pid["run_id"].as_str().unwrap().to_string();
        let sup = pid["pid"].as_i64().unwrap();
        let uid = std::fs::metadata(format!("/proc/{sup}")).map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        });
        assert_eq!(uid.unwrap(), 65534, "the supervisor runs as uid 65534");
    }
    let (_, body) = http_get(lab.port, "/api/world").unwrap();
    let w: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(w["world"][0]["link"]["rtt_ms"].as_f64().is_some(), "{w}");
    a_client_completes(lab.port);
    ok(&as_nobody(&[testbed_bin(), "stop", "--config", config])
        .output()
        .unwrap());
    assert_eq!(marked(&run_id), Vec::<i32>::new());
}

/// Wait until a world client has completed (through the emulated links) and a new
/// generation took its slot.
fn a_client_completes(port: u16) {
    wait_until(
        "a world client completes through the emulated links",
        Duration::from_secs(90),
        || {
            http_get(port, "/api/world")
                .ok()
                .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|w| {
                    w["world"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| s["generation"].as_u64().unwrap_or(0) >= 1)
                })
        },
    );
}

/// Every path under `root`, itself included.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if root.is_dir() {
        for e in std::fs::read_dir(root).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}
