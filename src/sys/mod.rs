//! The operating system's plumbing, each piece behind a safe interface: the route-netlink
//! requests a namespace of our own needs ([`netlink`]) and the process tree that keeps every
//! child of a testbed findable and endable ([`procs`]). Nothing here knows about torrents or
//! experiments; the layers above ask for a link, an address or a process group.

pub mod netlink;
pub mod procs;
