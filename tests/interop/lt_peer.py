#!/usr/bin/python3
"""libtorrent (python3-libtorrent) as a real peer for the interop tests, TCP only on loopback.

  lt_peer.py make  FILE OUT.torrent ANNOUNCE   a torrent made by libtorrent (32 KiB pieces)
  lt_peer.py seed  TORRENT DIR PORT            checks DIR's copy, prints "ready", seeds until killed
  lt_peer.py leech TORRENT DIR                 downloads through the torrent's tracker, prints
                                               "done SECONDS", seeds until killed
  lt_peer.py plain TORRENT DIR                 the same with a session of libtorrent's default
                                               settings, as a user would run it
  lt_peer.py webseed TORRENT DIR               a default session; once complete, prints
                                               "webseed W peers P redundant R" (blocks credited
                                               to web seeds and to peers, bytes received twice)
                                               and exits

make, seed and leech run beside a lab where every peer shares 127.0.0.1, so their session
allows several connections per IP; plain changes nothing.
"""
import os
import sys
import time
import urllib.parse

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
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    })


def main():
    mode = sys.argv[1]
    if mode == "make":
        path, out, announce = sys.argv[2], sys.argv[3], sys.argv[4]
        fs = lt.file_storage()
        lt.add_files(fs, path)
        t = lt.create_torrent(fs, 32768)
        t.add_tracker(announce)
        t.set_creator("libtorrent interop test")
        lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
        with open(out, "wb") as f:
            f.write(lt.bencode(t.generate()))
        return 0
    torrent, folder = sys.argv[2], sys.argv[3]
    info = lt.torrent_info(torrent)
    if mode == "seed":
        ses = session(int(sys.argv[4]))
        h = ses.add_torrent({"ti": info, "save_path": folder})
        deadline = time.time() + 30
        while not h.status().is_seeding:
            if time.time() > deadline:
                print("not seeding after 30 s: %s" % h.status().state, flush=True)
                return 1
            time.sleep(0.05)
        print("ready", flush=True)
        while True:
            time.sleep(1)
    if mode in ("leech", "plain"):
        ses = session(0) if mode == "leech" else lt.session()
        t0 = time.time()
        h = ses.add_torrent({"ti": info, "save_path": folder})
        while not h.status().is_seeding:
            time.sleep(0.05)
        print("done %.2f" % (time.time() - t0), flush=True)
        # Then it seeds until killed, like a real client.
        while True:
            time.sleep(1)
    if mode == "webseed":
        # Default settings, and the block alerts that say who sent each block. A world client
        # may send a block first (its rate cap allows one block at once) that the web seed
        # then sends again: libtorrent credits the first to arrive and counts the second as
        # redundant, so both counts are printed.
        ses = lt.session()
        ses.apply_settings({"alert_mask": lt.alert.category_t.block_progress_notification})
        seeds = {urllib.parse.urlparse(w["url"]).hostname for w in info.web_seeds()}
        h = ses.add_torrent({"ti": info, "save_path": folder})
        got = {"web": 0, "peers": 0}

        def credit():
            for a in ses.pop_alerts():
                if isinstance(a, lt.block_finished_alert):
                    piece_len = info.piece_size(a.piece_index)
                    n = min(16384, piece_len - a.block_index * 16384)
                    got["web" if a.endpoint[0] in seeds else "peers"] += n

        while not h.status().is_seeding:
            credit()
            time.sleep(0.02)
        credit()
        st = h.status()
        print("webseed %d peers %d redundant %d" % (got["web"], got["peers"],
                                                    st.total_redundant_bytes), flush=True)
        return 0
    print("unknown mode " + mode, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
