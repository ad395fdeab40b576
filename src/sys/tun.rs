//! A TUN device and the calls the link stage makes on it, each `unsafe` system call behind a
//! safe method: open the device (IPv4 packets, no header of its own, non-blocking), read and
//! write one packet, wait until one is there; and the thread priority the stage asks for.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;

/// An open TUN device.
pub struct Tun(OwnedFd);

impl Tun {
    /// Open (or make) the TUN device `name`.
    pub fn open(name: &str) -> io::Result<Tun> {
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        if name.len() >= 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: a device name has at most 15 bytes"),
            ));
        }
        // SAFETY: open(2) of a constant path; the fd is owned from here on.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let why = match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    " (this user may not open it: Linux distributions ship it as mode 0666)"
                }
                _ => "",
            };
            return Err(io::Error::new(e.kind(), format!("/dev/net/tun: {e}{why}")));
        }
        // SAFETY: fd is a new, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // struct ifreq: the name, then the flags (short) in a 24-byte union.
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which ifr is the size of.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tun(fd))
    }

    /// One packet into `buf`: its length, or `WouldBlock` when none is waiting.
    #[inline]
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// One packet out.
    #[inline]
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        // SAFETY: packet is valid for packet.len() bytes.
        let n = unsafe { libc::write(self.0.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Wait until a packet can be read, or `ns` nanoseconds have passed, or a signal came.
    pub fn wait_readable(&self, ns: u64) -> io::Result<()> {
        let ts = libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        };
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask change.
        if unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Ask that the calling thread run ahead of others (a lower nice value, e.g. -10), where the
/// process may; a refusal is not an error (the thread keeps its priority).
pub fn raise_this_thread(nice: i32) {
    // SAFETY: gettid and setpriority on this thread's own id; no memory is touched.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as u32, nice);
    }
}
