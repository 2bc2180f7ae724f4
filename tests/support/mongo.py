"""What tests do to a MongoDB wire-protocol server (FerretDB, or a real MongoDB) besides through
the read store: drop the database a test made."""

from __future__ import annotations

from pymongo import AsyncMongoClient


async def drop_database(uri: str, name: str) -> None:
    """Drops database `name` of the server at `uri`, with a client of its own."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    try:
        await client.drop_database(name)
    finally:
        await client.close()
