package qis

import (
	"context"
	"errors"
	"io"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

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
			next.PageToken = token
		}
	}
}

// QueryRange iterates over the official values of a range, in snap order, following
// next_page_token across calls as QueryRangePages does:
//
//	for v, err := range qis.QueryRange(ctx, query, &datav1.QueryRangeRequest{Series: "series/X"}) {
//		if err != nil { ... }
//		fmt.Println(v.GetSnap().AsTime(), v.GetValue().GetPrice().GetValue())
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
