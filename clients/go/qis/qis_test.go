package qis

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/reflect/protoreflect"
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
	ts, off, err := SnapOf(time.Date(2024, 3, 15, 16, 0, 0, 1_234_000, ny))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 3, 15, 20, 0, 0, 1_234_000, time.UTC)
	if !ts.AsTime().Equal(want) || ts.GetNanos() != 1_234_000 || off.AsDuration() != -4*time.Hour {
		t.Errorf("SnapOf = %s, %s", ts.AsTime(), off.AsDuration())
	}
	if _, off, _ := SnapOf(want); off.AsDuration() != 0 {
		t.Errorf("SnapOf(UTC) offset = %s", off.AsDuration())
	}
	back, err := SnapIn(ts, off)
	if _, o := back.Zone(); err != nil || o != -4*3600 || back.Format(time.RFC3339Nano) != "2024-03-15T16:00:00.001234-04:00" {
		t.Errorf("SnapIn = %s (offset %d), %v", back, o, err)
	}
	if back, err := SnapIn(ts, nil); err != nil || back.Location() != time.UTC {
		t.Errorf("SnapIn without offset = %s, %v", back, err)
	}
	p, err := Point(time.Date(2024, 3, 15, 16, 0, 0, 0, ny), &datav1.DataValue{})
	if err != nil || p.GetSnapTime().GetSeconds() != want.Unix() || p.GetUtcOffset().GetSeconds() != -4*3600 {
		t.Errorf("Point = %v, %v", p, err)
	}

	refused := map[string]struct {
		t    time.Time
		want error
	}{
		"nanoseconds":       {time.Date(2024, 3, 15, 16, 0, 0, 1_234_567, ny), ErrSnapPrecision},
		"offset of seconds": {time.Date(1850, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", -17762)), ErrUTCOffset},
		"offset of 24h":     {time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 24*3600)), ErrUTCOffset},
		"year 0":            {time.Date(0, 12, 31, 23, 59, 59, 999_999_000, time.UTC), ErrSnapRange},
		"year 10000":        {time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), ErrSnapRange},
		// In range by its wall clock, out of it in UTC.
		"9999-12-31T23:00-05:00": {time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -5*3600)), ErrSnapRange},
	}
	for name, c := range refused {
		if _, _, err := SnapOf(c.t); !errors.Is(err, c.want) {
			t.Errorf("SnapOf(%s) = %v; want %v", name, err, c.want)
		}
	}
	for _, edge := range []time.Time{minInstant, maxInstant, time.Date(1, 1, 1, 1, 0, 0, 0, time.FixedZone("", 3600))} {
		if _, _, err := SnapOf(edge); err != nil {
			t.Errorf("SnapOf(%s): %v", edge, err)
		}
	}
	if _, err := SnapTimestamps(want, want.Add(time.Nanosecond)); !errors.Is(err, ErrSnapPrecision) || !strings.Contains(err.Error(), "snap 1") {
		t.Errorf("SnapTimestamps = %v", err)
	}
	if _, err := SnapIn(ts, durationpb.New(90*time.Second)); !errors.Is(err, ErrUTCOffset) {
		t.Errorf("SnapIn with 90 s = %v", err)
	}
	if _, err := SnapIn(nil, nil); err == nil {
		t.Error("SnapIn(nil) accepted")
	}
}

func TestFilters(t *testing.T) {
	if got := Quote(`a "b" \ c`); got != `"a \"b\" \\ c"` {
		t.Errorf("Quote = %s", got)
	}
	at, err := QuoteTime(time.Date(2024, 3, 1, 0, 0, 0, 500_000, time.FixedZone("", -5*3600)))
	if err != nil || at != `"2024-03-01T00:00:00.0005-05:00"` {
		t.Errorf("QuoteTime = %s, %v", at, err)
	}
	if _, err := QuoteTime(time.Date(2024, 3, 1, 0, 0, 0, 1, time.UTC)); !errors.Is(err, ErrSnapPrecision) {
		t.Errorf("QuoteTime(ns) = %v", err)
	}
	utc, _ := QuoteTime(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC))
	got := And("status = "+EnumName(datav1.QualityIssueStatus_QUALITY_ISSUE_STATUS_OPEN), "",
		"severity = "+EnumName(datav1.Severity_SEVERITY_ERROR), "raise_time < "+utc)
	if got != `status = OPEN AND severity = ERROR AND raise_time < "2024-03-01T00:00:00Z"` {
		t.Errorf("And = %s", got)
	}
	for e, want := range map[protoreflect.Enum]string{
		datav1.QualityRule_QUALITY_RULE_JUMP:                     "JUMP",
		datav1.QualityRule_QUALITY_RULE_SOURCE_BREAK:             "SOURCE_BREAK",
		datav1.ValueMethod_VALUE_METHOD_PRIORITY:                 "PRIORITY",
		datav1.QualityIssueStatus_QUALITY_ISSUE_STATUS_OPEN:      "OPEN",
		datav1.DataType_DATA_TYPE_PRICE:                          "PRICE",
		datav1.QualityRule(99):                                   "99", // a rule added after this client
		datav1.QualityRule_QUALITY_RULE_UNSPECIFIED:              "UNSPECIFIED",
		datav1.Severity_SEVERITY_WARNING:                         "WARNING",
		datav1.Frequency_FREQUENCY_DAILY:                         "DAILY",
		datav1.Resolution_RESOLUTION_APPROVE:                     "APPROVE",
		datav1.ReconciliationMethod_RECONCILIATION_METHOD_MEDIAN: "MEDIAN",
	} {
		if got := EnumName(e); got != want {
			t.Errorf("EnumName(%v) = %q; want %q", e, got, want)
		}
	}
}

