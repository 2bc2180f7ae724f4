"""MongoReadStore's bulk writes: an insert of a document already stored is "already written"
(a replayed batch), every other write error still fails the batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError
from qis_adapters.readstore.mongodb import _DUPLICATE_KEY, _bulk_write

OPS: list[Any] = [InsertOne({"_id": "a"}), UpdateOne({"_id": "a"}, {"$set": {"x": 1}})]


class Refusing:
    """A collection whose every bulk write reports `details`, as PyMongo raises them, and that
    holds documents of the _ids `held`."""

    def __init__(
        self,
        write_errors: list[dict[str, Any]],
        concern_errors: int = 0,
        held: tuple[str, ...] = ("a",),
    ) -> None:
        self.details = {
            "writeErrors": write_errors,
            "writeConcernErrors": [{"code": 64, "errmsg": "timeout"}] * concern_errors,
        }
        self.held = held
        self.sent: list[Any] = []

    async def bulk_write(self, ops: list[Any], ordered: bool) -> None:
        assert not ordered  # the other writes of the batch are done whatever one reports
        self.sent = ops
        raise BulkWriteError(self.details)

    async def find(self, query: dict[str, Any], projection: dict[str, int]) -> AsyncIterator[Any]:
        for key in query["_id"]["$in"]:
            if key in self.held:
                yield {"_id": key}


def error(index: int, code: int) -> dict[str, Any]:
    # PyMongo's write errors name the operation's document ("op")
    op = {"_id": "a"} if index == 0 else {"q": {"_id": "a"}, "u": {"$set": {"x": 1}}}
    message = "E11000" if code == _DUPLICATE_KEY else "no"
    return {"index": index, "code": code, "errmsg": message, "op": op}


async def test_an_insert_of_a_stored_document_is_no_error() -> None:
    collection = Refusing([error(0, _DUPLICATE_KEY)])
    await _bulk_write(collection, OPS)  # type: ignore[arg-type]
    assert collection.sent == OPS


async def test_a_duplicate_of_another_unique_key_is_an_error() -> None:
    # 11000 from the natural-key index: no document holds the insert's _id
    with pytest.raises(BulkWriteError):
        await _bulk_write(Refusing([error(0, _DUPLICATE_KEY)], held=()), OPS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("write_errors", "concern_errors"),
    [
        ([error(1, _DUPLICATE_KEY)], 0),  # from an update: a key of two documents
        ([error(0, 2)], 0),  # an insert refused for another reason
        ([error(0, _DUPLICATE_KEY), error(1, 2)], 0),
        ([error(0, _DUPLICATE_KEY)], 1),
    ],
)
async def test_any_other_write_error_fails_the_write(
    write_errors: list[dict[str, Any]], concern_errors: int
) -> None:
    with pytest.raises(BulkWriteError):
        await _bulk_write(Refusing(write_errors, concern_errors), OPS)  # type: ignore[arg-type]


async def test_nothing_to_write_sends_nothing() -> None:
    collection = Refusing([])
    await _bulk_write(collection, [])  # type: ignore[arg-type]
    assert collection.sent == []
