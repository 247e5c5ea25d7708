#!/usr/bin/env python3
"""wss interoperability with a TLS and WebSocket stack we did not write: Python's `ssl`
module (OpenSSL) and the `websockets` package.

Usage: tls_interop.py <examples-dir> <cert.pem> <key.pem>

1. Our server (websocket_server_async_ssl) against a `websockets` client: text and binary
   messages of several sizes, echoed back intact, then a clean close (code 1000).
2. A `websockets` server against our client (websocket_client_async_ssl): the echo is
   printed and the client exits 0 only if its closing handshake and TLS shutdown succeed.
"""
import asyncio
import os
import socket
import ssl
import subprocess
import sys

import websockets

bin_dir, cert, key = sys.argv[1:4]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_port(port):
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


async def our_server_their_client():
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(bin_dir, "websocket_server_async_ssl"), "127.0.0.1", str(port), "1", cert, key],
        # The port probe's bare TCP connection is reported as a failed TLS handshake.
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_port(port)
        ctx = ssl.create_default_context(cafile=cert)
        async with websockets.connect(
            f"wss://localhost:{port}/", ssl=ctx, max_size=None, compression=None
        ) as ws:
            messages = ["", "hello over wss", "x" * 70000]
            messages += [bytes(range(256)) * n for n in (1, 64, 4096)]
            for m in messages:
                await ws.send(m)
                got = await ws.recv()
                assert got == m, f"echo of {len(m)} {type(m).__name__} differs"
            await ws.close()
            assert ws.close_code == 1000, ws.close_code
        print("tls interop: our server + python websockets client: ok")
    finally:
        server.kill()
        server.wait()


async def their_server_our_client():
    port = free_port()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", port, ssl=ctx):
        proc = await asyncio.create_subprocess_exec(
            os.path.join(bin_dir, "websocket_client_async_ssl"),
            "localhost",
            str(port),
            "hello from rbeast",
            cert,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"client failed: {err.decode()}"
        assert out.decode().strip() == "hello from rbeast", out
    print("tls interop: python websockets server + our client: ok")


async def main():
    await asyncio.wait_for(our_server_their_client(), 120)
    await asyncio.wait_for(their_server_our_client(), 120)


asyncio.run(main())
