//! The lab's own network: a network namespace that the supervisor makes for its run, where
//! every world client has an address of its own.
//!
//! Real clients keep one connection per address (libtorrent, qBittorrent, Deluge, Transmission)
//! and Transmission drops every 127.0.0.0/8 peer a tracker gives it. So in the namespace the
//! whole of 10.77.0.0/16 is local: any process can bind any address of it, and a connection
//! between two of them never leaves the kernel. The range lives on `lab0`, one end of a veth
//! pair (both ends inside), not on `lo`: libtorrent announces only from an interface whose
//! routes reach the tracker, and it takes nothing on `lo` to reach past 127/8. As `ip` would
//! say it:
//!
//! ```text
//! ip link add lab0 type veth peer name lab1; ip link set lo|lab0|lab1 up
//! ip addr add 10.77.0.2/16 dev lab0
//! ip route add local 10.77.0.0/16 dev lab0 src 10.77.0.2 table local
//! ```
//!
//! The tracker and the VoD server listen on [`TRACKER`]; a socket that binds no address (my
//! client, whatever it is) gets [`MY_CLIENT`] as its source; world client `k` binds
//! [`world_addr`]`(k)` for listening, dialling and announcing.
//!
//! The supervisor moves itself into the namespace before it starts any thread
//! ([`enter`]), so every process it starts is inside too. As root it makes a plain network
//! namespace; otherwise a user namespace with it (as `unshare -Urn` does), where it is root
//! over that namespace only. Sockets bound before the move stay in the host's namespace: that
//! is how the status page stays reachable from the host's browser. The namespace has no name
//! and no mount: it ends with the last process inside it, so `testbed stop` removes it by
//! ending the run's processes, also after the supervisor was SIGKILLed. Private addresses never
//! touch the host.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Where the tracker, the status page and the VoD server listen inside the namespace.
pub const TRACKER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The source address of a socket that binds none: my client's.
pub const MY_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The namespace's local range.
pub const PREFIX: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 16);

/// Most world clients one run can address.
pub const MAX_CLIENTS: usize = 253 * 250;

/// World client `k` (numbered across swarms): 10.77.(1 + k / 250).(1 + k % 250), stable per
/// slot, unique in the run. `None` past [`MAX_CLIENTS`].
pub fn world_addr(k: usize) -> Option<IpAddr> {
    addr_in([10, 77], k)
}

/// The same plan on the host's loopback (127.77.0.0/16), where no namespace can be made.
pub fn loopback_addr(k: usize) -> Option<IpAddr> {
    addr_in([127, 77], k)
}

fn addr_in([a, b]: [u8; 2], k: usize) -> Option<IpAddr> {
    (k < MAX_CLIENTS).then(|| {
        IpAddr::V4(Ipv4Addr::new(
            a,
            b,
            (1 + k / 250) as u8,
            (1 + k % 250) as u8,
        ))
    })
}

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
pub fn enter() -> Result<(), NoNamespace> {
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
    set_up_network()
}

/// Whether [`enter`] works here, tried in a child process first: a failure half-way (the
/// namespace made, its network not, as where user namespaces are allowed but their network
/// is not) must not strand the supervisor in an empty namespace. `Err` says why not.
pub fn probe() -> Result<(), String> {
    use std::io::{Read, Write};
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: called before the process starts any thread; the child only runs `enter` (no
    // lock another thread could hold) and leaves with _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let code = match enter() {
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

/// `lo` and the `lab0`/`lab1` pair up, [`MY_CLIENT`]/16 on `lab0`, and the whole [`PREFIX`]
/// local with [`MY_CLIENT`] as the preferred source.
fn set_up_network() -> Result<(), NoNamespace> {
    let nl = Netlink::open().map_err(|err| NoNamespace::Netlink {
        what: "socket",
        err,
    })?;
    let fail = |what| move |err| NoNamespace::Netlink { what, err };
    nl.add_veth("lab0", "lab1").map_err(fail("veth pair"))?;
    for dev in ["lo", "lab0", "lab1"] {
        let index = nix::net::if_::if_nametoindex(dev)
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
            .map_err(fail("interface index"))?;
        nl.link_up(index).map_err(fail("link up"))?;
    }
    let lab0 = nix::net::if_::if_nametoindex("lab0")
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        .map_err(fail("interface index"))?;
    nl.add_addr(lab0, MY_CLIENT, PREFIX.1)
        .map_err(fail("address"))?;
    nl.add_local_route(lab0, PREFIX.0, PREFIX.1, MY_CLIENT)
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

/// A NETLINK_ROUTE socket, for the requests a new namespace needs: a veth pair, links up, an
/// address, a local route.
struct Netlink {
    fd: OwnedFd,
}

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PREFSRC: u16 = 7;
const RT_TABLE_LOCAL: u8 = 255;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_HOST: u8 = 254;
const RTN_LOCAL: u8 = 2;

impl Netlink {
    fn open() -> std::io::Result<Netlink> {
        use nix::libc;
        // SAFETY: plain socket(2); the fd is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new, valid descriptor that nothing else owns.
        Ok(Netlink {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Send one request (header added here) and wait for its acknowledgement.
    fn request(&self, kind: u16, flags: u16, body: &[u8]) -> std::io::Result<()> {
        use nix::libc;
        let len = 16 + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        msg.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
        msg.extend_from_slice(body);
        // SAFETY: msg is a valid buffer of msg.len() bytes; the socket is connected to no one,
        // and a netlink send without an address goes to the kernel.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
            return Err(std::io::Error::other("unexpected netlink answer"));
        }
        match i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(-e)),
        }
    }

    fn link_up(&self, index: u32) -> std::io::Result<()> {
        // ifinfomsg: family, pad, type, index, flags, change
        let mut b = vec![0u8, 0];
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&(index as i32).to_ne_bytes());
        b.extend_from_slice(&IFF_UP.to_ne_bytes());
        b.extend_from_slice(&IFF_UP.to_ne_bytes());
        self.request(RTM_NEWLINK, 0, &b)
    }

    /// A veth pair `a`/`b` in this namespace.
    fn add_veth(&self, a: &str, b: &str) -> std::io::Result<()> {
        let ifinfo = |out: &mut Vec<u8>| {
            // ifinfomsg: family, pad, type, index, flags, change
            out.extend_from_slice(&[0u8; 16]);
        };
        let name = |n: &str| {
            let mut v = n.as_bytes().to_vec();
            v.push(0);
            v
        };
        let mut peer = Vec::new();
        ifinfo(&mut peer);
        attr(&mut peer, IFLA_IFNAME, &name(b));
        let mut data = Vec::new();
        attr(&mut data, VETH_INFO_PEER, &peer);
        let mut info = Vec::new();
        attr(&mut info, IFLA_INFO_KIND, &name("veth"));
        attr(&mut info, IFLA_INFO_DATA, &data);
        let mut msg = Vec::new();
        ifinfo(&mut msg);
        attr(&mut msg, IFLA_IFNAME, &name(a));
        attr(&mut msg, IFLA_LINKINFO, &info);
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &msg)
    }

    fn add_addr(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
        // ifaddrmsg: family, prefix length, flags, scope (universe), index
        let mut b = vec![nix::libc::AF_INET as u8, prefix, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        attr(&mut b, IFA_LOCAL, &ip.octets());
        attr(&mut b, IFA_ADDRESS, &ip.octets());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &b)
    }

    fn add_local_route(
        &self,
        index: u32,
        dst: Ipv4Addr,
        len: u8,
        src: Ipv4Addr,
    ) -> std::io::Result<()> {
        // rtmsg: family, dst len, src len, tos, table, protocol, scope, type, flags
        let mut b = vec![
            nix::libc::AF_INET as u8,
            len,
            0,
            0,
            RT_TABLE_LOCAL,
            RTPROT_STATIC,
            RT_SCOPE_HOST,
            RTN_LOCAL,
        ];
        b.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut b, RTA_DST, &dst.octets());
        attr(&mut b, RTA_OIF, &index.to_ne_bytes());
        attr(&mut b, RTA_PREFSRC, &src.octets());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &b)
    }
}

