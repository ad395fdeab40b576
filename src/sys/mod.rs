//! The operating system's plumbing, each piece behind a safe interface: the route-netlink
//! requests a namespace of our own needs ([`netlink`]), the namespace itself ([`netns`]), the process tree that keeps every
//! child of a testbed findable and endable ([`procs`]), and the TUN device the link stage reads
//! and writes packets through ([`tun`]). Nothing here knows about torrents or
//! experiments; the layers above ask for a link, an address or a process group.

pub mod cgroup;
pub mod netlink;
pub mod netns;
pub mod procs;
pub mod spawn;
pub mod tun;
