// Package qis holds small helpers for calling the qis-data gRPC services from Go, on top of the
// generated package qis-data/clients/go/gen/qis/data/v1 (datav1):
//
//   - identity: every call carries the caller, as x-qis-user metadata in development mode
//     ([User], [WithUser]) or later a bearer token ([BearerToken]); both are
//     credentials.PerRPCCredentials, so the choice is one dial option;
//   - decimals: values travel as decimal strings, never floats ([ParseDecimal], [FormatDecimal]
//     to and from *big.Rat);
//   - snaps: a google.protobuf.Timestamp snap_time in whole microseconds plus the
//     google.protobuf.Duration utc_offset the value was observed at, from a time.Time and its
//     zone ([SnapOf], [Point], [SnapTimestamp]) and back ([SnapIn]); refused, not truncated,
//     when the service would refuse them;
//   - columns: points in one slice per field, for long histories ([PriceColumns],
//     [VolumeColumns], [BarColumns] from []time.Time and [Texts] or [Scaled] decimals, with
//     [SnapOf]'s rules), cut into requests of at most [MaxRows] rows ([IngestRequests]) and
//     streamed over BulkIngest ([BulkIngest]); ranges read in the columnar view
//     ([QueryRangeColumns], [ColumnsOf]) into a [ValueColumns] of slices, flags decoded per row;
//   - paging: [QueryRange] iterates over a whole range, following next_page_token across calls
//     (one call streams a bounded number of points); [Pages] does the same for any unary paged
//     call, and [ListSeries], [ListAuditEntries], [ListQualityIssues], [ListQualityMetrics],
//     [PointHistoryPages] and [GetPointHistory] unpack their items;
//   - filters: values for the AIP-160 filters of ListAuditEntries and ListQualityIssues
//     ([Quote], [QuoteTime], [EnumName], [And]); [EnumName] also prints enum values by name;
//   - errors: [Details] decodes a status' google.rpc details (BadRequest, ErrorInfo, RetryInfo,
//     ResourceInfo).
package qis
