#!/usr/bin/env bash
# Runs the examples against each other on loopback and checks what they print.
# Usage: scripts/examples-smoke.sh [target-dir-profile]   (default: debug)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-debug}"
bin="target/$profile/examples"
# The `tls` feature builds the wss examples too.
if [ "$profile" = release ]; then cargo build --release --examples --features tls; else cargo build --examples --features tls; fi
pids=()
tmp=$(mktemp -d)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2; return 1
}

# WebSocket echo server, one thread and two threads, with the WebSocket client.
for threads in 1 2; do
    port=$(free_port)
    "$bin/websocket_server_async" 127.0.0.1 "$port" "$threads" & pids+=($!)
    wait_port "$port"
    for text in "Hello, world!" "second message"; do
        got=$("$bin/websocket_client_async" 127.0.0.1 "$port" "$text")
        [ "$got" = "$text" ] || { echo "websocket echo ($threads threads): got '$got'" >&2; exit 1; }
    done
    echo "websocket_server_async ($threads threads) + websocket_client_async: ok"
done

# A message sent in parts and read in parts; keep-alive pings and the control callback.
port=$(free_port)
"$bin/websocket_server_async" 127.0.0.1 "$port" 1 2>/dev/null & pids+=($!)
wait_port "$port"
out=$("$bin/websocket_client_fragmented" 127.0.0.1 "$port" "Hello, fragmented world")
echo "$out" | grep -q "sent part 2" || { echo "websocket_client_fragmented: $out" >&2; exit 1; }
joined=$(echo "$out" | sed -n 's/^part of [0-9]* bytes: "\(.*\)" (message done: .*)$/\1/p' | tr -d '\n')
[ "$joined" = "Hello, fragmented world" ] || { echo "websocket_client_fragmented: got '$joined'" >&2; exit 1; }
echo "$out" | tail -1 | grep -q "message done: true" || { echo "websocket_client_fragmented: $out" >&2; exit 1; }
echo "websocket_client_fragmented: ok"
out=$("$bin/websocket_ping_timeout" 127.0.0.1 "$port" 2)
[ "$(echo "$out" | grep -c '^pong received')" -eq 2 ] || { echo "websocket_ping_timeout: $out" >&2; exit 1; }
echo "$out" | grep -q '^closed: Ok(())' || { echo "websocket_ping_timeout: $out" >&2; exit 1; }
echo "websocket_ping_timeout: ok"

# The fast echo server (permessage-deflate on, as Autobahn runs it): port 0 on one thread
# (the address it prints), then a fixed port on two threads.
log=$(mktemp)
"$bin/websocket_server_fast" 127.0.0.1 0 1 >"$log" & pids+=($!)
port=""
for _ in $(seq 100); do
    port=$(sed -n 's|^websocket_server_fast listening on ws://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$log")
    [ -n "$port" ] && break
    sleep 0.1
done
rm -f "$log"
[ -n "$port" ] || { echo "websocket_server_fast did not print its address" >&2; exit 1; }
got=$("$bin/websocket_client_async" 127.0.0.1 "$port" "fast echo")
[ "$got" = "fast echo" ] || { echo "websocket_server_fast (1 thread): got '$got'" >&2; exit 1; }
# A client offering permessage-deflate: the server accepts, and echoes compressed.
python3 - "$port" <<'PY'
import base64, os, socket, struct, sys, zlib
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head.lower(), head
text = b"compressed echo " * 64
c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
payload = (c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
mask = os.urandom(4)
masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
size = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
s.sendall(bytes([0xC1]) + size + mask + masked)
def recv(n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out
b0, b1 = recv(2)
n = b1 & 0x7F
n = struct.unpack("!H", recv(2))[0] if n == 126 else struct.unpack("!Q", recv(8))[0] if n == 127 else n
assert b0 == 0xC1, "expected a compressed final text frame, got %#x" % b0
got = zlib.decompressobj(-15).decompress(recv(n) + b"\x00\x00\xff\xff")
assert got == text, got
s.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))
b0, b1 = recv(2)
assert b0 == 0x88 and recv(b1 & 0x7F) == b"\x03\xe8", "expected the close reply"
assert s.recv(1) == b"", "expected the end of the stream"
PY
port=$(free_port)
"$bin/websocket_server_fast" 127.0.0.1 "$port" 2 >/dev/null & pids+=($!)
wait_port "$port"
for text in "fast one" "fast two"; do
    got=$("$bin/websocket_client_async" 127.0.0.1 "$port" "$text")
    [ "$got" = "$text" ] || { echo "websocket_server_fast (2 threads): got '$got'" >&2; exit 1; }
done
echo "websocket_server_fast (1 and 2 threads) + websocket_client_async: ok"

# The benchmark echo server, plain and with permessage-deflate.
for flag in "" "--deflate"; do
    port=$(free_port)
    "$bin/websocket_server_bench" --port "$port" $flag & pids+=($!)
    wait_port "$port"
    got=$("$bin/websocket_client_async" 127.0.0.1 "$port" "bench echo")
    [ "$got" = "bench echo" ] || { echo "websocket_server_bench $flag: got '$got'" >&2; exit 1; }
    echo "websocket_server_bench $flag + websocket_client_async: ok"
done

# The chat server: the page over HTTP, and a message broadcast back to its sender.
port=$(free_port)
"$bin/websocket_chat_server" 127.0.0.1 "$port" 2 & pids+=($!)
wait_port "$port"
got=$("$bin/websocket_client_async" 127.0.0.1 "$port" "hello room")
[ "$got" = "hello room" ] || { echo "websocket_chat_server: got '$got'" >&2; exit 1; }
python3 - "$port" <<'PY'
import sys, urllib.request
r = urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=10)
page = r.read()
assert r.status == 200 and b"new WebSocket" in page, "chat page"
PY
echo "websocket_chat_server: ok"

