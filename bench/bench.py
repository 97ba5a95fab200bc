#!/usr/bin/env python3
"""Side-by-side benchmark of botilyx-media, nginx, Caddy and Rust peers.

bench/run.sh installs the tools and calls this script; run that, not this.
Every server is started here, on 127.0.0.1 only, against the same files in
one data folder, and driven by wrk. Every load run is bounded in time (wrk's
-d plus a hard subprocess timeout), and every server is stopped by the pid
this script started.

Phases, for each server:
  reads    fresh start -> idle VmHWM -> correctness checks -> scenario 1
           -> VmHWM during scenario 1 -> scenarios 2, 3, 4 -> stop
  uploads  fresh start on an empty folder -> upload check -> scenario 5 -> stop
  memory   fresh start on an empty folder -> 20 MB uploads -> VmHWM -> stop
A fresh start per phase resets the kernel's VmHWM, so each peak belongs to
its phase.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
FIXTURES = REPO_DIR.parent / "shared" / "fixtures" / "images"
SMALL = "astronaut-small.jpg"
PHOTO = "phone-photo-gps.jpg"
OTHER_FILES = 10_000
MIB = 1024 * 1024
# With pinning on, the server (and the raw writers it is compared with) get SERVER_CPU, wrk WRK_CPU.
SERVER_CPU = 0
WRK_CPU = 1


class BenchError(Exception):
    """A server or tool did not behave; the run stops with this message."""


# --------------------------------------------------------------------------
# Settings


@dataclass
class Settings:
    smoke: bool
    reps: int
    duration: int  # seconds per read repetition
    upload_duration: int  # seconds per upload repetition (issue: 10 s)
    memory_duration: int  # seconds of 20 MB uploads for the memory phase
    memory_conns: int  # concurrent 20 MB uploads (issue: 64)
    read_conns: int  # issue: 64
    upload_conns: int  # issue: 16
    pin: bool  # server (and the raw writers) on SERVER_CPU, wrk on WRK_CPU
    boost: bool  # everything started here at nice -15, ahead of other work on the machine
    work: Path
    data: Path
    out: Path
    servers: list[str]
    bins: dict[str, str] = field(default_factory=dict)

    @property
    def wrk_threads(self) -> int:
        return 1 if self.pin else 2

    def wrap(self, argv: list[str], cpus: str) -> list[str]:
        """Pins a command to `cpus` when pinning is on."""
        if self.pin:
            argv = ["taskset", "-c", cpus] + argv
        return argv


def parse_args() -> Settings:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="seconds-long run, checks only answers")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--upload-duration", type=int, default=10)
    p.add_argument("--memory-duration", type=int, default=10)
    p.add_argument("--no-pin", action="store_true", help="do not pin server and wrk to CPUs")
    p.add_argument("--no-boost", action="store_true",
                   help="do not run server and wrk at nice -15 (the default as root)")
    p.add_argument("--work", required=True, type=Path, help="scratch folder (wiped)")
    p.add_argument("--data", required=True, type=Path, help="read-only data folder (made once)")
    p.add_argument("--out", required=True, type=Path, help="Markdown report file")
    p.add_argument("--servers", default="botilyx-media,nginx,caddy,dufs,static-web-server")
    p.add_argument("--bin", action="append", default=[], metavar="NAME=PATH")
    a = p.parse_args()

    bins = dict(item.split("=", 1) for item in a.bin)
    pin = not a.no_pin and (os.cpu_count() or 1) >= 2
    boost = not a.no_boost and os.geteuid() == 0
    if a.smoke:
        return Settings(True, 1, 1, 1, 1, 4, 16, 4, pin, boost, a.work, a.data, a.out,
                        a.servers.split(","), bins)
    if a.reps < 3:
        raise SystemExit("--reps must be at least 3 for a full run (median with min and max)")
    return Settings(False, a.reps, a.duration, a.upload_duration, a.memory_duration, 64, 64, 16,
                    pin, boost, a.work, a.data, a.out, a.servers.split(","), bins)


# --------------------------------------------------------------------------
# Data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_data(data: Path) -> Path:
    """One data folder that every read phase serves.

    medications/ holds the two fixtures; treatment-images/ holds the small
    image among 10,000 other files (scenario 3). Made once and kept (the same
    seed gives the same files); no phase writes to it.
    """
    done = data / ".complete"
    if done.exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    for collection in ("medications", "treatment-images"):
        (data / collection).mkdir(parents=True)
    for name in (SMALL, PHOTO):
        shutil.copyfile(FIXTURES / name, data / "medications" / name)
    shutil.copyfile(FIXTURES / SMALL, data / "treatment-images" / SMALL)

    rng = random.Random(4)
    crowded = data / "treatment-images"
    for i in range(OTHER_FILES):
        (crowded / f"{i:05d}-{rng.getrandbits(64):016x}.jpg").write_bytes(
            b"\xff\xd8\xff\xe0" + rng.randbytes(1020))
    done.touch()
    return data


def make_big_upload(work: Path) -> Path:
    """A 20 MB JPEG: the phone photo padded with bytes after its end marker."""
    path = work / "upload-20mb.jpg"
    photo = (FIXTURES / PHOTO).read_bytes()
    path.write_bytes(photo + bytes(20 * 1000 * 1000 - len(photo)))
    return path


# --------------------------------------------------------------------------
# Servers


@dataclass
class ServerKind:
    name: str
    upload: str | None  # "multipart", "put" or None
    health_path: str | None  # readiness probe; None = probe the small image


def server_argv(kind: str, s: Settings, data: Path, port: int, run_dir: Path,
                upload: bool) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_")}
    addr = f"127.0.0.1:{port}"
    if kind == "botilyx-media":
        return [s.bins["botilyx-media"], "--bind", addr, "--data-dir", str(data)], env
    if kind == "nginx":
        conf = run_dir / "nginx.conf"
        conf.write_text(nginx_conf(s, data, port, run_dir))
        return [s.bins.get("nginx", "nginx"), "-p", str(run_dir), "-c", str(conf),
                "-e", str(run_dir / "error.log")], env
    if kind == "caddy":
        caddyfile = run_dir / "Caddyfile"
        caddyfile.write_text(
            "{\n\tadmin off\n\tauto_https off\n}\n"
            f"http://{addr} {{\n\troot * {data}\n\tfile_server\n}}\n")
        env["XDG_DATA_HOME"] = str(run_dir)
        env["XDG_CONFIG_HOME"] = str(run_dir)
        return [s.bins.get("caddy", "caddy"), "run", "--config", str(caddyfile),
                "--adapter", "caddyfile"], env
    if kind == "dufs":
        argv = [s.bins["dufs"], str(data), "--bind", "127.0.0.1", "--port", str(port)]
        return argv + (["--allow-upload"] if upload else []), env
    if kind == "static-web-server":
        return [s.bins["static-web-server"], "--host", "127.0.0.1", "--port", str(port),
                "--root", str(data), "--log-level", "error"], env
    raise BenchError(f"unknown server {kind!r}")


def nginx_conf(s: Settings, data: Path, port: int, run_dir: Path) -> str:
    workers = 1 if s.pin else os.cpu_count()
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {workers};
daemon off;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=20000 inactive=60s;
    open_file_cache_valid 30s;
    open_file_cache_errors on;
    keepalive_requests 1000000;
    client_body_temp_path {run_dir}/body;
    proxy_temp_path {run_dir}/proxy;
    fastcgi_temp_path {run_dir}/fastcgi;
    uwsgi_temp_path {run_dir}/uwsgi;
    scgi_temp_path {run_dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {data};
        location = /healthz {{ return 200 "ok"; }}
    }}
}}
"""


