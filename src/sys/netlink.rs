//! A NETLINK_ROUTE socket for the few requests a network namespace of our own needs: a veth
//! pair, links up, an address, routes (local ones, and a table of our own) and policy-routing
//! rules. What `ip link`, `ip addr`, `ip route` and `ip rule` would send, without needing the
//! `ip` binary or a crate for five messages. IPv4 only.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An open route-netlink socket of this process's network namespace.
pub struct Netlink {
    fd: OwnedFd,
}

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const IFLA_TXQLEN: u16 = 13;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FR_ACT_TO_TBL: u8 = 1;
/// The kernel's `local` routing table.
pub const TABLE_LOCAL: u8 = 255;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const RTN_PROHIBIT: u8 = 8;

/// A policy-routing rule: `ip rule add pref P [from S] [to D] [iif I] lookup T`.
#[derive(Debug, Clone, Default)]
pub struct Rule<'a> {
    pub pref: u32,
    pub from: Option<(Ipv4Addr, u8)>,
    pub to: Option<(Ipv4Addr, u8)>,
    pub iif: Option<&'a str>,
    pub table: u8,
}

/// What a route of a table of our own does with a packet.
#[derive(Debug, Clone, Copy)]
pub enum RouteTo {
    /// Out of this interface (`dev X`).
    Device(u32),
    /// Refused with EACCES (`prohibit`).
    Prohibit,
}

impl Netlink {
    pub fn open() -> std::io::Result<Netlink> {
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

    /// The index of interface `name`.
    pub fn index(name: &str) -> std::io::Result<u32> {
        nix::net::if_::if_nametoindex(name).map_err(|e| std::io::Error::from_raw_os_error(e as i32))
    }

    /// `ip link set dev up [txqueuelen N]`.
    pub fn link_up(&self, index: u32, txqlen: Option<u32>) -> std::io::Result<()> {
        // ifinfomsg: family, pad, type, index, flags, change
        let mut b = vec![0u8, 0];
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&(index as i32).to_ne_bytes());
        b.extend_from_slice(&IFF_UP.to_ne_bytes());
        b.extend_from_slice(&IFF_UP.to_ne_bytes());
        if let Some(q) = txqlen {
            attr(&mut b, IFLA_TXQLEN, &q.to_ne_bytes());
        }
        self.request(RTM_NEWLINK, 0, &b)
    }

    /// A veth pair `a`/`b` in this namespace.
    pub fn add_veth(&self, a: &str, b: &str) -> std::io::Result<()> {
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

    pub fn add_addr(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
        // ifaddrmsg: family, prefix length, flags, scope (universe), index
        let mut b = vec![nix::libc::AF_INET as u8, prefix, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        attr(&mut b, IFA_LOCAL, &ip.octets());
        attr(&mut b, IFA_ADDRESS, &ip.octets());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &b)
    }

    /// `ip route add local DST/LEN dev IF src SRC table local`.
    pub fn add_local_route(
        &self,
        index: u32,
        dst: Ipv4Addr,
        len: u8,
        src: Ipv4Addr,
    ) -> std::io::Result<()> {
        let mut b = rtmsg(len, TABLE_LOCAL, RT_SCOPE_HOST, RTN_LOCAL);
        attr(&mut b, RTA_DST, &dst.octets());
        attr(&mut b, RTA_OIF, &index.to_ne_bytes());
        attr(&mut b, RTA_PREFSRC, &src.octets());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &b)
    }

    /// `ip route add default dev IF table T metric M`, or `prohibit default table T metric M`.
    pub fn add_default_route(&self, table: u8, to: RouteTo, metric: u32) -> std::io::Result<()> {
        let mut b = match to {
            RouteTo::Device(_) => rtmsg(0, table, RT_SCOPE_LINK, RTN_UNICAST),
            RouteTo::Prohibit => rtmsg(0, table, RT_SCOPE_UNIVERSE, RTN_PROHIBIT),
        };
        if let RouteTo::Device(index) = to {
            attr(&mut b, RTA_OIF, &index.to_ne_bytes());
        }
        attr(&mut b, RTA_PRIORITY, &metric.to_ne_bytes());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &b)
    }

    /// `ip rule add ...`.
    pub fn add_rule(&self, r: &Rule<'_>) -> std::io::Result<()> {
        self.request(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, &rule_msg(r))
    }

    /// `ip rule del ...` (the rule that matches all of `r`).
    pub fn del_rule(&self, r: &Rule<'_>) -> std::io::Result<()> {
        self.request(RTM_DELRULE, 0, &rule_msg(r))
    }
}

/// rtmsg: family, dst len, src len, tos, table, protocol, scope, type, flags.
fn rtmsg(dst_len: u8, table: u8, scope: u8, kind: u8) -> Vec<u8> {
    let mut b = vec![
        nix::libc::AF_INET as u8,
        dst_len,
        0,
        0,
        table,
        RTPROT_STATIC,
        scope,
        kind,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// fib_rule_hdr (family, dst len, src len, tos, table, 2 reserved, action, flags) and attributes.
fn rule_msg(r: &Rule<'_>) -> Vec<u8> {
    let mut b = vec![
        nix::libc::AF_INET as u8,
        r.to.map_or(0, |t| t.1),
        r.from.map_or(0, |f| f.1),
        0,
        r.table,
        0,
        0,
        FR_ACT_TO_TBL,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut b, FRA_PRIORITY, &r.pref.to_ne_bytes());
    attr(&mut b, FRA_TABLE, &u32::from(r.table).to_ne_bytes());
    if let Some((ip, _)) = r.to {
        attr(&mut b, FRA_DST, &ip.octets());
    }
    if let Some((ip, _)) = r.from {
        attr(&mut b, FRA_SRC, &ip.octets());
    }
    if let Some(i) = r.iif {
        let mut name = i.as_bytes().to_vec();
        name.push(0);
        attr(&mut b, FRA_IIFNAME, &name);
    }
    b
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

/// Write a sysctl of this network namespace (`net.ipv4.conf.tun0.accept_local` is
/// `/proc/sys/net/ipv4/conf/tun0/accept_local`).
pub fn sysctl(name: &str, value: &str) -> std::io::Result<()> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))
}
