#!/usr/bin/python3
"""qbittorrent-nox as my client, unmodified, in its streaming mode.

    testbed run examples/qbittorrent_stream.py
    testbed compare --client examples/qbittorrent_stream.py --policy deadline ...

Streaming mode is qBittorrent's "Download in sequential order" plus "Download first and last
pieces first", both set when the torrent is added through the Web API (v2). qBittorrent never
calls the VoD server, so the referee scores it (late bytes; docs/referee.md). Its settings
are qBittorrent's defaults but for: the global upload limit (TESTBED_MAX_UPLOAD_RATE KB/s, in
bytes/s; qBittorrent applies it to LAN peers too, its default), the legal notice accepted in its
config (it would otherwise wait for a key on stdin) and its Web UI on 127.0.0.1 at a free port,
logged in with the default admin/adminadmin. Its profile (config, logs, BT_backup) is
dirname(TESTBED_SAVEAS)/.qbittorrent (--profile). Once the torrent is complete it asks
qBittorrent to shut down (/api/v2/app/shutdown) and exits 0; SIGTERM or SIGINT end qBittorrent
too and exit 143 or 130. Other arguments are ignored (it reads only TESTBED_*).
Note: libtorrent (under qBittorrent) re-announces no sooner than every 300 s whatever the
tracker's interval (its min_announce_interval): it learns of new world clients only from those
that find it (the lab's tracker keeps it listed for 330 s; docs/running.md).
Needs: qbittorrent-nox (Debian; written against 4.5.2), Debian's /usr/bin/python3 (stdlib only).
"""

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

DONE_STATES = {"uploading", "stalledUP", "queuedUP", "forcedUP", "pausedUP", "checkingUP"}
FAILED_STATES = {"error", "missingFiles"}


def log(msg):
    print(f"qbittorrent_stream: {msg}", flush=True)