KINDS = {
    "botilyx-media": ServerKind("botilyx-media", "multipart", "/healthz"),
    "nginx": ServerKind("nginx", None, None),
    "caddy": ServerKind("caddy", None, None),
    "dufs": ServerKind("dufs", "put", None),
    "static-web-server": ServerKind("static-web-server", None, None),
}


class Running:
    """One server process started by this script, stopped by its pid."""

    def __init__(self, kind: str, s: Settings, data: Path, run_dir: Path, upload: bool):
        self.kind = kind
        self.port = free_port()
        run_dir.mkdir(parents=True, exist_ok=True)
        argv, env = server_argv(kind, s, data, self.port, run_dir, upload)
        argv = s.wrap(argv, str(SERVER_CPU))
        self.log_path = run_dir / "server.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        probe = KINDS[self.kind].health_path or f"/medications/{SMALL}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.kind} exited with {self.proc.returncode} before it was "
                                 f"ready; log:\n{self.tail_log()}")
            try:
                status, _, _ = request(self.port, "GET", probe, timeout=2)
                if status < 500:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.kind} not ready after {timeout}s; log:\n{self.tail_log()}")

    def tail_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def pids(self) -> list[int]:
        """The server and its children (nginx workers)."""
        ours = [self.proc.pid]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                ours.append(int(entry.name))
        return ours

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU time used so far by the server's processes (all threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        user = system = 0
        for pid in self.pids():
            try:
                fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            user += int(fields[11])  # utime, field 14 of stat(5), counted after the comm field
            system += int(fields[12])  # stime
        return user / tick, system / tick

    def memory_kib(self, field_name: str = "VmHWM") -> int:
        """Sum of a /proc status field over the server's processes, in KiB."""
        total = 0
        for pid in self.pids():
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
            if m:
                total += int(m.group(1))
        return total

    def stop(self) -> None:
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
        if time.monotonic() - started > 1:
            log(f"  {self.kind} took {time.monotonic() - started:.1f}s to stop")