# TCP echo server with a plain socket client.
port=$(free_port)
"$bin/tcp_echo_server" 127.0.0.1 "$port" >/dev/null & pids+=($!)
wait_port "$port"
python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
data = bytes(range(256)) * 4096
s.sendall(data)
got = b""
while len(got) < len(data):
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
assert got == data, "tcp echo mismatch"
PY
echo "tcp_echo_server: ok"

# The reactor's loopback benchmark, briefly: it checks every echo and fails on a bad one.
"$bin/tcp_echo_bench" --connections 4 --count 200 >/dev/null
echo "tcp_echo_bench: ok"

# wss: a throwaway certificate for localhost, the SSL echo server on one and two threads,
# and the SSL client trusting that certificate.
"$bin/tls_test_certificate" "$tmp/cert.pem" "$tmp/key.pem" localhost
for threads in 1 2; do
    port=$(free_port)
    "$bin/websocket_server_async_ssl" 127.0.0.1 "$port" "$threads" "$tmp/cert.pem" "$tmp/key.pem" 2>/dev/null & pids+=($!)
    wait_port "$port"
    for text in "Hello, TLS!" "second message"; do
        got=$("$bin/websocket_client_async_ssl" localhost "$port" "$text" "$tmp/cert.pem")
        [ "$got" = "$text" ] || { echo "wss echo ($threads threads): got '$got'" >&2; exit 1; }
    done
    # A client that does not trust the certificate fails its TLS handshake.
    if "$bin/websocket_client_async_ssl" localhost "$port" "x" 2>/dev/null; then
        echo "wss: a client without the CA connected" >&2; exit 1
    fi
    echo "websocket_server_async_ssl ($threads threads) + websocket_client_async_ssl: ok"
done

# The benchmark pair over wss and ws: every echo is checked by the client.
for tls in "" "--tls"; do
    port=$(free_port)
    if [ -n "$tls" ]; then
        "$bin/websocket_server_bench" --port "$port" --tls "$tmp/cert.pem" "$tmp/key.pem" & pids+=($!)
        wait_port "$port"
        "$bin/websocket_client_bench" --port "$port" --seconds 1 --tls "$tmp/cert.pem" >/dev/null
    else
        "$bin/websocket_server_bench" --port "$port" & pids+=($!)
        wait_port "$port"
        "$bin/websocket_client_bench" --port "$port" --seconds 1 >/dev/null
    fi
    echo "websocket_server_bench $tls + websocket_client_bench: ok"
done

# wss against Python's ssl (OpenSSL) and the websockets package, both ways.
python3 scripts/tls_interop.py "$bin" "$tmp/cert.pem" "$tmp/key.pem"