func TestDetails(t *testing.T) {
	st, _ := status.New(codes.InvalidArgument, "bad").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "points[0].snap_time", Description: "finer than a microsecond"}}},
		&errdetails.ErrorInfo{Reason: "COMMAND_ID_REUSED", Domain: ErrorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)},
		&errdetails.ResourceInfo{ResourceType: "series", ResourceName: "series/X"},
	)
	d, ok := Details(fmt.Errorf("wrapped: %w", st.Err()))
	if !ok || d.Code != codes.InvalidArgument || d.FieldViolations()[0].GetField() != "points[0].snap_time" ||
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

// listServer pages quality issues and a point's history, n items, at most page_size per page,
// an empty page (with a token) after the first, and records each request.
type listServer struct {
	datav1.UnimplementedQueryServiceServer
	n        int
	requests []*datav1.ListQualityIssuesRequest
	history  []*datav1.GetPointHistoryRequest
	stuck    bool // answer with the token received
}

func (s *listServer) ListQualityIssues(_ context.Context, req *datav1.ListQualityIssuesRequest) (*datav1.ListQualityIssuesResponse, error) {
	s.requests = append(s.requests, req)
	if s.stuck {
		return &datav1.ListQualityIssuesResponse{NextPageToken: "same"}, nil
	}
	start, _ := strconv.Atoi(strings.TrimPrefix(req.GetPageToken(), "empty:"))
	resp := &datav1.ListQualityIssuesResponse{}
	if start == 2 && !strings.HasPrefix(req.GetPageToken(), "empty:") {
		resp.NextPageToken = "empty:2" // a page with nothing in it, and more to come (AIP-158)
		return resp, nil
	}
	i := start
	for ; i < s.n && len(resp.Issues) < int(req.GetPageSize()); i++ {
		resp.Issues = append(resp.Issues, &datav1.QualityIssue{IssueId: strconv.Itoa(i)})
	}
	if i < s.n {
		resp.NextPageToken = strconv.Itoa(i)
	}
	return resp, nil
}

func (s *listServer) GetPointHistory(_ context.Context, req *datav1.GetPointHistoryRequest) (*datav1.GetPointHistoryResponse, error) {
	s.history = append(s.history, req)
	// Commit order: observation 10, version 1, observation 20, version 2; two items per page.
	pages := []*datav1.GetPointHistoryResponse{
		{Observations: []*datav1.SourceObservation{{RecordPosition: 10}}, Versions: []*datav1.OfficialValue{{Version: 1}}, ReadPosition: 30, NextPageToken: "1"},
		{Observations: []*datav1.SourceObservation{{RecordPosition: 20}}, Versions: []*datav1.OfficialValue{{Version: 2}}, ReadPosition: 31},
	}
	page := 0
	if req.GetPageToken() == "1" {
		page = 1
	}
	return pages[page], nil
}

func serve(t *testing.T, impl datav1.QueryServiceServer) datav1.QueryServiceClient {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	datav1.RegisterQueryServiceServer(server, impl)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return listener.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()), WithUser("gopher"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return datav1.NewQueryServiceClient(conn)
}

func TestListPagesFollowTokensThroughEmptyPages(t *testing.T) {
	fake := &listServer{n: 5}
	client := serve(t, fake)
	req := &datav1.ListQualityIssuesRequest{Parent: "series/-", Filter: "status = OPEN", PageSize: 2}
	var ids []string
	for issue, err := range ListQualityIssues(context.Background(), client, req) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, issue.GetIssueId())
	}
	if strings.Join(ids, ",") != "0,1,2,3,4" || len(fake.requests) != 4 {
		t.Fatalf("got %v in %d calls", ids, len(fake.requests))
	}
	for _, r := range fake.requests {
		if r.GetParent() != "series/-" || r.GetFilter() != "status = OPEN" || r.GetPageSize() != 2 {
			t.Errorf("a page request lost its parent, filter or size: %v", r)
		}
	}
	if req.GetPageToken() != "" {
		t.Error("the caller's request was modified")
	}

	// A service answering with the token it was sent: an error, not an endless loop.
	fake.stuck, fake.requests = true, nil
	req.PageToken = "same"
	var last error
	for _, err := range ListQualityIssues(context.Background(), client, req) {
		last = err
	}
	if !errors.Is(last, ErrNoProgress) || len(fake.requests) != 1 {
		t.Errorf("stuck paging: %v after %d calls", last, len(fake.requests))
	}
}

func TestGetPointHistoryReadsEveryPage(t *testing.T) {
	fake := &listServer{}
	client := serve(t, fake)
	snap, _ := SnapTimestamp(time.Date(2024, 3, 15, 20, 0, 0, 0, time.UTC))
	h, err := GetPointHistory(context.Background(), client, &datav1.GetPointHistoryRequest{Series: "series/X", SnapTime: snap, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.GetVersions()) != 2 || h.GetVersions()[1].GetVersion() != 2 || len(h.GetObservations()) != 2 ||
		h.GetObservations()[1].GetRecordPosition() != 20 || h.GetReadPosition() != 30 || h.GetNextPageToken() != "" {
		t.Fatalf("GetPointHistory = %v", h)
	}
	if len(fake.history) != 2 || fake.history[1].GetPageToken() != "1" || !fake.history[1].GetSnapTime().AsTime().Equal(snap.AsTime()) {
		t.Errorf("history requests: %v", fake.history)
	}
}
