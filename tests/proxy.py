"""A TCP proxy that adds latency to every request and counts the bytes flowing back (for S3 over HTTP).

    with LatencyProxy(("127.0.0.1", 9000), latency=0.03) as proxy:
        endpoint = proxy.url        # http://127.0.0.1:<port>, forwarding to the S3 server
        ...
        proxy.bytes_down, proxy.requests

Each chunk the client sends that starts an HTTP request (a method name, after the previous response) waits
``latency`` seconds before it is forwarded, so every request costs one round trip of ``latency`` on top of
the server's own time, as to a remote object store. Runs its own asyncio loop in a thread.
"""

from __future__ import annotations

import asyncio
import threading

METHODS = (b"GET ", b"PUT ", b"HEAD", b"POST", b"DELE")


class LatencyProxy:
    def __init__(self, target: tuple[str, int], latency: float = 0.03):
        self.target, self.latency = target, latency
        self.bytes_down = self.bytes_up = self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.bytes_down = self.bytes_up = self.requests = 0

    def __enter__(self) -> LatencyProxy:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.thread.join(5)

    async def _shutdown(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.loop.call_soon(self.loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _client(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pump(client_reader, server_writer, upstream=True),
                             self._pump(server_reader, client_writer, upstream=False), return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        """Forward one direction, counting bytes; requests (client to server) wait ``latency`` first."""
        try:
            while data := await reader.read(1 << 16):
                if upstream:
                    if data[:4] in METHODS:
                        self.requests += 1
                        await asyncio.sleep(self.latency)
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def main() -> None:
    """Run standalone (a process of its own, as in the benchmarks): print the port, then keep the counters
    in ``--counters`` (JSON), rewritten every 0.2 s."""
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port of the S3 server")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds added to every request")
    parser.add_argument("--counters", help="write {bytes_down, bytes_up, requests} here")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    with LatencyProxy((host, int(port)), args.latency) as proxy:
        print(proxy.port, flush=True)
        while True:
            if args.counters:
                with open(args.counters + ".tmp", "w") as handle:
                    json.dump({"bytes_down": proxy.bytes_down, "bytes_up": proxy.bytes_up,
                               "requests": proxy.requests}, handle)
                __import__("os").replace(args.counters + ".tmp", args.counters)
            time.sleep(0.2)


if __name__ == "__main__":
    main()
