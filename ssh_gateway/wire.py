"""The gateway's SSH connections tuned for relaying: batched writes, sliced reads, quiet logs."""

from __future__ import annotations

import asyncio

from asyncssh.logging import logger as asyncssh_logger

# what asyncssh is handed of one read at a time (see sliced_reads)
READ_SLICE = 64 * 1024


class BatchingTransport:
    """Stands in for an asyncssh connection's transport and gathers what it writes in one turn
    of the event loop into a single socket write.

    asyncssh writes every SSH packet on its own, and sends an empty MSG_IGNORE before each
    one, so a relayed 32 KiB data packet costs two socket writes. The gateway relays whole
    reads of many packets at a time: batched, a 256 KiB read of the client becomes one write
    to the instance instead of sixteen. Order is kept; what is gathered is written before the
    transport is aborted or closed.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []

    def write(self, data: bytes):
        if not self._chunks:
            self._loop.call_soon(self.flush)
        self._chunks.append(data)

    def flush(self):
        chunks, self._chunks = self._chunks, []
        if not chunks or self._transport.is_closing():
            return
        self._transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def abort(self):
        self.flush()  # asyncssh aborts right after its last packet (a disconnect, say)
        self._transport.abort()

    def close(self):
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name, default=None):
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _no_packet_log(*args, **kwargs):
    """asyncssh formats a log line for every packet before it checks the debug level."""


def quiet_packet_logs(obj) -> None:
    """Skip asyncssh's per-packet log formatting on a connection or channel (it is only
    written at asyncssh's debug level 3, see asyncssh.set_debug_level)."""
    if asyncssh_logger._debug_level < 3:
        obj.log_sent_packet = obj.log_received_packet = _no_packet_log


def sliced_reads(conn, transport) -> None:
    """Hand asyncssh a large read in slices of READ_SLICE bytes.

    asyncssh appends a read to its input buffer, and cuts each packet off the front by
    copying the rest: a 256 KiB read of 32 KiB packets is copied about eight times over. In
    slices, the buffer holds at most a slice and a packet, and the copying stays near one.
    """
    receive = conn.data_received

    def data_received(data, datatype=None):
        if len(data) <= READ_SLICE:
            receive(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), READ_SLICE):
            receive(bytes(view[start : start + READ_SLICE]))

    conn.data_received = data_received
    transport.set_protocol(conn)  # uvloop keeps the protocol's bound method: set it again


def tune(conn) -> None:
    """Tune an asyncssh connection for relaying; call from its owner's connection_made.

    asyncssh keeps its transport in `_transport` and calls only write(), abort() and
    get_extra_info() on it; a connection without one (already closed) is left as it is.
    """
    transport = getattr(conn, "_transport", None)
    if transport is None or isinstance(transport, BatchingTransport):
        return
    quiet_packet_logs(conn)
    sliced_reads(conn, transport)
    conn._transport = BatchingTransport(transport, asyncio.get_running_loop())