class Stop(Exception):
    """SIGTERM or SIGINT arrived."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def on_signal(signum, _frame):
    raise Stop(signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebApi:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}/api/v2/"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, path, fields=None, files=None, timeout=10):
        """GET without fields, else POST (form, or multipart when files are given)."""
        data, headers = None, {}
        if files:
            boundary = uuid.uuid4().hex
            parts = []
            for k, v in (fields or {}).items():
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"'
                             f'\r\n\r\n{v}\r\n'.encode())
            for k, (name, blob) in files.items():
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; '
                             f'filename="{name}"\r\nContent-Type: application/x-bittorrent'
                             f'\r\n\r\n'.encode() + blob + b"\r\n")
            data = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif fields is not None:
            data = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        with self.opener.open(req, timeout=timeout) as r:
            return r.read().decode()

    def json(self, path, **query):
        return json.loads(self.call(path + ("?" + urllib.parse.urlencode(query) if query else "")))


def end(proc, api, grace=20.0):
    """Shut qBittorrent down (Web API, then SIGTERM, then SIGKILL) and reap it."""
    if proc.poll() is not None:
        return
    if api is not None:
        try:
            api.call("app/shutdown", {}, timeout=5)
        except Exception as e:  # already going, or the Web UI is not up
            log(f"app/shutdown: {e}")
    for sig, wait in ((None, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if sig is not None:
            log(f"qBittorrent still running: sending {sig.name}")
            proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


def main():
    saveas = os.environ["TESTBED_SAVEAS"]
    torrent = os.environ["TESTBED_TORRENT"]
    up = int(float(os.environ.get("TESTBED_MAX_UPLOAD_RATE", "0")) * 1024)  # 0: no limit
    folder = os.path.dirname(os.path.abspath(saveas))
    profile = os.path.join(folder, ".qbittorrent")
    conf_dir = os.path.join(profile, "qBittorrent", "config")
    os.makedirs(conf_dir, exist_ok=True)
    port = free_port()
    conf = os.path.join(conf_dir, "qBittorrent.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write("[LegalNotice]\nAccepted=true\n\n"
                    f"[Preferences]\nWebUI\\Address=127.0.0.1\nWebUI\\Port={port}\n")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proc, api = None, None
    try:
        proc = subprocess.Popen(
            ["qbittorrent-nox", f"--profile={profile}", f"--webui-port={port}"],
            stdin=subprocess.DEVNULL)
        log(f"qbittorrent-nox pid {proc.pid}, profile {profile}, Web UI 127.0.0.1:{port}")
        api = WebApi(port)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log(f"qbittorrent-nox exited early ({proc.returncode})")
                return 1
            try:
                if api.call("auth/login", {"username": "admin", "password": "adminadmin"},
                            timeout=5).strip() == "Ok.":
                    break
                log("login refused")
                return 1
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    log("Web UI never answered")
                    return 1
                time.sleep(0.2)
        log(f"qBittorrent {api.call('app/version')}, Web API {api.call('app/webapiVersion')}")
        api.call("transfer/setUploadLimit", {"limit": up})
        with open(torrent, "rb") as f:
            blob = f.read()
        answer = api.call("torrents/add", {
            "savepath": folder,
            "sequentialDownload": "true",
            "firstLastPiecePrio": "true",
        }, files={"torrents": (os.path.basename(torrent), blob)})
        if answer.strip() != "Ok.":
            log(f"torrents/add: {answer}")
            return 1
        log(f"added {torrent} to {folder}, upload limit {api.json('transfer/uploadLimit')} B/s")
        t0, last, shown = time.monotonic(), -10.0, False
        while True:
            if proc.poll() is not None:
                log(f"qbittorrent-nox exited before the download was complete ({proc.returncode})")
                return 1
            try:
                info = api.json("torrents/info")
            except OSError as e:  # a slow answer: try again (a dead qBittorrent ends above)
                log(f"torrents/info: {e}")
                info = None
            if info:
                t = info[0]
                now = time.monotonic()
                if not shown and t.get("state") not in ("checkingResumeData", "metaDL"):
                    shown = True
                    log(f"torrent {t['hash']} {t['name']}: seq_dl={t.get('seq_dl')} "
                        f"f_l_piece_prio={t.get('f_l_piece_prio')} save_path={t['save_path']}")
                if now - last >= 5:
                    last = now
                    try:
                        tr = api.json("torrents/trackers", hash=t["hash"])
                    except OSError:
                        tr = []
                    trackers = [f"{x['url']} status={x['status']} peers={x.get('num_peers')}"
                                f"{' ' + x['msg'] if x.get('msg') else ''}"
                                for x in tr if not x["url"].startswith("** [")]
                    log(f"{now - t0:6.1f}s {t['state']} {t['progress'] * 100:5.1f}% "
                        f"down {t['dlspeed'] / 1024:.0f} KB/s up {t['upspeed'] / 1024:.0f} KB/s "
                        f"uploaded {t['uploaded']} B seeds {t['num_seeds']} "
                        f"leeches {t['num_leechs']} tracker {'; '.join(trackers)}")
                if t["state"] in FAILED_STATES:
                    log(f"torrent failed: {t['state']}")
                    return 1
                if t["progress"] >= 1 and t["state"] in DONE_STATES:
                    log(f"complete after {now - t0:.1f}s ({t['state']}), uploaded "
                        f"{t['uploaded']} B; shutting qBittorrent down")
                    end(proc, api)
                    size = os.path.getsize(saveas) if os.path.exists(saveas) else -1
                    if size != t["total_size"]:
                        log(f"{saveas}: {size} bytes, expected {t['total_size']}")
                        return 1
                    return 0
            time.sleep(0.5)
    except Stop as s:
        log(f"signal {signal.Signals(s.signum).name}: ending qBittorrent")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if proc is not None:
            end(proc, None, grace=0)
        return 128 + s.signum
    finally:
        if proc is not None and proc.poll() is None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            end(proc, api)


if __name__ == "__main__":
    sys.exit(main())
