package qis

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	datav1 "qis-data/clients/go/gen/qis/data/v1"
)

func TestDecimalRoundTrip(t *testing.T) {
	for in, want := range map[string]string{
		"101.25": "101.25", "-0.5": "-0.5", "1E+3": "1000", "0.000000000000000001": "0.000000000000000001",
		"999999999999999999.5": "999999999999999999.5", "+7": "7", ".5": "0.5", "1.50": "1.5",
	} {
		r, err := ParseDecimal(in)
		if err != nil {
			t.Fatalf("ParseDecimal(%q): %v", in, err)
		}
		got, err := FormatDecimal(r)
		if err != nil || got != want {
			t.Errorf("FormatDecimal(ParseDecimal(%q)) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "NaN", "Infinity", "1/3", "0x10", "1.2.3", "1e", "1_000", " 1", "1e99999999999"} {
		if _, err := ParseDecimal(in); err == nil {
			t.Errorf("ParseDecimal(%q) accepted", in)
		}
	}
	for _, r := range []*big.Rat{big.NewRat(1, 3), new(big.Rat).SetFrac64(1, 1<<62), new(big.Rat).SetInt64(1e18)} {
		if s, err := FormatDecimal(r); !errors.Is(err, ErrDecimalBounds) {
			t.Errorf("FormatDecimal(%s) = %q, %v; want ErrDecimalBounds", r, s, err)
		}
	}
}

func TestSnaps(t *testing.T) {
	ny := time.FixedZone("EDT", -4*3600)
	s, err := FormatSnap(time.Date(2024, 3, 15, 16, 0, 0, 1234567, ny))
	if err != nil || s != "2024-03-15T16:00:00.001234-04:00" {
		t.Fatalf("FormatSnap = %q, %v", s, err)
	}
	if s, _ := FormatSnap(time.Date(2024, 3, 15, 20, 0, 0, 0, time.UTC)); s != "2024-03-15T20:00:00Z" {
		t.Errorf("FormatSnap(UTC) = %q", s)
	}
	if _, err := FormatSnap(time.Date(1850, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", -17762))); err == nil {
		t.Error("an offset of seconds was accepted")
	}
	back, err := ParseSnap("2024-03-15T16:00:00-04:00")
	if _, off := back.Zone(); err != nil || off != -4*3600 {
		t.Errorf("ParseSnap: %v, offset %d", err, off)
	}
}

func TestDetails(t *testing.T) {
	st, _ := status.New(codes.InvalidArgument, "bad").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "points[0].snap", Description: "no offset"}}},
		&errdetails.ErrorInfo{Reason: "COMMAND_ID_REUSED", Domain: ErrorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)},
		&errdetails.ResourceInfo{ResourceType: "series", ResourceName: "series/X"},
	)
	d, ok := Details(fmt.Errorf("wrapped: %w", st.Err()))
	if !ok || d.Code != codes.InvalidArgument || d.FieldViolations()[0].GetField() != "points[0].snap" ||
		d.Reason() != "COMMAND_ID_REUSED" || d.ResourceInfo.GetResourceName() != "series/X" {
		t.Fatalf("Details = %+v, %t", d, ok)
	}
	if delay, ok := d.RetryDelay(); !ok || delay != 2*time.Second {
		t.Errorf("RetryDelay = %s, %t", delay, ok)
	}
	if _, ok := Details(errors.New("plain")); ok {
		t.Error("a plain error has details")
	}
	if DetailsFromProto(st.Proto()).BadRequest == nil {
		t.Error("DetailsFromProto lost the BadRequest")
	}
}

// pagingServer serves a range of n points, at most perCall points per call, page_size per
// message, and records the user metadata of each call.
type pagingServer struct {
	datav1.UnimplementedQueryServiceServer
	n, perCall int
	calls      int
	users      []string
}

func (s *pagingServer) QueryRange(req *datav1.QueryRangeRequest, stream grpc.ServerStreamingServer[datav1.QueryRangeResponse]) error {
	s.calls++
	md, _ := metadata.FromIncomingContext(stream.Context())
	s.users = append(s.users, md.Get(UserMetadataKey)...)
	start := 0
	if req.GetPageToken() != "" {
		start, _ = strconv.Atoi(req.GetPageToken())
	}
	size := int(req.GetPageSize())
	sent := 0
	for i := start; i < s.n && sent < s.perCall; {
		msg := &datav1.QueryRangeResponse{}
		for ; i < s.n && len(msg.Values) < size && sent < s.perCall; i++ {
			msg.Values = append(msg.Values, &datav1.OfficialValue{Version: int32(i)})
			sent++
		}
		if i < s.n {
			msg.NextPageToken = strconv.Itoa(i)
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

func TestQueryRangeFollowsPageTokensAcrossCalls(t *testing.T) {
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	fake := &pagingServer{n: 25, perCall: 10}
	datav1.RegisterQueryServiceServer(server, fake)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return listener.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()), WithUser("gopher"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := datav1.NewQueryServiceClient(conn)

	req := &datav1.QueryRangeRequest{Series: "series/X", PageSize: 3}
	var got []int32
	for v, err := range QueryRange(context.Background(), client, req) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v.GetVersion())
	}
	if len(got) != 25 || got[24] != 24 || fake.calls != 3 {
		t.Fatalf("got %v in %d calls", got, fake.calls)
	}
	if req.GetPageToken() != "" {
		t.Error("the caller's request was modified")
	}
	if len(fake.users) != 3 || fake.users[0] != "gopher" {
		t.Errorf("x-qis-user per call: %v", fake.users)
	}
	// Stopping early ends the iteration without another call.
	fake.calls = 0
	for range QueryRange(context.Background(), client, req) {
		break
	}
	if fake.calls != 1 {
		t.Errorf("%d calls after an early stop", fake.calls)
	}
}