/// Append a route attribute (length, type, value, padding to 4 bytes).
fn attr(b: &mut Vec<u8>, kind: u16, value: &[u8]) {
    b.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(value);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_addresses_are_distinct_and_inside_the_prefix() {
        let mut seen = std::collections::HashSet::new();
        for k in 0..5000 {
            let IpAddr::V4(a) = world_addr(k).unwrap() else {
                panic!("v4")
            };
            let o = a.octets();
            assert_eq!((o[0], o[1]), (10, 77));
            assert!(o[2] >= 1 && (1..=250).contains(&o[3]), "{a}");
            assert!(a != TRACKER && a != MY_CLIENT);
            assert!(seen.insert(a), "{a} twice");
        }
        assert_eq!(world_addr(0), Some("10.77.1.1".parse().unwrap()));
        assert_eq!(world_addr(251), Some("10.77.2.2".parse().unwrap()));
        assert!(world_addr(MAX_CLIENTS).is_none());
        assert_eq!(loopback_addr(0), Some("127.77.1.1".parse().unwrap()));
    }

    /// The namespace as the supervisor makes it, in a child process (a test binary has
    /// threads; the child forks before any): any address of the prefix binds, a connection
    /// between two of them keeps its source, and an unbound socket comes from MY_CLIENT.
    #[test]
    fn a_namespace_where_every_address_is_local() {
        use std::net::{TcpListener, TcpStream};
        // SAFETY: the child only runs the test body and _exits; it uses no lock another
        // thread could hold (std's allocator and sockets are fork-safe for this use).
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| -> Result<(), String> {
                    enter().map_err(|e| e.to_string())?;
                    let l = TcpListener::bind("10.77.3.9:7000").map_err(|e| e.to_string())?;
                    let s = socket2_connect_from("10.77.1.1".parse().unwrap(), "10.77.3.9:7000")?;
                    let (_, from) = l.accept().map_err(|e| e.to_string())?;
                    if from.ip() != "10.77.1.1".parse::<IpAddr>().unwrap() {
                        return Err(format!("bound source seen as {from}"));
                    }
                    drop(s);
                    let _t = TcpStream::connect("10.77.3.9:7000").map_err(|e| e.to_string())?;
                    let (_, from) = l.accept().map_err(|e| e.to_string())?;
                    if from.ip() != IpAddr::V4(MY_CLIENT) {
                        return Err(format!("unbound source seen as {from}"));
                    }
                    Ok(())
                })();
                let code = match code {
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

    /// A TCP connection from `from` (bound first) to `to`.
    fn socket2_connect_from(from: IpAddr, to: &str) -> Result<std::net::TcpStream, String> {
        let to: std::net::SocketAddr = to.parse().unwrap();
        let s = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        s.bind(std::net::SocketAddr::new(from, 0))
            .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| e.to_string())?;
        let stream = rt.block_on(s.connect(to)).map_err(|e| e.to_string())?;
        stream.into_std().map_err(|e| e.to_string())
    }
}
