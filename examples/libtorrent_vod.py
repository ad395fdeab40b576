#!/usr/bin/python3
"""A foreign my client for the testbed: libtorrent (python3-libtorrent) playing a torrent.

This is the documented way to bring another BitTorrent implementation into the lab. It takes
the testbed's default my-client arguments (the old btdownloadheadless.py flags):

    testbed run examples/libtorrent_vod.py
    testbed start examples/libtorrent_vod.py        # and later: testbed stop

    --saveas PATH --max_upload_rate KBPS --rate KBPS --delay S --prefetch S
    --vod-server URL --report FILE [--security X] TORRENT

The playback model is the lab's (1 KB = 1024 B): piece i is due at D - P + i*L/R seconds after
start. Every piece gets that deadline through libtorrent's set_piece_deadline (its time-critical
picker does the rest). At each deadline, a piece libtorrent does not have yet is fetched whole
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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--saveas", required=True)
    p.add_argument("--max_upload_rate", type=float, default=0.0)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--delay", type=float, default=6.0)
    p.add_argument("--prefetch", type=float, default=2.0)
    p.add_argument("--vod-server", dest="vod_server")
    p.add_argument("--report")
    p.add_argument("--security", help="accepted for compatibility; no effect")
    p.add_argument("torrent")
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

    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        # Every peer of the lab shares 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        "upload_rate_limit": int(a.max_upload_rate * 1024),
        "alert_mask": 0,
    })
    save_dir = os.path.dirname(os.path.abspath(a.saveas))
    os.makedirs(save_dir, exist_ok=True)
    h = ses.add_torrent({"ti": info, "save_path": save_dir})
    if os.path.basename(a.saveas) != info.files().file_path(0):
        h.rename_file(0, os.path.basename(a.saveas))

    t0 = time.monotonic()
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
            "policy": "libtorrent", "bytes_from_peers": from_peers,
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
