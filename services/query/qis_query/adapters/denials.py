"""The query service's refusals, recorded through the command service
(CommandService.RecordAccessDenial), as itself (qis_query.adapters.command_client)."""

from __future__ import annotations

import logging

import grpc.aio
from qis.data.v1 import access_pb2, series_pb2
from qis.data.v1 import command_service_pb2 as pb
from qis_adapters.proto.definitions import CLASSIFICATIONS
from qis_adapters.proto.times import timestamp
from qis_domain.definitions import Classification
from qis_domain.events import AccessDenied

from qis_query.adapters.command_client import CommandClient

log = logging.getLogger(__name__)

RECORD_TIMEOUT_S = 2.0
"""How long a refusal waits for its record: the caller is answered PERMISSION_DENIED either
way, but not before the record is made (or given up on), so that it is in the log when the
caller reads the audit trail."""
_CLASSIFICATION_NUMBERS = {level: number for number, level in CLASSIFICATIONS.items()}


class CommandServiceRecorder(CommandClient):
    default_timeout_s = RECORD_TIMEOUT_S

    async def record(self, denial: AccessDenied, denial_id: str) -> None:
        request = pb.RecordAccessDenialRequest(command_id=denial_id, denial=denial_message(denial))
        try:
            await self._call(self._stub.RecordAccessDenial, request)
        except (grpc.aio.AioRpcError, TimeoutError):
            # The refusal stands whatever the command service does; the log keeps the record.
            log.exception("access denial %s not recorded: %s", denial_id, denial.model_dump_json())


def denial_message(denial: AccessDenied) -> access_pb2.AccessDenial:
    return access_pb2.AccessDenial(
        user=denial.user_id,
        roles=denial.roles,
        method=denial.method,
        permission=access_pb2.Permission.Value(f"PERMISSION_{denial.permission.upper()}"),
        resource=denial.resource,
        classification=(
            _CLASSIFICATION_NUMBERS[Classification(denial.classification)]
            if denial.classification
            else series_pb2.DATA_CLASSIFICATION_UNSPECIFIED
        ),
        refusals=[
            access_pb2.PolicyRefusal(policy_id=r.policy_id, reason=r.reason)
            for r in denial.refusals
        ],
        policy_version=denial.policy_version,
        peer=denial.peer,
        denial_time=timestamp(denial.denied_us),
    )