# --------------------------------------------------------------------------
# HTTP checks (correctness, never speed)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise BenchError(what)


def check_reads(srv: Running, data: Path) -> str | None:
    """Every read scenario's URL answers with the right bytes; returns the ETag."""
    for path in (f"/medications/{SMALL}", f"/medications/{PHOTO}", f"/treatment-images/{SMALL}"):
        want = (data / path.lstrip("/")).read_bytes()
        status, _, body = request(srv.port, "GET", path)
        expect(status == 200 and body == want,
               f"{srv.kind}: GET {path} gave {status} with {len(body)} bytes, "
               f"want 200 with {len(want)}")

    status, headers, _ = request(srv.port, "GET", f"/medications/{SMALL}")
    etag = headers.get("etag")
    if etag is None:
        return None
    status, _, body = request(srv.port, "GET", f"/medications/{SMALL}",
                              headers={"If-None-Match": etag})
    expect(status == 304 and not body,
           f"{srv.kind}: If-None-Match {etag} gave {status}, want 304 with no body")
    return etag


def check_upload(srv: Running, upload_dir: Path) -> None:
    """One upload is stored and can be read back."""
    photo = (FIXTURES / PHOTO).read_bytes()
    if KINDS[srv.kind].upload == "put":
        status, _, body = request(srv.port, "PUT", "/medications/check.jpg", body=photo)
        expect(status in (200, 201), f"{srv.kind}: PUT gave {status}: {body[:200]!r}")
        expect((upload_dir / "medications" / "check.jpg").read_bytes() == photo,
               f"{srv.kind}: PUT stored different bytes")
        return

    boundary = "bench" + uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + photo + \
        f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = request(srv.port, "POST", "/medications", body=body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    expect(status == 201, f"{srv.kind}: POST gave {status}: {answer[:300]!r}")
    try:
        name = json.loads(answer)["files"][0]["name"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise BenchError(f"{srv.kind}: upload answer has no files[0].name: {answer[:300]!r}") from e
    status, _, stored = request(srv.port, "GET", f"/medications/{name}")
    expect(status == 200 and stored[:3] == b"\xff\xd8\xff",
           f"{srv.kind}: reading back upload {name!r} gave {status}, {len(stored)} bytes")


# --------------------------------------------------------------------------
# Load


def run_wrk(s: Settings, port: int, path: str, script: str, conns: int, duration: int,
            env_extra: dict[str, str] | None = None, timeout_s: int = 10) -> dict:
    argv = ["wrk", f"-t{min(s.wrk_threads, conns)}", f"-c{conns}", f"-d{duration}s",
            f"--timeout={timeout_s}s", "-s", str(LUA_DIR / script),
            f"http://127.0.0.1:{port}{path}"]
    argv = s.wrap(argv, str(WRK_CPU))
    env = dict(os.environ, BENCH_LUA_DIR=str(LUA_DIR), **(env_extra or {}))
    out = subprocess.run(argv, env=env, capture_output=True, text=True,
                         timeout=duration + timeout_s + 60)
    m = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout[-1000:]} {out.stderr[-1000:]}")
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    r["errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + \
        r["err_timeout"]
    r["ok"] = r["requests"] - r["err_status"]
    r["rps"] = r["requests"] / secs
    r["mbps"] = r["bytes"] / secs / 1e6
    return r


def raw_fsync_rate(folder: Path, src: Path, writers: int, duration: int,
                   cpus: set[int] | None) -> dict:
    """The disk's ceiling for the upload pattern.

    `writers` threads each create a new file, write the 1 MB photo in one call, fsync and close
    it, for `duration` seconds: what `dd if=<photo> of=<new file> bs=1M conv=fsync` does, without
    a process start per file (which on 2 busy cores costs more than the write). With `cpus`, every
    writer runs only there, as the server does when pinned: the reference is then the disk under
    the server's CPU budget, not the disk plus a second core.
    """
    folder.mkdir(parents=True, exist_ok=True)
    payload = src.read_bytes()
    counts = [0] * writers
    deadline = time.monotonic() + duration

    def writer(i: int) -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)  # on Linux, 0 is the calling thread only
        while time.monotonic() < deadline:
            fd = os.open(folder / f"raw-{i}-{counts[i]}.jpg", os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         0o640)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            counts[i] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - start
    shutil.rmtree(folder)
    files = sum(counts)
    return {"rps": files / secs, "mbps": files * len(payload) / secs / 1e6}


def sequential_dd(folder: Path, mib: int) -> float:
    """One stream of `dd bs=1M count=N conv=fsync`: the disk's streaming MB/s."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={folder}/seq.bin", "bs=1M", f"count={mib}",
                    "conv=fsync", "status=none"], check=True, timeout=300)
    secs = time.monotonic() - start
    shutil.rmtree(folder)
    return mib * MIB / secs / 1e6


# --------------------------------------------------------------------------
# Phases


class Results:
    """Collects (server, scenario) -> list of wrk results, plus memory."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], list[dict]] = {}
        self.memory: dict[tuple[str, str], int] = {}
        self.notes: list[str] = []

    def add(self, server: str, scenario: str, r: dict) -> None:
        self.runs.setdefault((server, scenario), []).append(r)


def repeat(s: Settings, res: Results, server: str, scenario: str, fn,
           srv: "Running | None" = None) -> None:
    """Runs `fn` (one wrk run) s.reps times; with `srv`, also the server's CPU time per request."""
    for _ in range(s.reps):
        before = srv.cpu_seconds() if srv else None
        r = fn()
        if srv and before and r["requests"]:
            after = srv.cpu_seconds()
            r["cpu_user_us"] = (after[0] - before[0]) / r["requests"] * 1e6
            r["cpu_sys_us"] = (after[1] - before[1]) / r["requests"] * 1e6
            r["cpu_us"] = r["cpu_user_us"] + r["cpu_sys_us"]
        if s.smoke:
            expect(r["requests"] > 0 and r["errors"] == 0,
                   f"{server} {scenario}: {r['requests']} requests, {r['errors']} errors")
        res.add(server, scenario, r)
        log(f"  {server:18} {scenario:6} {r['rps']:10.0f} req/s {r['mbps']:8.1f} MB/s "
            f"p99 {r.get('p99_us', 0) / 1000:7.2f} ms  errors {r['errors']}")


def read_phase(s: Settings, res: Results, kind: str, data: Path) -> None:
    srv = Running(kind, s, data, s.work / "run" / kind / "reads", upload=False)
    try:
        res.memory[(kind, "idle")] = srv.memory_kib()
        etag = check_reads(srv, data)
        small, photo = f"/medications/{SMALL}", f"/medications/{PHOTO}"
        conns, d = s.read_conns, s.duration

        if not s.smoke:
            run_wrk(s, srv.port, small, "get.lua", conns, 1)  # warm-up, not recorded
        repeat(s, res, kind, "s1", lambda: run_wrk(s, srv.port, small, "get.lua", conns, d), srv)
        res.memory[(kind, "s1")] = srv.memory_kib()
        repeat(s, res, kind, "s2", lambda: run_wrk(s, srv.port, photo, "get.lua", conns, d), srv)
        crowded = f"/treatment-images/{SMALL}"
        repeat(s, res, kind, "s3", lambda: run_wrk(s, srv.port, crowded, "get.lua", conns, d), srv)
        if etag is None:
            res.notes.append(f"{kind} sends no ETag: scenario 4 does not apply.")
        else:
            repeat(s, res, kind, "s4", lambda: run_wrk(s, srv.port, small, "revalidate.lua",
                                                       conns, d, {"BENCH_ETAG": etag}), srv)
    finally:
        srv.stop()


def upload_env(kind: str, src: Path) -> tuple[str, dict[str, str]]:
    script = "upload_put.lua" if KINDS[kind].upload == "put" else "upload_multipart.lua"
    return script, {"BENCH_UPLOAD_FILE": str(src), "BENCH_UPLOAD_PATH": "/medications",
                    "BENCH_TAG": uuid.uuid4().hex[:8]}


def fresh_upload_dir(s: Settings, kind: str, phase: str) -> Path:
    folder = s.work / "uploads" / kind / phase
    shutil.rmtree(folder, ignore_errors=True)
    for collection in ("medications", "treatment-images"):
        (folder / collection).mkdir(parents=True)
    shutil.copyfile(FIXTURES / SMALL, folder / "medications" / SMALL)  # readiness probe
    return folder


def upload_phase(s: Settings, res: Results, kind: str) -> None:
    photo = FIXTURES / PHOTO
    for _ in range(s.reps):
        # A fresh folder per repetition keeps every rep on an empty directory.
        folder = fresh_upload_dir(s, kind, "s5")
        srv = Running(kind, s, folder, s.work / "run" / kind / "s5", upload=True)
        try:
            check_upload(srv, folder)
            script, env = upload_env(kind, photo)
            r = run_wrk(s, srv.port, "/medications", script, s.upload_conns, s.upload_duration,
                        env, timeout_s=30)
            r["mbps"] = r["ok"] * photo.stat().st_size / (r["duration_us"] / 1e6) / 1e6
            r["rps"] = r["ok"] / (r["duration_us"] / 1e6)
        finally:
            srv.stop()
            shutil.rmtree(folder, ignore_errors=True)
        if s.smoke:
            expect(r["ok"] > 0 and r["errors"] == 0,
                   f"{kind} s5: {r['ok']} uploads stored, {r['errors']} errors")
        res.add(kind, "s5", r)
        log(f"  {kind:18} s5     {r['rps']:10.1f} up/s  {r['mbps']:8.1f} MB/s errors {r['errors']}")


def memory_phase(s: Settings, res: Results, kind: str, big: Path) -> None:
    folder = fresh_upload_dir(s, kind, "s6")
    srv = Running(kind, s, folder, s.work / "run" / kind / "s6", upload=True)
    try:
        script, env = upload_env(kind, big)
        r = run_wrk(s, srv.port, "/medications", script, s.memory_conns, s.memory_duration, env,
                    timeout_s=120)
        res.memory[(kind, "uploads")] = srv.memory_kib()
        res.add(kind, "s6", r)
        if s.smoke:
            expect(r["errors"] == 0, f"{kind} 20 MB uploads: {r['errors']} errors")
        log(f"  {kind:18} s6     {r['ok']} x 20 MB stored, errors {r['errors']}, "
            f"VmHWM {res.memory[(kind, 'uploads')] / 1024:.1f} MiB")
    finally:
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)


