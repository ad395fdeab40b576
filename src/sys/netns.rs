//! A network namespace of the process's own: made with `unshare` (a user namespace with it
//! when not root, as `unshare -Urn` does), its links set up over route netlink so that a whole
//! IPv4 prefix is local, and the ways to find it again (its inode, the processes inside). The
//! lab's address plan on top of it is `lab::netns`'s.
//!
//! As `ip` would say the set-up, for the prefix 10.77.0.0/16 and the source 10.77.0.2:
//!
//! ```text
//! ip link add lab0 type veth peer name lab1; ip link set lo|lab0|lab1 up
//! ip addr add 10.77.0.2/16 dev lab0
//! ip route add local 10.77.0.0/16 dev lab0 src 10.77.0.2 table local
//! ```

use std::net::Ipv4Addr;

use super::netlink::Netlink;

/// Why the namespace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NoNamespace {
    #[error("unshare({what}): {err}")]
    Unshare { what: &'static str, err: nix::Error },
    #[error("{file}: {err}")]
    Map {
        file: &'static str,
        err: std::io::Error,
    },
    #[error("netlink {what}: {err}")]
    Netlink {
        what: &'static str,
        err: std::io::Error,
    },
}

/// Move this process into a new network namespace (and a user namespace when not root) and
/// set up its `lo`. Must run before this process starts a thread: a process with threads
/// cannot enter a user namespace, and the threads would stay behind.
pub fn enter(local: (Ipv4Addr, u8), source: Ipv4Addr) -> Result<(), NoNamespace> {
    use nix::sched::{unshare, CloneFlags};
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    if uid.is_root() {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|err| NoNamespace::Unshare {
            what: "CLONE_NEWNET",
            err,
        })?;
    } else {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|err| {
            NoNamespace::Unshare {
                what: "CLONE_NEWUSER | CLONE_NEWNET",
                err,
            }
        })?;
        // Root inside maps to us outside: files stay ours, and we may configure the network.
        for (file, text) in [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("0 {uid} 1")),
            ("/proc/self/gid_map", format!("0 {gid} 1")),
        ] {
            std::fs::write(file, text).map_err(|err| NoNamespace::Map { file, err })?;
        }
    }
    set_up_network(local, source)
}

/// Whether [`enter`] works here, tried in a child process first: a failure half-way (the
/// namespace made, its network not, as where user namespaces are allowed but their network
/// is not) must not strand the supervisor in an empty namespace. `Err` says why not.
pub fn probe(local: (Ipv4Addr, u8), source: Ipv4Addr) -> Result<(), String> {
    use std::io::{Read, Write};
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: called before the process starts any thread; the child only runs `enter` (no
    // lock another thread could hold) and leaves with _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let code = match enter(local, source) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = std::fs::File::from(w).write_all(e.to_string().as_bytes());
                    1
                }
            };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { nix::libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut why = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut why);
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                _ if !why.is_empty() => Err(why),
                other => Err(format!("the trial ended with {other:?}")),
            }
        }
    }
}

/// `lo` and the `lab0`/`lab1` pair up, `source` on `lab0` with the prefix's length, and the
/// whole `local` prefix local with `source` as the preferred source.
fn set_up_network(local: (Ipv4Addr, u8), source: Ipv4Addr) -> Result<(), NoNamespace> {
    let nl = Netlink::open().map_err(|err| NoNamespace::Netlink {
        what: "socket",
        err,
    })?;
    let fail = |what| move |err| NoNamespace::Netlink { what, err };
    nl.add_veth("lab0", "lab1").map_err(fail("veth pair"))?;
    for dev in ["lo", "lab0", "lab1"] {
        let index = Netlink::index(dev).map_err(fail("interface index"))?;
        nl.link_up(index, None).map_err(fail("link up"))?;
    }
    let lab0 = Netlink::index("lab0").map_err(fail("interface index"))?;
    nl.add_addr(lab0, source, local.1)
        .map_err(fail("address"))?;
    nl.add_local_route(lab0, local.0, local.1, source)
        .map_err(fail("local route"))?;
    Ok(())
}

/// The inode of this process's network namespace (to tell the lab's from the host's).
pub fn current() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// Processes whose network namespace is `inode`.
pub fn members(inode: u64) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == inode)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::IpAddr;

    const LOCAL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 16);
    const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    /// `body` in a forked child that has entered a namespace as the lab's supervisor does
    /// (10.77.0.0/16 local, 10.77.0.2 the source of unbound sockets) (a test
    /// binary has threads; entering moves only the calling one). Skipped (exit 77) where
    /// namespaces are refused, except under CI=true.
    pub(crate) fn in_a_namespace(body: fn() -> Result<(), String>) {
        // SAFETY: the child only runs the test body and _exits; it uses no lock another
        // thread could hold (std's allocator and sockets are fork-safe for this use).
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = match enter(LOCAL, SOURCE)
                    .map_err(|e| e.to_string())
                    .and_then(|()| body())
                {
                    Ok(()) => 0,
                    Err(e) if e.contains("EPERM") || e.contains("Operation not permitted") => {
                        eprintln!("SKIPPED: namespaces not allowed here ({e})");
                        77
                    }
                    Err(e) => {
                        eprintln!("namespace test: {e}");
                        1
                    }
                };
                // SAFETY: leave the forked child without running the parent's destructors.
                unsafe { nix::libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                match st {
                    nix::sys::wait::WaitStatus::Exited(_, 0) => {}
                    nix::sys::wait::WaitStatus::Exited(_, 77)
                        if std::env::var("CI").as_deref() != Ok("true") => {}
                    other => panic!("the namespace child ended with {other:?}"),
                }
            }
        }
    }

    /// The namespace as the supervisor makes it: any address of the prefix binds, a
    /// connection between two of them keeps its source, and an unbound socket comes from
    /// the source address.
    #[test]
    fn a_namespace_where_every_address_is_local() {
        use std::net::{TcpListener, TcpStream};
        in_a_namespace(|| {
            let l = TcpListener::bind("10.77.3.9:7000").map_err(|e| e.to_string())?;
            let s = socket2_connect_from("10.77.1.1".parse().unwrap(), "10.77.3.9:7000")?;
            let (_, from) = l.accept().map_err(|e| e.to_string())?;
            if from.ip() != "10.77.1.1".parse::<IpAddr>().unwrap() {
                return Err(format!("bound source seen as {from}"));
            }
            drop(s);
            let _t = TcpStream::connect("10.77.3.9:7000").map_err(|e| e.to_string())?;
            let (_, from) = l.accept().map_err(|e| e.to_string())?;
            if from.ip() != IpAddr::V4(SOURCE) {
                return Err(format!("unbound source seen as {from}"));
            }
            Ok(())
        });
    }

    /// A TCP connection from `from` (bound first) to `to`.
    pub(crate) fn socket2_connect_from(
        from: IpAddr,
        to: &str,
    ) -> Result<std::net::TcpStream, String> {
        let to: std::net::SocketAddr = to.parse().unwrap();
        let s = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        s.bind(std::net::SocketAddr::new(from, 0))
            .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| e.to_string())?;
        let stream = rt.block_on(s.connect(to)).map_err(|e| e.to_string())?;
        let s = stream.into_std().map_err(|e| e.to_string())?;
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        Ok(s)
    }
}
