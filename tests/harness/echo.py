"""TCP and UDP echo for tests, run inside a namespace (standard library only, bounded everywhere).

    python3 echo.py serve PORT [PORT...]       TCP and UDP echo servers on every port, until killed
    python3 echo.py probe tcp|udp IP PORT [SRC_PORT PAYLOAD]
                                               one exchange: exit 0 when the echo came back within 2 s
                                               (from SRC_PORT, with PAYLOAD, when given)
    python3 echo.py stream IP PORT SECONDS     one TCP connection, a line every 0.1 s for at most SECONDS;
                                               prints "ok N" per echoed line and "cut" when one is lost
"""

from __future__ import annotations

import socket
import sys
import threading
import time

TIMEOUT = 2.0


def serve(ports):
    for port in ports:
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("0.0.0.0", port))
        tcp.listen(16)
        threading.Thread(target=_accept, args=(tcp,), daemon=True).start()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", port))
        threading.Thread(target=_udp, args=(udp,), daemon=True).start()
    print("serving", ports, flush=True)
    while True:
        time.sleep(3600)


def _accept(listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn):
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                return
            conn.sendall(data)


def _udp(sock):
    while True:
        data, peer = sock.recvfrom(4096)
        sock.sendto(data, peer)


def probe(proto, ip, port, src_port=0, payload=b"hello") -> bool:
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", src_port))
            s.settimeout(TIMEOUT)
            s.sendto(payload, (ip, port))
            try:
                return s.recvfrom(4096)[0] == payload
            except OSError:
                return False
    try:
        with socket.create_connection((ip, port), timeout=TIMEOUT, source_address=("0.0.0.0", src_port)) as s:
            s.sendall(payload)
            return s.recv(4096) == payload
    except OSError:
        return False


def stream(ip, port, seconds):
    deadline = time.monotonic() + seconds
    with socket.create_connection((ip, port), timeout=TIMEOUT) as s:
        s.settimeout(1.0)
        n = 0
        while time.monotonic() < deadline:
            line = f"line {n}\n".encode()
            try:
                s.sendall(line)
                got = b""
                while len(got) < len(line):
                    chunk = s.recv(len(line) - len(got))
                    if not chunk:
                        raise OSError("closed")
                    got += chunk
            except OSError:
                print("cut", flush=True)
                return
            print(f"ok {n}", flush=True)
            n += 1
            time.sleep(0.1)
    print("done", flush=True)


def main(argv):
    if argv[0] == "serve":
        serve([int(p) for p in argv[1:]])
    elif argv[0] == "probe":
        extra = (int(argv[4]), argv[5].encode()) if len(argv) > 5 else ()
        return 0 if probe(argv[1], argv[2], int(argv[3]), *extra) else 1
    elif argv[0] == "stream":
        stream(argv[1], int(argv[2]), float(argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
