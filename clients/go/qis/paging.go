package qis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	datav1 "qis-data/clients/go/gen/qis/data/v1"
)

// QueryRangePages iterates over every message of a range, across as many QueryRange calls as
// it takes: one call streams a bounded number of points and then ends with a next_page_token,
// and the iterator calls again with it as page_token until a message carries an empty token.
// req is not modified. The first error (of a call or of the stream) is yielded once, with a
// nil message, and ends the iteration; to resume later, send a new request with page_token set
// to the NextPageToken of the last message received.
func QueryRangePages(ctx context.Context, client datav1.QueryServiceClient, req *datav1.QueryRangeRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.QueryRangeResponse, error] {
	return func(yield func(*datav1.QueryRangeResponse, error) bool) {
		next := proto.Clone(req).(*datav1.QueryRangeRequest)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the stream of a call when the caller stops early
		for {
			stream, err := client.QueryRange(ctx, next, opts...)
			if err != nil {
				yield(nil, err)
				return
			}
			received, token := 0, ""
			for {
				msg, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					yield(nil, err)
					return
				}
				received++
				token = msg.GetNextPageToken()
				if !yield(msg, nil) {
					return
				}
			}
			// The range is complete when the last message has no token (or a call sent none).
			if received == 0 || token == "" {
				return
			}
			if token == next.PageToken {
				yield(nil, fmt.Errorf("%w (QueryRange)", ErrNoProgress))
				return
			}
			next.PageToken = token
		}
	}
}

// QueryRange iterates over the official values of a range, in snap order, following
// next_page_token across calls as QueryRangePages does:
//
//	for v, err := range qis.QueryRange(ctx, query, &datav1.QueryRangeRequest{Series: "series/X"}) {
//		if err != nil { ... }
//		fmt.Println(v.GetSnapTime().AsTime(), v.GetValue().GetPrice().GetValue())
//	}
func QueryRange(ctx context.Context, client datav1.QueryServiceClient, req *datav1.QueryRangeRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.OfficialValue, error] {
	return func(yield func(*datav1.OfficialValue, error) bool) {
		for msg, err := range QueryRangePages(ctx, client, req, opts...) {
			if err != nil {
				yield(nil, err)
				return
			}
			for _, v := range msg.GetValues() {
				if !yield(v, nil) {
					return
				}
			}
		}
	}
}

// ErrNoProgress: a paged call answered with the page token it was sent, which would repeat the
// same page forever.
var ErrNoProgress = errors.New("qis: the service answered with the same page token")

// pagedResponse: a response of a unary list call (AIP-158).
type pagedResponse interface {
	proto.Message
	GetNextPageToken() string
}

// Pages iterates over the responses of a unary paged call (AIP-158: a request with page_token,
// a response with next_page_token), calling again with each next_page_token until one is
// empty. call is the client's method, e.g. client.ListSeries; req is not modified (a copy
// carries the tokens), so its page_token, if set, is where the iteration starts. A page may
// hold fewer items than page_size, even none, while more follow: iterate until the end rather
// than stopping at a short page. The first error is yielded once, with a nil response, and ends
// the iteration. The typed helpers below (ListSeries, ListAuditEntries, ListQualityIssues,
// ListQualityMetrics, PointHistoryPages) are Pages with the items unpacked.
func Pages[Req proto.Message, Resp pagedResponse](ctx context.Context, call func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, opts ...grpc.CallOption) iter.Seq2[Resp, error] {
	return func(yield func(Resp, error) bool) {
		var zero Resp
		next := proto.Clone(req).(Req)
		msg := next.ProtoReflect()
		field := msg.Descriptor().Fields().ByName("page_token")
		if field == nil || field.Kind() != protoreflect.StringKind || field.IsList() {
			yield(zero, fmt.Errorf("qis: %s has no page_token", msg.Descriptor().FullName()))
			return
		}
		token := msg.Get(field).String()
		for {
			resp, err := call(ctx, next, opts...)
			if err != nil {
				yield(zero, err)
				return
			}
			if !yield(resp, nil) {
				return
			}
			following := resp.GetNextPageToken()
			if following == "" {
				return
			}
			if following == token {
				yield(zero, fmt.Errorf("%w (%s)", ErrNoProgress, msg.Descriptor().FullName()))
				return
			}
			token = following
			msg.Set(field, protoreflect.ValueOfString(token))
		}
	}
}

