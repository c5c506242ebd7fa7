"""One TLS client check against a Redis endpoint, printing the outcome for the Rust test
to assert on. Usage: tls_client.py MODE PORT CA [PASSWORD]
MODE: ping (redis-py ssl=True: PING, SET/GET), tls12 (a client that offers TLS 1.2 at most),
plain (plaintext PING to the TLS port)."""
import socket
import ssl
import sys

import redis

mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
password = sys.argv[4] if len(sys.argv) > 4 else None

if mode == "ping":
    r = redis.Redis(host="127.0.0.1", port=port, password=password, ssl=True, ssl_ca_certs=ca)
    try:
        print("pong" if r.ping() else "no pong")
    except redis.exceptions.ConnectionError as e:
        print(f"refused: {e}")
elif mode == "tls12":
    ctx = ssl.create_default_context(cafile=ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                print(f"handshake {t.version()}")
    except ssl.SSLError as e:
        print(f"refused: {e}")
elif mode == "plain":
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PING\r\n")
        try:
            got = s.recv(64)
        except (ConnectionResetError, socket.timeout):
            got = b""
        print("pong" if got.startswith(b"+PONG") else f"no pong {got!r}")
