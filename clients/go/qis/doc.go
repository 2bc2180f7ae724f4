// Package qis holds small helpers for calling the qis-data gRPC services from Go, on top of the
// generated package qis-data/clients/go/gen/qis/data/v1 (datav1):
//
//   - identity: every call carries the caller, as x-qis-user metadata in development mode
//     ([User], [WithUser]) or later a bearer token ([BearerToken]); both are
//     credentials.PerRPCCredentials, so the choice is one dial option;
//   - decimals: values travel as decimal strings, never floats ([ParseDecimal], [FormatDecimal]
//     to and from *big.Rat);
//   - snaps: RFC 3339 timestamps with an offset ([FormatSnap], [ParseSnap]);
//   - paging: [QueryRange] iterates over a whole range, following next_page_token across calls
//     (one call streams a bounded number of points);
//   - errors: [Details] decodes a status' google.rpc details (BadRequest, ErrorInfo, RetryInfo,
//     ResourceInfo).
package qis