// items flattens the pages of a paged call into their items.
func items[Resp pagedResponse, Item any](pages iter.Seq2[Resp, error], of func(Resp) []Item) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		for page, err := range pages {
			if err != nil {
				var zero Item
				yield(zero, err)
				return
			}
			for _, item := range of(page) {
				if !yield(item, nil) {
					return
				}
			}
		}
	}
}

// ListSeries iterates over the series catalogue, by series id, across pages.
func ListSeries(ctx context.Context, client datav1.QueryServiceClient, req *datav1.ListSeriesRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.Series, error] {
	return items(Pages(ctx, client.ListSeries, req, opts...), (*datav1.ListSeriesResponse).GetSeries)
}

// ListAuditEntries iterates over the audit entries of req.Parent ("series/{id}",
// "sources/{id}" or "-" for every entry) that match req.Filter, across pages:
//
//	since, _ := qis.QuoteTime(start)
//	for e, err := range qis.ListAuditEntries(ctx, queries, &datav1.ListAuditEntriesRequest{
//		Parent: "series/SPX.CLOSE",
//		Filter: qis.And("user = "+qis.Quote("alice"), "commit_time >= "+since),
//	}) { ... }
func ListAuditEntries(ctx context.Context, client datav1.QueryServiceClient, req *datav1.ListAuditEntriesRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.AuditEntry, error] {
	return items(Pages(ctx, client.ListAuditEntries, req, opts...), (*datav1.ListAuditEntriesResponse).GetEntries)
}

// ListQualityIssues iterates over the quality issues of req.Parent ("series/{id}", or
// "series/-" for every series) that match req.Filter, across pages. An empty filter lists
// issues in every status: the open queue is `status = OPEN`.
func ListQualityIssues(ctx context.Context, client datav1.QueryServiceClient, req *datav1.ListQualityIssuesRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.QualityIssue, error] {
	return items(Pages(ctx, client.ListQualityIssues, req, opts...), (*datav1.ListQualityIssuesResponse).GetIssues)
}

// ListQualityMetrics iterates over the quality metric windows of a series, across pages.
func ListQualityMetrics(ctx context.Context, client datav1.QueryServiceClient, req *datav1.ListQualityMetricsRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.QualityMetrics, error] {
	return items(Pages(ctx, client.ListQualityMetrics, req, opts...), (*datav1.ListQualityMetricsResponse).GetMetrics)
}

// PointHistoryPages iterates over the pages of a point's history: each holds the versions and
// observations of a run of commit positions, up to page_size of them together.
func PointHistoryPages(ctx context.Context, client datav1.QueryServiceClient, req *datav1.GetPointHistoryRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.GetPointHistoryResponse, error] {
	return Pages(ctx, client.GetPointHistory, req, opts...)
}

// GetPointHistory reads the whole history of a point, every page, into one response: versions
// ascending by version, observations ascending by commit position (pages come in commit
// order), read_position the smallest of the pages' (what the whole answer reflects at least),
// no next_page_token. For a point with a very long history, PointHistoryPages handles one page
// at a time.
func GetPointHistory(ctx context.Context, client datav1.QueryServiceClient, req *datav1.GetPointHistoryRequest, opts ...grpc.CallOption) (*datav1.GetPointHistoryResponse, error) {
	all := &datav1.GetPointHistoryResponse{}
	first := true
	for page, err := range PointHistoryPages(ctx, client, req, opts...) {
		if err != nil {
			return nil, err
		}
		all.Versions = append(all.Versions, page.GetVersions()...)
		all.Observations = append(all.Observations, page.GetObservations()...)
		if first || page.GetReadPosition() < all.ReadPosition {
			all.ReadPosition = page.GetReadPosition()
		}
		first = false
	}
	// Already in order when the pages are; sorting (stable) keeps the contract if they were not.
	slices.SortStableFunc(all.Versions, func(a, b *datav1.OfficialValue) int {
		return cmp.Compare(a.GetVersion(), b.GetVersion())
	})
	slices.SortStableFunc(all.Observations, func(a, b *datav1.SourceObservation) int {
		return cmp.Compare(a.GetRecordPosition(), b.GetRecordPosition())
	})
	return all, nil
}
