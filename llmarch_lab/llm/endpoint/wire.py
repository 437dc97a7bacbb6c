"""Streaming chat over a plain socket, timed by the kernel: the load generator's client="wire".

aiohttp (client.py) times a chunk when its event loop gets round to reading it, so on a busy
CPU a chunk that arrived on time is recorded late, and its clock starts before the request is
built and queued for writing. Here the clock starts as the request's bytes are written, and
every read is recvmsg() on a socket with SO_TIMESTAMPNS set, whose ancillary data carries the
time the kernel received the bytes: the client's own load (other streams' chunks, a GC pass,
being descheduled) does not enter the measured times, as long as a stream is read before its
next chunk arrives (TCP merges segments that wait in the receive queue into one, with the
newest one's timestamp).

Why not a library: no Python HTTP client hands over recvmsg's ancillary data (aiohttp's and
httpx's transports call recv()), so this module owns the socket. h11 (maintained, sans-IO,
installed with httpx) does the HTTP/1.1 framing and chunked decoding; the SSE lines go through
sse.Events, as aiohttp's do. Plain http:// only (no TLS): engines on the lab's own machine or
network. Kernel timestamps on Linux (x86-64, arm64); elsewhere a read is timed when the event
loop reads it, as aiohttp's are. One event loop; the sockets are read with loop.add_reader.
"""

from __future__ import annotations

import asyncio
import platform
import socket
import struct
import sys
import time
from urllib.parse import urlsplit

from llmarch_lab import LabError
from llmarch_lab.llm.endpoint.answers import Stream
from llmarch_lab.llm.endpoint.sse import Events

# SO_TIMESTAMPNS in asm-generic (x86-64, arm64); Python's socket module does not export it.
# Each recvmsg then carries a struct timespec (CLOCK_REALTIME) of the newest segment it read.
SO_TIMESTAMPNS = 35 if sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64") else None
ANCILLARY = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
IDLE_S = 4.0  # an idle kept-alive connection is dropped before servers drop theirs (client.py)
AFTER_DONE_S = 1.0  # after [DONE], how long the end of the HTTP message may take (else: close)


