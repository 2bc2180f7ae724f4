"""Composition root of the query process."""

from __future__ import annotations

from dataclasses import dataclass

from qis.data.v1 import query_service_pb2, query_service_pb2_grpc
from qis_adapters.readstore.factory import AdministeredReadStore, open_read_store
from qis_runtime.server import QisServer, ServiceBinding

from qis_query.entrypoints.grpc_service import QueryService
from qis_query.settings import QuerySettings

SERVICE_NAME = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


@dataclass
class QueryApp:
    store: AdministeredReadStore
    server: QisServer

    async def close(self) -> None:
        await self.store.close()


async def build(settings: QuerySettings) -> QueryApp:
    store = await open_read_store(settings.resolved_read_store_uri(), None, settings.mongo_database)
    servicer = QueryService(store, settings)
    binding = ServiceBinding(
        SERVICE_NAME, query_service_pb2_grpc.add_QueryServiceServicer_to_server, servicer
    )
    return QueryApp(store, QisServer(settings.query_address, [binding]))
