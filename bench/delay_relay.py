"""A relay on 127.0.0.1 that passes TCP connections on to another port on 127.0.0.1, each chunk in either
direction ``delay`` milliseconds late (in order): a mail server behind a link with a round trip of twice that.

Run: ``python bench/delay_relay.py LISTEN_PORT TARGET_PORT DELAY_MS``; it prints ``ready`` once it listens and
relays until it is terminated. ``bench/send_rate.py --delay MS`` starts it in front of ``smtp-sink``.
"""

from __future__ import annotations

import asyncio
import sys

HOST = "127.0.0.1"


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Each chunk from ``reader`` written to ``writer`` ``delay`` seconds after it came; the end as well."""
    loop = asyncio.get_running_loop()
    while data := await reader.read(1 << 16):
        loop.call_later(delay, writer.write, data)  # equal delays keep the order
    loop.call_later(delay, close, writer)


def close(writer: asyncio.StreamWriter) -> None:
    if writer.can_write_eof():
        writer.write_eof()
    else:
        writer.close()


async def main(listen: int, target: int, delay: float) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(HOST, target)
        await asyncio.gather(
            pump(client_reader, server_writer, delay), pump(server_reader, client_writer, delay), return_exceptions=True
        )

    server = await asyncio.start_server(relay, HOST, listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000))
