//! Section `cap`: upload-cap accuracy, a raw wire leecher against a capped seed.

use super::*;

pub(crate) fn cap(b: &mut Bench) -> Result<()> {
    let dir = b.dir.join("cap");
    let src = dir.join("blob.bin");
    random_file(&src, 16 * MIB, 9)?;
    let torrent_path = dir.join("blob.torrent");
    let torrent = make_torrent(&src, &torrent_path, 256 * 1024)?;
    let (warm, span) = if b.quick { (1.0, 5.0) } else { (2.0, 10.0) };
    let caps = [20.0, 70.0, 500.0];
    let mut seeds = Vec::new();
    let mut ports = Vec::new();
    for c in caps {
        let port = free_port();
        seeds.push(our_seed(
            port,
            &src,
            &torrent_path,
            &["--max-upload-rate", &c.to_string()],
        )?);
        ports.push(port);
    }
    for &p in &ports {
        wait_port(p, Duration::from_secs(30))?;
    }
    // The three leechers measure at once (each seed has its own cap).
    let results: Vec<Result<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = ports
            .iter()
            .map(|&p| {
                let t = &torrent;
                s.spawn(move || raw_download_rate(t, p, warm, span))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(seeds);
    for (c, r) in caps.iter().zip(results) {
        let kbps = r? / 1024.0;
        let i = b.add(
            "cap",
            &format!("upload cap {c} KB/s, measured"),
            kbps,
            "KB/s",
        );
        let ratio = kbps / c;
        b.figures[i].ratio = Some(ratio);
        b.target(i, "within +-5% of the cap", (ratio - 1.0).abs() <= 0.05);
    }
    Ok(())
}

/// Download from the seed at `port` with a deep pipeline and return the bytes/s received
/// from `warm` to `warm + span` seconds after the unchoke.
pub(crate) fn raw_download_rate(t: &Torrent, port: u16, warm: f64, span: f64) -> Result<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    s.set_nodelay(true)?;
    let mut out = BytesMut::new();
    Handshake::new(t.info_hash.0, *b"-BN0001-capmeasure01").encode(&mut out);
    Message::Interested.encode(&mut out);
    s.write_all(&out)?;
    out.clear();
    let mut inbuf = BytesMut::with_capacity(1 << 20);
    let dec = Decoder::for_pieces(t.num_pieces());
    let mut shaken = false;
    let mut unchoked_at: Option<Instant> = None;
    let mut next_block: u64 = 0;
    let blocks_per_piece = (t.piece_length / BLOCK_SIZE) as u64;
    let total_blocks = t.num_pieces() as u64 * blocks_per_piece;
    let mut outstanding = 0usize;
    let mut counted = 0u64;
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if let Some(u) = unchoked_at {
            let e = u.elapsed().as_secs_f64();
            if e >= warm + span {
                return Ok(counted as f64 / span);
            }
            while outstanding < 64 {
                let k = next_block % total_blocks;
                next_block += 1;
                Message::Request(BlockRef {
                    index: (k / blocks_per_piece) as u32,
                    begin: (k % blocks_per_piece) as u32 * BLOCK_SIZE,
                    length: BLOCK_SIZE,
                })
                .encode(&mut out);
                outstanding += 1;
            }
            if !out.is_empty() {
                s.write_all(&out)?;
                out.clear();
            }
        } else if start.elapsed() > Duration::from_secs(30) {
            bail!("seed on port {port} never unchoked the measuring leecher");
        }
        match s.read(&mut buf) {
            Ok(0) => bail!("seed on port {port} closed the connection"),
            Ok(n) => inbuf.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        if !shaken {
            if Handshake::parse(&mut inbuf)?.is_none() {
                continue;
            }
            shaken = true;
        }
        while let Some(m) = dec.decode(&mut inbuf)? {
            match m {
                Message::Unchoke if unchoked_at.is_none() => unchoked_at = Some(Instant::now()),
                Message::Piece { data, .. } => {
                    outstanding = outstanding.saturating_sub(1);
                    let e = unchoked_at.map_or(0.0, |u| u.elapsed().as_secs_f64());
                    if e >= warm && e < warm + span {
                        counted += data.len() as u64;
                    }
                }
                Message::Reject(_) => outstanding = outstanding.saturating_sub(1),
                Message::Choke => bail!("seed on port {port} choked the measuring leecher"),
                _ => {}
            }
        }
    }
}
