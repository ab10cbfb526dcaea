"""The shared SMTP client's pure parts: reply parsing and dot-stuffing."""
from __future__ import annotations

import asyncio

import pytest

from lab.protocols.smtpclient import Reply, dot_stuff, read_reply


@pytest.mark.parametrize("message, sent", [
    (b"Subject: test\r\n\r\nhello\r\n.leading dot\r\n",
     b"Subject: test\r\n\r\nhello\r\n..leading dot\r\n.\r\n"),
    (b"a\nb", b"a\r\nb\r\n.\r\n"),
])
def test_dot_stuff(message: bytes, sent: bytes) -> None:
    assert dot_stuff(message) == sent


def test_read_reply_joins_multiline_and_rejects_junk() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"250-mx.example.net\r\n250-SIZE 100\r\n250 HELP\r\n")
        assert await read_reply(reader) == Reply(250, "mx.example.net SIZE 100 HELP")
        reader.feed_data(b"garbage\r\n")
        with pytest.raises(ConnectionError):
            await read_reply(reader)

    asyncio.run(main())
