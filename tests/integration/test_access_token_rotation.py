"""Rotating the page token key through the real services (docs/security.md): the instances behind
one address take the new key as previous, then as current with the old one previous, then drop
the old one; at each step a token of one instance resumes its listing on the others, until the
old key is dropped everywhere. As tests/integration/test_access_tokens.py.
"""

from __future__ import annotations

import base64
from pathlib import Path

from pydantic import SecretStr
from qis.data.v1 import query_service_pb2 as q
from qis_query.application.paging import KEY_BYTES
from qis_query.settings import QuerySettings

from tests.integration.test_access_tokens import _violations
from tests.integration.test_authz_command_matrix import CALLERS
from tests.integration.test_authz_query_matrix import Cluster, cluster
from tests.support.servers import QueryPorts, query_ports

OLD, NEW = (SecretStr(base64.b64encode(bytes([n]) * KEY_BYTES).decode()) for n in (1, 2))


async def _first_page(ports: QueryPorts, at: int) -> str:
    """rita's token after the first audit entry of PX."""
    page = await ports.stub.ListAuditEntries(
        q.ListAuditEntriesRequest(parent="series/PX", page_size=1, min_position=at),
        metadata=CALLERS["reader"](),
    )
    assert page.next_page_token
    return str(page.next_page_token)


async def _resume(ports: QueryPorts, token: str, at: int) -> q.ListAuditEntriesResponse:
    return await ports.stub.ListAuditEntries(
        q.ListAuditEntriesRequest(
            parent="series/PX", page_size=1, page_token=token, min_position=at
        ),
        metadata=CALLERS["reader"](),
    )


def _instance(c: Cluster, key: SecretStr, previous: SecretStr | None) -> QuerySettings:
    return c.settings.model_copy(
        update={"query_page_token_key": key, "query_page_token_previous_keys": previous}
    )


async def test_a_token_resumes_across_the_instances_of_a_key_rotation(tmp_path: Path) -> None:
    """Fails today: an instance opens tokens of its one key only."""
    async with cluster(
        tmp_path, query_page_token_key=OLD, query_page_token_previous_keys=NEW
    ) as c:  # step 1 done everywhere: the new key is a previous one
        at = c.head
        async with (
            query_ports(c.reader, _instance(c, NEW, OLD)) as rotated,  # step 2 on this one
            query_ports(c.reader, _instance(c, NEW, None)) as done,  # step 3
        ):
            old_token = await _first_page(c.ports, at)
            new_token = await _first_page(rotated, at)
            second = await _resume(c.ports, old_token, at)
            assert (await _resume(rotated, old_token, at)).entries == second.entries
            assert (await _resume(c.ports, new_token, at)).entries == second.entries
            assert (await _resume(done, new_token, at)).entries == second.entries
            assert await _violations(_resume(done, old_token, at)) == ["page_token"]
