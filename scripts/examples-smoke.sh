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
