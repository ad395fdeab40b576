#!/usr/bin/python3
"""A foreign my client for the testbed: libtorrent (python3-libtorrent) playing a torrent.

This is the documented way to bring another BitTorrent implementation into the lab. It takes
the testbed's default my-client arguments (the old btdownloadheadless.py flags):

    testbed run examples/libtorrent_vod.py
    testbed start examples/libtorrent_vod.py        # and later: testbed stop

    --saveas PATH --max_upload_rate KBPS --rate KBPS --delay S --prefetch S
    --vod-server URL --report FILE [--security X] [--mode time-critical|sequential] TORRENT

The playback model is the lab's (1 KB = 1024 B): piece i is due at D - P + i*L/R seconds after
start. `--mode time-critical` (the default) gives every piece that deadline through libtorrent's
set_piece_deadline (its time-critical picker does the rest); `--mode sequential` turns on
libtorrent's sequential_download instead and sets no deadline. Everything else is libtorrent's
default settings, as a user runs it (the upload cap aside, made to hold for peers on a local
network too). At each deadline, a piece libtorrent does not have yet is fetched whole
from the VoD server (every byte counted there: the penalty) and handed to libtorrent with
add_piece, which hash-checks and writes it. The report is written every second and at the end,
in the SPEC's format. Playback over, it exits (SIGTERM or SIGINT end it earlier).
"""

import argparse
import json
import os
import signal
import sys
import time
import urllib.request

import libtorrent as lt


def parse_args():
    # Every flag defaults to the testbed's TESTBED_* variable, so that `libtorrent_vod.py --mode
    # sequential` alone (no template arguments) runs as my client too.
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--saveas", default=env("TESTBED_SAVEAS"), required=not env("TESTBED_SAVEAS"))
    p.add_argument("--max_upload_rate", type=float, default=float(env("TESTBED_MAX_UPLOAD_RATE", 0)))
    p.add_argument("--rate", type=float, default=float(env("TESTBED_RATE", 5)))
    p.add_argument("--delay", type=float, default=float(env("TESTBED_DELAY", 6)))
    p.add_argument("--prefetch", type=float, default=float(env("TESTBED_PREFETCH", 2)))
    p.add_argument("--vod-server", dest="vod_server", default=env("TESTBED_VOD_URL"))
    p.add_argument("--report", default=env("TESTBED_REPORT"))
    p.add_argument("--security", help="accepted for compatibility; no effect")
    p.add_argument("--mode", choices=["time-critical", "sequential"], default="time-critical")
    p.add_argument("torrent", nargs="?" if env("TESTBED_TORRENT") else None,
                   default=env("TESTBED_TORRENT"))
    return p.parse_args()


def fetch_piece(url, info, i):
    """One whole piece from the VoD server (HTTP Range), naming this client."""
    start = i * info.piece_length()
    end = start + info.piece_size(i) - 1
    req = urllib.request.Request(
        url + ("&" if "?" in url else "?") + "client=libtorrent-vod",
        headers={"Range": f"bytes={start}-{end}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as r:
        return r.read()


def main():
    a = parse_args()
    info = lt.torrent_info(a.torrent)
    rate = a.rate * 1024.0
    n = info.num_pieces()
    plen = info.piece_length()
    deadline = [a.delay - a.prefetch + i * plen / rate for i in range(n)]

    # libtorrent's defaults, but for the lab's upload cap and nothing beyond the lab (no DHT,
    # local discovery or port mapping: the tracker is the only source of peers).
    ses = lt.session({
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "upload_rate_limit": int(a.max_upload_rate * 1024),
        "alert_mask": 0,
    })
    # The cap must hold for every peer. By default libtorrent puts peers on a local network (and
    # every lab address is one) in its "local" peer class, which has no rate limit and is always
    # unchoked: it then uploads to the whole world at once, far above the cap, and buys every
    # world client's unchoke with it (the referee flags such runs). One class for all addresses,
    # the global one, as for peers on the Internet.
    everyone = lt.ip_filter()
    everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    everyone.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                      1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(everyone)
    save_dir = os.path.dirname(os.path.abspath(a.saveas))
    os.makedirs(save_dir, exist_ok=True)
    h = ses.add_torrent({"ti": info, "save_path": save_dir})
    if os.path.basename(a.saveas) != info.files().file_path(0):
        h.rename_file(0, os.path.basename(a.saveas))

    t0 = time.monotonic()
    if a.mode == "sequential":
        h.set_flags(lt.torrent_flags.sequential_download)
    else:
        for i in range(n):
            h.set_piece_deadline(i, max(1, int(deadline[i] * 1000)))

    arrived = [None] * n
    source = [None] * n
    server_bytes = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    def report(finished):
        if not a.report:
            return
        from_peers = sum(info.piece_size(i) for i in range(n) if source[i] == "peer")
        r = {
            "torrent": a.torrent, "size": info.total_size(), "piece_length": plen,
            "pieces": n, "rate": a.rate, "delay": a.delay, "prefetch": a.prefetch,
            "policy": "libtorrent-" + a.mode, "bytes_from_peers": from_peers,
            "bytes_from_server": server_bytes,
            "pieces_from_server": sum(1 for s in source if s == "server"),
            "penalty": server_bytes, "elapsed": time.monotonic() - t0,
            "finished_at": (time.monotonic() - t0) if finished else None,
            "pieces_detail": [
                {"index": i, "deadline": deadline[i], "arrived": arrived[i], "source": source[i]}
                for i in range(n)
            ],
        }
        tmp = a.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump(r, f)
        os.replace(tmp, a.report)

    next_due = 0
    last_report = 0.0
    while not stop and next_due < n:
        now = time.monotonic() - t0
        for i in range(n):
            if arrived[i] is None and h.have_piece(i):
                arrived[i], source[i] = now, "peer"
        while next_due < n and deadline[next_due] <= now:
            i = next_due
            next_due += 1
            if arrived[i] is not None or not a.vod_server:
                continue
            data = fetch_piece(a.vod_server, info, i)
            server_bytes += len(data)
            arrived[i], source[i] = time.monotonic() - t0, "server"
            h.add_piece(i, data, 0)
        if now - last_report >= 1.0:
            report(False)
            last_report = now
        time.sleep(0.05)
    report(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
