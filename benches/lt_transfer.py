#!/usr/bin/python3
"""The anchor of the peer-wire benchmark: libtorrent (python3-libtorrent) moving one torrent
between two processes on loopback, TCP only (uTP, DHT, LSD, UPnP and NAT-PMP off).

  lt_transfer.py seed  TORRENT DATA_DIR PORT     prints "ready" once seeding, runs until killed
  lt_transfer.py leech TORRENT SAVE_DIR SEED_PORT prints "done SECONDS" when complete, exits

The leecher verifies every piece (libtorrent always does); the seed is added in seed mode so
that its start-up does not hash the file (the timed part is the leecher's).
"""
import sys
import time

import libtorrent as lt


def session(port):
    return lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": 0,
    })


def main():
    mode, torrent, folder, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    info = lt.torrent_info(torrent)
    if mode == "seed":
        ses = session(port)
        h = ses.add_torrent({"ti": info, "save_path": folder,
                             "flags": lt.torrent_flags.seed_mode})
        while not h.status().is_seeding:
            time.sleep(0.05)
        print("ready", flush=True)
        while True:
            time.sleep(1)
    else:
        ses = session(0)
        start = time.monotonic()
        h = ses.add_torrent({"ti": info, "save_path": folder})
        h.connect_peer(("127.0.0.1", port), 0)
        while not h.status().is_seeding:
            time.sleep(0.02)
        print("done %.3f" % (time.monotonic() - start), flush=True)


if __name__ == "__main__":
    main()
