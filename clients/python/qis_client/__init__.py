"""Python client of qis-data: the generated contract (`qis.data.v1`) and a small idiomatic layer.

from qis_client import QisClient, User, decimal_of, to_datetime

with QisClient.connect("127.0.0.1:50051", "127.0.0.1:50052", User("alice")) as qis:
    for value in qis.query_range("SPX.CLOSE"):
        print(to_datetime(value.snap_time), decimal_of(value))
"""

from qis_client.client import (
    DEFAULT_COMMAND_ADDRESS,
    DEFAULT_QUERY_ADDRESS,
    Points,
    QisClient,
    new_command_id,
)
from qis_client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QisError,
    Resource,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    error_from_rpc,
    error_from_status,
)
from qis_client.identity import BearerToken, Identity, User
from qis_client.paging import PagingError, pages
from qis_client.subscription import Subscription
from qis_client.values import (
    Bar,
    Value,
    bar_of,
    data_point,
    data_value,
    decimal_of,
    decimal_text,
    optional_decimal,
    parse_decimal,
    price,
    series_name,
    source_name,
    timestamp,
    to_datetime,
    utc_offset,
    volume,
)

__all__ = [
    "DEFAULT_COMMAND_ADDRESS",
    "DEFAULT_QUERY_ADDRESS",
    "Aborted",
    "AlreadyExists",
    "Bar",
    "BearerToken",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Identity",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PagingError",
    "PermissionDenied",
    "Points",
    "QisClient",
    "QisError",
    "Resource",
    "ResourceExhausted",
    "Subscription",
    "Unauthenticated",
    "Unavailable",
    "User",
    "Value",
    "bar_of",
    "data_point",
    "data_value",
    "decimal_of",
    "decimal_text",
    "error_from_rpc",
    "error_from_status",
    "new_command_id",
    "optional_decimal",
    "pages",
    "parse_decimal",
    "price",
    "series_name",
    "source_name",
    "timestamp",
    "to_datetime",
    "utc_offset",
    "volume",
]