STARTED = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Report


def machine(work: Path) -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    fs = subprocess.run(["df", "--output=source,fstype", str(work)], capture_output=True, text=True)
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "os": platform.platform(terse=True), "fs": " ".join(fs.stdout.split()[2:4])}


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def med(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt_n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


class Report:
    def __init__(self, s: Settings, res: Results, raw: dict | None, raw_any_core: dict | None,
                 seq: float | None, meta: dict):
        """`raw` is the reference (pinned like the server when pinning is on); `raw_any_core` the
        same writers on every core, shown beside it (None when nothing is pinned)."""
        self.s, self.res, self.raw, self.seq, self.meta = s, res, raw, seq, meta
        self.raw_any_core = raw_any_core
        self.targets: list[tuple[str, str, bool | None]] = []

    def stat(self, server: str, scenario: str, key: str) -> tuple[float, float, float] | None:
        runs = self.res.runs.get((server, scenario))
        return med([r[key] for r in runs]) if runs else None

    def ratio(self, server: str, scenario: str, key: str) -> float | None:
        a, b = self.stat(server, scenario, key), self.stat("nginx", scenario, key)
        return a[0] / b[0] if a and b and b[0] else None

    def read_table(self, scenario: str, title: str, mb: bool) -> list[str]:
        out = [f"### {title}", ""]
        if mb:
            out += ["| server | MB/s median | min – max | × nginx | req/s median | errors |",
                    "|---|---:|---:|---:|---:|---:|"]
        else:
            out += ["| server | req/s median | min – max | × nginx | p50 ms | p99 ms median |"
                    " p99 min – max | p99 × nginx | errors |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for server in self.s.servers:
            errors = sum(r["errors"] for r in self.res.runs.get((server, scenario), []))
            if mb:
                st, rps = self.stat(server, scenario, "mbps"), self.stat(server, scenario, "rps")
                if not st:
                    out.append(f"| {server} | n/a | | | | |")
                    continue
                out.append(f"| {server} | {fmt_n(st[0])} | {fmt_n(st[1])} – {fmt_n(st[2])} | "
                           f"{fmt_ratio(self.ratio(server, scenario, 'mbps'))} | "
                           f"{fmt_n(rps[0])} | {errors} |")
                continue
            st = self.stat(server, scenario, "rps")
            if not st:
                out.append(f"| {server} | n/a | | | | | | | |")
                continue
            p50, p99 = self.stat(server, scenario, "p50_us"), self.stat(server, scenario, "p99_us")
            out.append(f"| {server} | {fmt_n(st[0])} | {fmt_n(st[1])} – {fmt_n(st[2])} | "
                       f"{fmt_ratio(self.ratio(server, scenario, 'rps'))} | "
                       f"{p50[0] / 1000:.2f} | {p99[0] / 1000:.2f} | "
                       f"{p99[1] / 1000:.2f} – {p99[2] / 1000:.2f} | "
                       f"{fmt_ratio(self.ratio(server, scenario, 'p99_us'))} | {errors} |")
        return out + [""]

    def upload_table(self) -> list[str]:
        out = ["### 5. Uploads: 1 MB photo, "
               f"{self.s.upload_conns} concurrent clients, {self.s.upload_duration} s", "",
               "| writer | uploads/s median | min – max | MB/s median | × raw fsync rate | errors |",
               "|---|---:|---:|---:|---:|---:|"]
        raw, any_core = self.raw, self.raw_any_core
        writers = f"raw write + fsync per file, {self.s.upload_conns} writers"
        if raw:
            where = f" on CPU {SERVER_CPU} only (reference)" if any_core else ""
            out.append(f"| {writers}{where} | "
                       f"{fmt_n(raw['rps'][0])} | {fmt_n(raw['rps'][1])} – {fmt_n(raw['rps'][2])}"
                       f" | {fmt_n(raw['mbps'][0])} | 1.00× | 0 |")
        if raw and any_core:
            r = any_core["mbps"][0] / raw["mbps"][0]
            out.append(f"| {writers} on any core | {fmt_n(any_core['rps'][0])} | "
                       f"{fmt_n(any_core['rps'][1])} – {fmt_n(any_core['rps'][2])} | "
                       f"{fmt_n(any_core['mbps'][0])} | {fmt_ratio(r)} | 0 |")
        for server in self.s.servers:
            st = self.stat(server, "s5", "rps")
            if not st:
                continue
            mbps = self.stat(server, "s5", "mbps")
            errors = sum(r["errors"] for r in self.res.runs[(server, "s5")])
            how = "multipart POST" if KINDS[server].upload == "multipart" else "PUT"
            r = mbps[0] / raw["mbps"][0] if raw else None
            out.append(f"| {server} ({how}) | {fmt_n(st[0])} | {fmt_n(st[1])} – {fmt_n(st[2])} |"
                       f" {fmt_n(mbps[0])} | {fmt_ratio(r)} | {errors} |")
        skipped = [x for x in self.s.servers if not KINDS[x].upload]
        if any_core:
            reference = (f"The reference (1.00×) runs every writer on CPU {SERVER_CPU} only, the "
                         "core the server is pinned to, so it is the disk under the server's CPU "
                         "budget; the row below it lets the same writers use every core (wrk is "
                         "idle then). The two alternate, one of each per repetition.")
        else:
            reference = "The reference (1.00×) is these writers; nothing is pinned."
        out += ["", "Raw: each writer thread creates a new file, writes the photo in one call, "
                "fsyncs and closes it (`dd bs=1M conv=fsync` without a process start per file). "
                f"{reference} botilyx-media also fsyncs the folder after its renames; uploads "
                "that commit together share that fsync.",
                "", f"Not measured (they store no uploads): {', '.join(skipped)}."]
        if self.seq:
            out.append(f"One sequential stream, `dd if=/dev/zero bs=1M count=256 conv=fsync`: "
                       f"{fmt_n(self.seq)} MB/s.")
        return out + [""]

    def memory_table(self) -> list[str]:
        out = ["### 6. Memory: peak RSS (VmHWM, MiB)", "",
               "| server | idle | during scenario 1 | "
               f"during {self.s.memory_conns} concurrent 20 MB uploads |",
               "|---|---:|---:|---:|"]
        for server in self.s.servers:
            cells = []
            for phase in ("idle", "s1", "uploads"):
                kib = self.res.memory.get((server, phase))
                cells.append("n/a" if kib is None else f"{kib / 1024:.1f}")
            out.append(f"| {server} | " + " | ".join(cells) + " |")
        return out + ["", "nginx's figure is the sum over its master and worker processes."
                      " Each phase starts the server afresh, so each peak is that phase's own.",
                      ""]

    def cpu_table(self) -> list[str]:
        """Where each server's time goes: CPU time per request, from /proc/<pid>/stat."""
        scenarios = [("s1", "small image"), ("s2", "1 MB photo"), ("s3", "10,000 files"),
                     ("s4", "304")]
        out = ["### CPU time per request (µs, user + system, median repetition)", "",
               "| server | " + " | ".join(name for _, name in scenarios) + " |",
               "|---|" + "---:|" * len(scenarios)]
        for server in self.s.servers:
            cells = []
            for scenario, _ in scenarios:
                runs = self.res.runs.get((server, scenario)) or []
                runs = [r for r in runs if "cpu_us" in r]
                if not runs:
                    cells.append("n/a")
                    continue
                r = sorted(runs, key=lambda r: r["cpu_us"])[len(runs) // 2]
                cells.append(f"{r['cpu_us']:.1f} ({r['cpu_user_us']:.1f} + {r['cpu_sys_us']:.1f})")
            out.append(f"| {server} | " + " | ".join(cells) + " |")
        return out + ["", "From the server's own user and system time (`/proc/<pid>/stat`, all "
                      "threads and processes) over each repetition, divided by the requests "
                      "answered. On loopback, system time includes the TCP work of the client's "
                      "side of each packet the server sends.", ""]

    def evaluate(self) -> list[str]:
        b = "botilyx-media"
        t: list[tuple[str, str, bool | None]] = []

        def check(label: str, value: float | None, ok, shown: str) -> None:
            t.append((label, "n/a" if value is None else shown,
                      None if value is None else ok(value)))

        for sc, name in (("s1", "1"), ("s3", "3"), ("s4", "4")):
            r = self.ratio(b, sc, "rps")
            check(f"Scenario {name}: req/s ≥ 1.0× nginx", r, lambda v: v >= 1.0, fmt_ratio(r))
            r = self.ratio(b, sc, "p99_us")
            check(f"Scenario {name}: p99 ≤ 1.2× nginx", r, lambda v: v <= 1.2, fmt_ratio(r))
        r = self.ratio(b, "s2", "mbps")
        check("Scenario 2: MB/s ≥ 0.9× nginx", r, lambda v: v >= 0.9, fmt_ratio(r))

        up = self.stat(b, "s5", "mbps")
        r = up[0] / self.raw["mbps"][0] if up and self.raw else None
        on = f" (raw on CPU {SERVER_CPU} only)" if self.raw_any_core else ""
        check(f"Scenario 5: ≥ 0.8× raw write-and-fsync rate{on}", r, lambda v: v >= 0.8,
              fmt_ratio(r))
        peers = [p for p in self.s.servers if p != b and self.stat(p, "s5", "mbps")]
        if up and peers:
            best = max(self.stat(p, "s5", "mbps")[0] for p in peers)
            t.append(("Scenario 5: ahead of every peer that uploads",
                      f"{fmt_n(up[0])} vs best peer {fmt_n(best)} MB/s", up[0] > best))
        idle = self.res.memory.get((b, "idle"))
        check("Scenario 6: idle RSS < 20 MiB", idle, lambda v: v < 20 * 1024,
              f"{(idle or 0) / 1024:.1f} MiB")
        peak = self.res.memory.get((b, "uploads"))
        check(f"Scenario 6: peak RSS < 96 MiB under {self.s.memory_conns}×20 MB uploads", peak,
              lambda v: v < 96 * 1024, f"{(peak or 0) / 1024:.1f} MiB")
        self.targets = t
        out = ["### Targets (issue 4)", "", "| target | botilyx-media | met |", "|---|---:|---|"]
        for label, shown, ok in t:
            out.append(f"| {label} | {shown} | {'n/a' if ok is None else 'yes' if ok else '**no**'} |")
        return out + [""]

    def render(self) -> str:
        s, m = self.s, self.meta
        mode = "smoke (numbers mean nothing)" if s.smoke else "full"
        pin = (f"each server and the reference raw writers pinned to CPU {SERVER_CPU} "
               f"(`taskset -c {SERVER_CPU}`), wrk pinned to CPU {WRK_CPU} with one thread"
               if s.pin else f"nothing pinned; wrk with {s.wrk_threads} threads shares the cores")
        if s.boost:
            pin += "; servers, wrk and the raw writers at nice -15, so other work on the machine takes little from them"
        lines = [
            f"Run: {m['date']}, {mode}; commit `{m['commit']}`.",
            "",
            f"- Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, {m['os']}; "
            f"data on {m['fs']}. Load average (1 min): {m['load']} the run.",
            f"- Load: {m['wrk']}, {pin}. {s.read_conns} connections for reads; "
            f"{s.reps} repetitions of {s.duration} s each (median, min – max), "
            + ("" if s.smoke else "after a 1 s warm-up per server."),
            f"- Servers: {', '.join(f'{k} ({v})' for k, v in m['versions'].items())}.",
            "- One data folder for every read: `medications/` with the two fixtures, "
            f"`treatment-images/` with `{SMALL}` among {OTHER_FILES:,} other files. "
            "Uploads go to a fresh empty folder on the same disk for each repetition.",
            "",
            *self.read_table("s1", f"1. Small image ({SMALL}, 18 KB), {s.read_conns} connections",
                             False),
            *self.read_table("s2", f"2. Phone photo ({PHOTO}, 1 MB), {s.read_conns} connections",
                             True),
            *self.read_table("s3", f"3. Small image among {OTHER_FILES:,} other files", False),
            *self.read_table("s4", "4. If-None-Match revalidation (304)", False),
            *self.upload_table(),
            *self.memory_table(),
            *self.cpu_table(),
            *self.evaluate(),
        ]
        if self.res.notes:
            lines += ["Notes:", ""] + [f"- {n}" for n in self.res.notes] + [""]
        return "\n".join(lines)


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_report(out: Path, body: str) -> None:
    """Replaces the generated part of `out`, keeping the hand-written text around it."""
    block = f"{BEGIN}\n{body}\n{END}"
    if out.exists() and BEGIN in (text := out.read_text()) and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        out.write_text(head + block + tail)
    else:
        out.write_text("# Benchmarks\n\n" + block + "\n")


# --------------------------------------------------------------------------


def main() -> int:
    s = parse_args()
    if s.boost:
        # Inherited by every server, wrk and the raw writers started from here.
        os.setpriority(os.PRIO_PROCESS, 0, -15)
    shutil.rmtree(s.work, ignore_errors=True)
    s.work.mkdir(parents=True)
    res = Results()
    load_before = Path("/proc/loadavg").read_text().split()[0]

    log(f"data in {s.data}, scratch in {s.work}")
    data = prepare_data(s.data)
    big = make_big_upload(s.work)

    try:
        for kind in s.servers:
            log(f"{kind}: reads")
            read_phase(s, res, kind, data)

        # Pinned like the server when pinning is on; the figure on every core alternates with
        # it, so a change in the machine's load falls on both alike.
        log("raw write-and-fsync rate" + (f", on CPU {SERVER_CPU} and on any core" if s.pin
                                          else ""))
        pinned, any_core = [], []
        for _ in range(s.reps):
            pinned.append(raw_fsync_rate(s.work / "raw", FIXTURES / PHOTO, s.upload_conns,
                                         s.upload_duration, {SERVER_CPU} if s.pin else None))
            if s.pin:
                any_core.append(raw_fsync_rate(s.work / "raw", FIXTURES / PHOTO, s.upload_conns,
                                               s.upload_duration, None))
        raw = {k: med([r[k] for r in pinned]) for k in ("rps", "mbps")}
        raw_any_core = {k: med([r[k] for r in any_core]) for k in ("rps", "mbps")} \
            if any_core else None
        log(f"  raw {raw['rps'][0]:.0f} files/s" + (
            f", on any core {raw_any_core['rps'][0]:.0f} files/s" if raw_any_core else ""))
        seq = sequential_dd(s.work / "seq", 16 if s.smoke else 256)

        for kind in (k for k in s.servers if KINDS[k].upload):
            log(f"{kind}: uploads")
            upload_phase(s, res, kind)
            memory_phase(s, res, kind, big)
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1

    commit = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "uncommitted"
    meta = machine(s.work) | {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "load": f"{load_before} before, {Path('/proc/loadavg').read_text().split()[0]} after",
        "wrk": version(["wrk", "--version"]).split(" Copyright")[0],
        "versions": {k: server_version(k, s) for k in s.servers},
    }
    body = Report(s, res, raw, raw_any_core, seq, meta).render()
    print(body)
    write_report(s.out, body)
    log(f"report written to {s.out}")
    shutil.rmtree(s.work, ignore_errors=True)
    return 0


def server_version(kind: str, s: Settings) -> str:
    if kind == "nginx":
        return version(["nginx", "-v"]).replace("nginx version: ", "")
    if kind == "caddy":
        return version(["caddy", "version"]).split()[0]
    if kind == "botilyx-media":
        return "release build, default configuration"
    # static-web-server prints "Version:   2.44.1"; dufs prints "dufs 0.47.0".
    return " ".join(version([s.bins[kind], "--version"]).split()).replace("Version: ", "")


if __name__ == "__main__":
    sys.exit(main())
