#!/usr/bin/env python3
"""A second, independent TURN client for portico's end-to-end tests: aioice (PyPI).

Usage: aioice_relay.py TRANSPORT HOST PORT USERNAME PASSWORD PEER_PORT [CA_FILE]

TRANSPORT is udp, tcp or tls (tls verifies the server against CA_FILE, host name
HOST). The peer is 127.0.0.1:PEER_PORT, a UDP echo socket the calling test runs.

With aioice's TURN client protocol, on one allocation:
1. Allocate (aioice answers the 401 challenge with the long-term credentials);
2. CreatePermission for the peer, then a Send indication to it; the echo must come
   back in a Data indication from the peer;
3. a channel (aioice's send_data: ChannelBind, then ChannelData); the echo must come
   back as ChannelData on that channel;
4. Refresh with LIFETIME 0 (aioice's delete).

Prints one JSON object (relayed and mapped addresses, what came back) and exits 0
when every step worked, 1 otherwise. Everything is bounded by timeouts.
"""

import asyncio
import json
import ssl
import sys

from aioice import stun, turn

STEP_TIMEOUT = 5.0


class Receiver(asyncio.DatagramProtocol):
    """What the allocation delivers (ChannelData payloads, via aioice)."""

    def __init__(self):
        self.queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.queue.put_nowait(("channel", bytes(data), tuple(addr)))

    def error_received(self, exc):
        self.queue.put_nowait(("error", repr(exc), None))


def capture_data_indications(cls):
    """A subclass of an aioice TURN protocol that also hands Data indications to the
    receiver (aioice itself only passes those from peers with a channel)."""

    class Capturing(cls):
        data_indications = None

        def _capture(self, data):
            if self.data_indications is None or turn.is_channel_data(data):
                return
            try:
                message = stun.parse_message(data)
            except ValueError:
                return
            if (
                message.message_method == stun.Method.DATA
                and message.message_class == stun.Class.INDICATION
            ):
                self.data_indications.put_nowait(
                    (
                        bytes(message.attributes.get("DATA", b"")),
                        tuple(message.attributes.get("XOR-PEER-ADDRESS", ("", 0))),
                    )
                )

        def datagram_received(self, data, addr):
            self._capture(data)
            super().datagram_received(data, addr)

    return Capturing


async def open_protocol(transport, host, port, username, password, ca_file):
    loop = asyncio.get_running_loop()
    kwargs = dict(
        username=username,
        password=password,
        lifetime=600,
        channel_refresh_time=500,
    )
    if transport == "udp":
        cls = capture_data_indications(turn.TurnClientUdpProtocol)
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls((host, port), **kwargs), remote_addr=(host, port)
        )
        return protocol
    cls = capture_data_indications(turn.TurnClientTcpProtocol)
    context = None
    if transport == "tls":
        context = ssl.create_default_context(cafile=ca_file)
    _, protocol = await loop.create_connection(
        lambda: cls((host, port), **kwargs),
        host=host,
        port=port,
        ssl=context,
        server_hostname=host if context else None,
    )
    return protocol


async def main():
    transport, host, port, username, password, peer_port = sys.argv[1:7]
    ca_file = sys.argv[7] if len(sys.argv) > 7 else None
    port, peer = int(port), ("127.0.0.1", int(peer_port))
    result = {"transport": transport}

    protocol = await asyncio.wait_for(
        open_protocol(transport, host, port, username, password, ca_file),
        STEP_TIMEOUT,
    )
    receiver = Receiver()
    protocol.data_indications = asyncio.Queue()

    relayed = await asyncio.wait_for(protocol.connect(), STEP_TIMEOUT)
    protocol.receiver = receiver
    result["relayed"] = list(relayed)
    result["mapped"] = list(protocol.mapped_address)

    # CreatePermission, then a Send indication; the echo comes back as a Data indication.
    request = stun.Message(
        message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
    )
    request.attributes["XOR-PEER-ADDRESS"] = peer
    await asyncio.wait_for(protocol.request_with_retry(request), STEP_TIMEOUT)
    result["permission"] = True

    payload = b"aioice send indication " + transport.encode()
    indication = stun.Message(
        message_method=stun.Method.SEND, message_class=stun.Class.INDICATION
    )
    indication.attributes["XOR-PEER-ADDRESS"] = peer
    indication.attributes["DATA"] = payload
    protocol.send_stun(indication, protocol.server)
    data, source = await asyncio.wait_for(protocol.data_indications.get(), STEP_TIMEOUT)
    result["data_indication"] = {"data": data.decode(), "peer": list(source)}
    send_ok = data == payload and source == peer

    # A channel: ChannelBind, then ChannelData; the echo comes back as ChannelData.
    payload2 = b"aioice channel data " + transport.encode()
    await asyncio.wait_for(protocol.send_data(payload2, peer), STEP_TIMEOUT)
    kind, data2, source2 = await asyncio.wait_for(receiver.queue.get(), STEP_TIMEOUT)
    result["channel_data"] = {
        "kind": kind,
        "data": data2 if isinstance(data2, str) else data2.decode(),
        "peer": list(source2) if source2 else None,
        "channel": protocol.peer_to_channel.get(peer),
    }
    channel_ok = kind == "channel" and data2 == payload2 and source2 == peer

    await asyncio.wait_for(protocol.delete(), STEP_TIMEOUT)
    result["deleted"] = True
    result["ok"] = bool(send_ok and channel_ok)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as exc:  # report what failed, as JSON, then fail
        print(json.dumps({"ok": False, "error": repr(exc)}))
        sys.exit(1)
