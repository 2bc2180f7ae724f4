package qis

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the ErrorInfo domain of the service's stable error reasons.
const ErrorDomain = "qis.data"

// ErrorDetails is a failed call's status with its google.rpc details decoded: what the service
// attaches (docs/errors.md lists the reasons): ErrorInfo to every error (domain "qis.data", a
// stable reason such as COMMAND_ID_REUSED or SCHEMA_VERSION_MISMATCH), BadRequest to
// INVALID_ARGUMENT, ResourceInfo to NOT_FOUND, RetryInfo to the statuses worth resending with
// the same command id (UNAVAILABLE, RESOURCE_EXHAUSTED of a full store, ABORTED from
// contention; not ABORTED SCHEMA_VERSION_MISMATCH, which needs the series read again).
type ErrorDetails struct {
	Code    codes.Code
	Message string
	// Nil when the status carries no detail of that type.
	BadRequest   *errdetails.BadRequest
	ErrorInfo    *errdetails.ErrorInfo
	RetryInfo    *errdetails.RetryInfo
	ResourceInfo *errdetails.ResourceInfo
	// Details of other types, as decoded.
	Other []any
}

// Details decodes the status of err (a gRPC error, possibly wrapped); ok is false when err
// carries no gRPC status (nil, or an error of another kind).
func Details(err error) (d *ErrorDetails, ok bool) {
	if err == nil {
		return nil, false
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil, false
	}
	return detailsOf(st), true
}

// DetailsFromProto decodes a google.rpc.Status message, such as the error of a rejected
// BulkIngest chunk (BulkIngestResponse.GetError()); nil for nil.
func DetailsFromProto(s *spb.Status) *ErrorDetails {
	if s == nil {
		return nil
	}
	return detailsOf(status.FromProto(s))
}

func detailsOf(st *status.Status) *ErrorDetails {
	d := &ErrorDetails{Code: st.Code(), Message: st.Message()}
	for _, detail := range st.Details() {
		switch v := detail.(type) {
		case *errdetails.BadRequest:
			d.BadRequest = v
		case *errdetails.ErrorInfo:
			d.ErrorInfo = v
		case *errdetails.RetryInfo:
			d.RetryInfo = v
		case *errdetails.ResourceInfo:
			d.ResourceInfo = v
		default: // another type, or an error decoding it
			d.Other = append(d.Other, v)
		}
	}
	return d
}

// FieldViolations of a BadRequest detail ("points[1].value.price.value": why), in order; nil
// without one.
func (d *ErrorDetails) FieldViolations() []*errdetails.BadRequest_FieldViolation {
	return d.BadRequest.GetFieldViolations()
}

// Reason is the ErrorInfo reason ("COMMAND_ID_REUSED"), or "" without an ErrorInfo.
func (d *ErrorDetails) Reason() string { return d.ErrorInfo.GetReason() }

// RetryDelay is how long to wait before resending, with ok false when the service did not say
// the call may be retried.
func (d *ErrorDetails) RetryDelay() (delay time.Duration, ok bool) {
	if d.RetryInfo == nil {
		return 0, false
	}
	return d.RetryInfo.GetRetryDelay().AsDuration(), true
}

// String: the code and message, then one line per detail.
func (d *ErrorDetails) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", d.Code, d.Message)
	for _, v := range d.FieldViolations() {
		fmt.Fprintf(&b, "\n  field %s: %s", v.GetField(), v.GetDescription())
	}
	if d.ErrorInfo != nil {
		fmt.Fprintf(&b, "\n  reason %s (domain %s)", d.ErrorInfo.GetReason(), d.ErrorInfo.GetDomain())
	}
	if d.ResourceInfo != nil {
		fmt.Fprintf(&b, "\n  resource %s %s", d.ResourceInfo.GetResourceType(), d.ResourceInfo.GetResourceName())
	}
	if delay, ok := d.RetryDelay(); ok {
		fmt.Fprintf(&b, "\n  retry after %s", delay)
	}
	return b.String()
}