class Conn:
    """One kept-alive HTTP/1.1 connection and the exchange in progress on it."""

    def __init__(self, sock: socket.socket, stamped: bool):
        import h11

        self.sock, self.stamped = sock, stamped
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since, self.reused, self.answered = 0.0, False, False

    def close(self) -> None:
        self.sock.close()

    def request(self, target: str, headers: list, body: bytes) -> bytes:
        import h11

        head = h11.Request(method="POST", target=target, headers=[
            *headers, ("Content-Type", "application/json"), ("Accept", "text/event-stream"),
            ("Content-Length", str(len(body)))])
        return b"".join(self.http.send(e) for e in (head, h11.Data(data=body), h11.EndOfMessage()))

    async def exchange(self, request: bytes, st: Stream, parts: list) -> float:
        """Write the request (st.t0 = then), read the streamed answer into `st`; returns the time
        of `[DONE]` (or of the message's end). Raises OSError (ConnectionError before any answer
        or mid-answer), RuntimeError (an HTTP status other than 200, an engine's error event)."""
        loop = asyncio.get_running_loop()
        self.done, self.ended, self.end_at, self.answered, self.timer = loop.create_future(), False, None, False, None
        self.status, self.body, self.rest, self.events, self.st = 0, bytearray(), b"", Events(st, parts), st
        fd = self.sock.fileno()
        st.t0 = time.perf_counter()  # the request is written now (TTFT's start, as close to the server's as a client gets)
        await loop.sock_sendall(self.sock, request)
        loop.add_reader(fd, self.readable)
        try:
            return await self.done
        finally:
            loop.remove_reader(fd)
            if self.timer is not None:
                self.timer.cancel()

    def reusable(self) -> bool:
        import h11

        if not self.ended or self.http.our_state is not h11.DONE or self.http.their_state is not h11.DONE:
            return False
        self.http.start_next_cycle()
        return True

    def fail(self, e: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(e)

    def readable(self) -> None:
        """The event loop's callback: read what the socket holds, each read timed by the kernel."""
        while not self.done.done():
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                return self.fail(e)
            if not data:
                what = "mid-answer" if self.answered else "before answering"
                return self.fail(ConnectionResetError(f"the server closed the connection {what}"))
            try:
                self.http.receive_data(data)
                self.take(self.stamp(anc))
            except RuntimeError as e:  # an engine's error event
                return self.fail(e)
            except Exception as e:  # h11.RemoteProtocolError: not HTTP/1.1 as h11 reads it
                return self.fail(ConnectionError(f"unreadable HTTP answer: {type(e).__name__}: {e}"))

    def stamp(self, anc) -> float:
        """When the kernel received the newest bytes of this read, on perf_counter's clock (the
        read's own time where there is no timestamp); never before the request nor after now."""
        now = time.perf_counter()
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = struct.unpack_from("qq", data)
                # CLOCK_REALTIME -> CLOCK_MONOTONIC (perf_counter's clock on Linux): the offset now
                t = (sec * 1_000_000_000 + nsec - time.time_ns() + time.perf_counter_ns()) / 1e9
                return min(now, max(t, self.st.t0))
        return now

    def take(self, now: float) -> None:
        """The HTTP events that this read completed."""
        import h11

        while not self.done.done():
            ev = self.http.next_event()
            if ev is h11.NEED_DATA:
                return
            if isinstance(ev, h11.Response):
                self.answered, self.status = True, ev.status_code
            elif isinstance(ev, h11.Data):
                if self.status != 200:
                    self.body += ev.data
                    continue
                *lines, self.rest = (self.rest + ev.data).split(b"\n")
                for raw in lines:
                    if self.end_at is None and raw.startswith(b"data:") and self.events.line(raw, now):
                        self.end_at = now  # [DONE]: the answer is over; the message ends next
                        self.timer = asyncio.get_running_loop().call_later(AFTER_DONE_S, self.finish)
            elif isinstance(ev, h11.EndOfMessage):
                self.ended = True
                if self.status != 200:
                    text = self.body.decode(errors="replace")
                    raise RuntimeError(f"HTTP {self.status}: {text[:300]}")
                if self.end_at is None and self.rest.startswith(b"data:"):
                    self.events.line(self.rest, now)
                self.end_at = self.end_at if self.end_at is not None else now
                self.finish()
            elif isinstance(ev, h11.ConnectionClosed):
                return self.fail(ConnectionResetError("the server closed the connection mid-answer"))

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(self.end_at)


class Pool:
    """The socket client's kept-alive connections to one http:// server, for one event loop (an
    async context manager, in place of aiohttp's session)."""

    def __init__(self, base_url: str, connect_timeout_s: float = 10.0):
        u = urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise LabError(f"endpoint {base_url}: the socket client (client='wire') speaks plain http:// "
                           "only; use client='aiohttp' for https")
        self.host, self.port, self.netloc = u.hostname, u.port or 80, u.netloc
        self.connect_timeout_s = connect_timeout_s
        self.idle: list[Conn] = []

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()

    def get(self) -> Conn | None:
        """The most recently used idle connection that is still fresh, or None."""
        now = time.monotonic()
        while self.idle:
            c = self.idle.pop()
            if now - c.idle_since < IDLE_S:
                c.reused = True
                return c
            c.close()
        return None

    def put(self, c: Conn) -> None:
        c.idle_since = time.monotonic()
        self.idle.append(c)

    async def connect(self) -> Conn:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        err: OSError = ConnectionError(f"{self.netloc}: no address")
        for family, kind, proto, _, addr in infos:  # every address, as aiohttp tries them
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await loop.sock_connect(sock, addr)
            except (OSError, TimeoutError) as e:
                sock.close()
                err = e if isinstance(e, OSError) else ConnectionError(f"connect to {self.netloc} timed out")
                continue
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stamped = False
            if SO_TIMESTAMPNS is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    stamped = True
                except OSError:
                    pass
            return Conn(sock, stamped)
        raise err


async def stream(pool: Pool, target: str, headers: dict, body: bytes, st: Stream, parts: list) -> float:
    """One streamed request on a kept-alive connection of `pool` (a new one if none is idle);
    returns the end time. A connection that fails before any answer (stale, refused) is replaced
    once and the request sent again, as client.py does (st.reconnects)."""
    hdrs = [("Host", pool.netloc), *headers.items()]
    for attempt in (0, 1):
        conn = None
        try:
            conn = (None if attempt else pool.get()) or await pool.connect()
            end = await conn.exchange(conn.request(target, hdrs, body), st, parts)
        except OSError:
            if conn is not None:
                conn.close()
            if attempt or (conn is not None and conn.answered):
                raise
            st.reconnects += 1
            continue
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if conn.reusable():
            pool.put(conn)
        else:
            conn.close()
        return end
    raise AssertionError("unreachable")
