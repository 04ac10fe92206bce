#!/usr/bin/env python3
# Multi-process TCP servers of the three common models, for exact attribution tests. Every worker
# counts the payload it received itself, and the client ports of the connections it served, and
# reports them as one JSON line: {"pid", "received", "conns", "ports"}.
#
#   mpserver.py prefork PORT N      N workers accept() on one listener made before fork (nginx, gunicorn)
#   mpserver.py reuseport PORT N    N workers, each its own SO_REUSEPORT listener (envoy, nginx reuseport)
#   mpserver.py forkaccept PORT     the parent accepts and forks a child per connection (postgres, sshd)
#   mpserver.py client HOST PORT SIZE[,SIZE...] [PARALLEL]
#                                   one connection per size: send SIZE bytes, shut down, read to EOF;
#                                   reports {"done", "sent", "durations_ms"}
#
# prefork/reuseport workers print their line on SIGUSR1 (sent to the parent, which passes it on);
# forkaccept children print theirs as they exit. MP_HOLD_MS=N: a worker keeps each connection N ms
# after reading it (a response being prepared) before it answers and closes. The parent prints {"ready", "pid", "workers"} once
# every worker listens. Each connection gets back the 8-byte count of what the worker received.
import json
import os
import signal
import socket
import struct
import sys
import threading
import time


def emit(obj):
    # One write per line: lines from several processes on one pipe do not interleave.
    os.write(1, (json.dumps(obj) + "\n").encode())


HOLD_S = float(os.environ.get("MP_HOLD_MS", "0")) / 1000


def serve_one(conn, counted=None):
    n = 0
    while True:
        b = conn.recv(65536)
        if not b:
            break
        n += len(b)
    port = conn.getpeername()[1]
    # Counted before the answer: once the client has its answer, a report includes this one.
    if counted:
        counted(n, port)
    if HOLD_S:
        time.sleep(HOLD_S)  # a response being prepared: the socket stays open that long
    conn.sendall(struct.pack("!Q", n))
    conn.close()
    return n, port


def worker_loop(lst, ready_w):
    stats = {"received": 0, "conns": 0, "ports": []}

    def report(_sig, _frm):
        emit({"pid": os.getpid(), **stats})

    signal.signal(signal.SIGUSR1, report)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    os.write(ready_w, b"x")
    def counted(n, port):
        stats["received"] += n
        stats["conns"] += 1
        stats["ports"].append(port)

    while True:
        conn, _ = lst.accept()
        serve_one(conn, counted)


def listener(port, reuse):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    return s


def workers(model, port, n):
    ready_r, ready_w = os.pipe()
    shared = listener(port, False) if model == "prefork" else None
    kids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            lst = shared if shared is not None else listener(port, True)
            worker_loop(lst, ready_w)
            os._exit(0)
        kids.append(pid)
    os.close(ready_w)
    got = 0
    while got < n:
        got += len(os.read(ready_r, n - got))

    def forward(sig, _frm):
        for k in kids:
            try:
                os.kill(k, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTERM:
            os._exit(0)

    signal.signal(signal.SIGUSR1, forward)
    signal.signal(signal.SIGTERM, forward)
    emit({"ready": True, "pid": os.getpid(), "workers": kids})
    while True:
        signal.pause()


def forkaccept(port):
    lst = listener(port, False)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    emit({"ready": True, "pid": os.getpid(), "workers": []})
    while True:
        conn, _ = lst.accept()
        pid = os.fork()
        if pid == 0:
            lst.close()
            n, p = serve_one(conn)
            emit({"pid": os.getpid(), "received": n, "conns": 1, "ports": [p]})
            os._exit(0)
        conn.close()


def client(host, port, sizes, parallel):
    durations = [0.0] * len(sizes)
    sent = [0]
    lock = threading.Lock()
    todo = list(enumerate(sizes))

    def run():
        while True:
            with lock:
                if not todo:
                    return
                i, size = todo.pop(0)
            t0 = time.monotonic()
            s = socket.create_connection((host, port))
            buf = b"x" * min(size, 65536)
            left = size
            while left > 0:
                k = s.send(buf[: min(left, len(buf))])
                left -= k
            s.shutdown(socket.SHUT_WR)
            back = b""
            while True:
                b = s.recv(64)
                if not b:
                    break
                back += b
            s.close()
            durations[i] = (time.monotonic() - t0) * 1000
            if struct.unpack("!Q", back)[0] != size:
                raise SystemExit("server counted %r, sent %d" % (back, size))
            with lock:
                sent[0] += size

    ts = [threading.Thread(target=run) for _ in range(parallel)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    emit({"done": True, "pid": os.getpid(), "sent": sent[0], "durations_ms": [round(d, 2) for d in durations]})


def main():
    mode = sys.argv[1]
    if mode in ("prefork", "reuseport"):
        workers(mode, int(sys.argv[2]), int(sys.argv[3]))
    elif mode == "forkaccept":
        forkaccept(int(sys.argv[2]))
    elif mode == "client":
        client(sys.argv[2], int(sys.argv[3]), [int(x) for x in sys.argv[4].split(",")], int(sys.argv[5]) if len(sys.argv) > 5 else 1)
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
