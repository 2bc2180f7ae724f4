package qis

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	datav1 "qis-data/clients/go/gen/qis/data/v1"
)

func TestSnapColumnsFollowThePointRules(t *testing.T) {
	est, edt := time.FixedZone("EST", -5*3600), time.FixedZone("EDT", -4*3600)
	times := []time.Time{time.Date(2024, 3, 8, 16, 0, 0, 0, est), time.Date(2024, 3, 11, 16, 0, 0, 123_456_000, edt)}
	micros, offsets, err := SnapColumns(times)
	if err != nil {
		t.Fatal(err)
	}
	for i, tm := range times {
		p, err := Point(tm, &datav1.DataValue{})
		if err != nil {
			t.Fatal(err)
		}
		// The same instant and offset as a DataPoint of the same time.
		if want := p.GetSnapTime().AsTime().UnixMicro(); micros[i] != want {
			t.Errorf("row %d: %d µs, want %d", i, micros[i], want)
		}
		if want := int32(p.GetUtcOffset().GetSeconds() / 60); offsets[i] != want {
			t.Errorf("row %d: offset %d, want %d", i, offsets[i], want)
		}
	}
	if !slices.Equal(offsets, []int32{-300, -240}) {
		t.Errorf("offsets %v", offsets)
	}

	day := func(d int, loc *time.Location) time.Time { return time.Date(2024, 1, d, 0, 0, 0, 0, loc) }
	for name, c := range map[string]struct {
		times []time.Time
		want  []int32
	}{
		"all UTC: none":   {[]time.Time{day(1, time.UTC), day(2, time.UTC)}, nil},
		"shared: one":     {[]time.Time{day(1, est), day(2, time.FixedZone("other name", -5*3600))}, []int32{-300}},
		"one per row":     {[]time.Time{day(1, est), day(2, time.UTC)}, []int32{-300, 0}},
		"no rows at all":  {nil, nil},
		"+23:59 is valid": {[]time.Time{day(1, time.FixedZone("", 86_340))}, []int32{1439}},
	} {
		_, got, err := SnapColumns(c.times)
		if err != nil || !slices.Equal(got, c.want) || (c.want == nil) != (got == nil) {
			t.Errorf("%s: %v, %v; want %v", name, got, err, c.want)
		}
	}

	for name, c := range map[string]struct {
		t    time.Time
		want error
	}{
		"nanoseconds":       {time.Date(2024, 3, 15, 16, 0, 0, 1_234_567, est), ErrSnapPrecision},
		"offset of seconds": {time.Date(1850, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", -17762)), ErrUTCOffset},
		"year 10000":        {time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), ErrSnapRange},
	} {
		_, _, err := SnapColumns([]time.Time{day(1, time.UTC), c.t})
		if !errors.Is(err, c.want) || !strings.HasPrefix(err.Error(), "snaps[1]: ") {
			t.Errorf("%s: %v; want %v naming snaps[1]", name, err, c.want)
		}
	}
}

func TestValueColumnsAreChecked(t *testing.T) {
	times := []time.Time{time.Date(2024, 3, 1, 21, 0, 0, 0, time.UTC), time.Date(2024, 3, 4, 21, 0, 0, 0, time.UTC)}
	cols, err := PriceColumns(times, Texts("5137.08", "1E+3"))
	if err != nil || !slices.Equal(cols.GetPrices().GetTexts(), []string{"5137.08", "1E+3"}) || cols.GetUtcOffsetMinutes() != nil {
		t.Fatalf("PriceColumns = %v, %v", cols, err)
	}
	if cols, err := VolumeColumns(times, Scaled(2, 10125, -5)); err != nil || cols.GetVolumes().GetScale() != 2 {
		t.Errorf("VolumeColumns = %v, %v", cols, err)
	}
	bars := &datav1.OhlcBarColumns{Open: Texts("1", "2"), High: Scaled(1, 25, 30), Low: Texts("0.5", "1"),
		Close: Texts("2", "2.5"), Volume: Texts("100", "")}
	if _, err := BarColumns(times, bars); err != nil {
		t.Errorf("BarColumns: %v", err)
	}
	for name, c := range map[string]struct {
		build func() (*datav1.PointColumns, error)
		want  error
		says  string
	}{
		"not a decimal": {func() (*datav1.PointColumns, error) { return PriceColumns(times, Texts("1", "1,5")) }, ErrNotDecimal, "prices.texts[1]"},
		"empty price":   {func() (*datav1.PointColumns, error) { return PriceColumns(times, Texts("", "1")) }, ErrNotDecimal, "prices.texts[0]"},
		"short column":  {func() (*datav1.PointColumns, error) { return PriceColumns(times, Texts("1")) }, ErrColumns, "prices has 1 rows, snaps 2"},
		"no column":     {func() (*datav1.PointColumns, error) { return VolumeColumns(times, nil) }, ErrColumns, "no volumes column"},
		"scale 19":      {func() (*datav1.PointColumns, error) { return PriceColumns(times, Scaled(19, 1, 2)) }, ErrColumns, "prices.scale 19"},
		"1e18 at scale 0": {func() (*datav1.PointColumns, error) {
			return PriceColumns(times, Scaled(0, 1, -1_000_000_000_000_000_000))
		}, ErrDecimalBounds, "prices.unscaled[1]"},
		"bar without low": {func() (*datav1.PointColumns, error) {
			return BarColumns(times, &datav1.OhlcBarColumns{Open: Texts("1", "1"), High: Texts("1", "1"), Close: Texts("1", "1")})
		}, ErrColumns, "no bars.low column"},
		"bad snap": {func() (*datav1.PointColumns, error) {
			return PriceColumns([]time.Time{times[0], times[1].Add(time.Nanosecond)}, Texts("1", "2"))
		}, ErrSnapPrecision, "snaps[1]"},
	} {
		_, err := c.build()
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want %v saying %q", name, err, c.want, c.says)
		}
	}
}

func TestIngestRequestsAreChunksOfAtMostMaxRows(t *testing.T) {
	n := 2*MaxRows + 1
	times := make([]time.Time, n)
	unscaled := make([]int64, n)
	for i := range n {
		times[i] = time.Date(2024, 1, 1, 0, i, 0, 0, time.FixedZone("", 60*60))
		unscaled[i] = int64(i)
	}
	cols, err := PriceColumns(times, Scaled(2, unscaled...))
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := IngestRequests("load-1", "series/X", "sources/s", cols)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var joined []int64
	for _, r := range reqs {
		ids = append(ids, r.GetCommandId())
		joined = append(joined, r.GetColumns().GetSnapTimeMicros()...)
		if r.GetSeries() != "series/X" || r.GetSource() != "sources/s" || !slices.Equal(r.GetColumns().GetUtcOffsetMinutes(), []int32{60}) {
			t.Errorf("chunk %s: %v", r.GetCommandId(), r)
		}
	}
	if !slices.Equal(ids, []string{"load-1:0", "load-1:1", "load-1:2"}) || !slices.Equal(joined, cols.GetSnapTimeMicros()) {
		t.Fatalf("ids %v, %d rows", ids, len(joined))
	}
	if last := reqs[2].GetColumns().GetPrices(); !slices.Equal(last.GetUnscaled(), []int64{int64(2 * MaxRows)}) || last.GetScale() != 2 {
		t.Errorf("last chunk %v", last)
	}
	fresh, _ := IngestRequests("", "series/X", "sources/s", cols)
	if len(fresh) != 3 || fresh[0].GetCommandId() == fresh[1].GetCommandId() || fresh[0].GetCommandId() == "" {
		t.Errorf("fresh ids %v %v", fresh[0].GetCommandId(), fresh[1].GetCommandId())
	}

	// Offsets one per row are cut with the rows; bars keep their volume column.
	est := time.FixedZone("EST", -5*3600)
	mixed := []time.Time{time.Date(2024, 1, 1, 0, 0, 0, 0, est), time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 3, 0, 0, 0, 0, est)}
	bars, err := BarColumns(mixed, &datav1.OhlcBarColumns{Open: Texts("1", "1", "1"), High: Texts("2", "2", "2"),
		Low: Texts("0", "0", "0"), Close: Texts("1", "1", "1"), Volume: Texts("5", "", "7")})
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := ChunkColumns(bars, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 2 || !slices.Equal(chunks[0].GetUtcOffsetMinutes(), []int32{-300, 0}) ||
		!slices.Equal(chunks[1].GetUtcOffsetMinutes(), []int32{-300}) ||
		!slices.Equal(chunks[1].GetBars().GetVolume().GetTexts(), []string{"7"}) {
		t.Errorf("chunks %v", chunks)
	}
	if _, err := ChunkColumns(bars, MaxRows+1); !errors.Is(err, ErrColumns) {
		t.Errorf("ChunkColumns(MaxRows+1) = %v", err)
	}
}

func TestFormatScaled(t *testing.T) {
	for _, c := range []struct {
		u     int64
		scale int32
		want  string
	}{{10125, 2, "101.25"}, {-5, 2, "-0.05"}, {0, 3, "0.000"}, {7, 0, "7"}, {-9223372036854775808, 18, "-9.223372036854775808"}} {
		if got := FormatScaled(c.u, c.scale); got != c.want {
			t.Errorf("FormatScaled(%d, %d) = %s; want %s", c.u, c.scale, got, c.want)
		}
	}
}

// officialColumns: rows first.. of a price series, row i with i%3 flags.
func officialColumns(first, rows int) *datav1.OfficialValueColumns {
	c := &datav1.OfficialValueColumns{Unit: "USD"}
	texts := []string{}
	for i := first; i < first+rows; i++ {
		c.SnapTimeMicros = append(c.SnapTimeMicros, int64(i)*86_400_000_000)
		c.Versions = append(c.Versions, 1)
		texts = append(texts, strconv.Itoa(i)+".5")
		c.QualityScores = append(c.QualityScores, 1)
		c.RecordTimeMicros = append(c.RecordTimeMicros, 5)
		c.RecordPositions = append(c.RecordPositions, uint64(10+i))
		c.SupersedePositions = append(c.SupersedePositions, 0)
		c.Methods = append(c.Methods, datav1.ValueMethod_VALUE_METHOD_PRIORITY)
		c.FlagCounts = append(c.FlagCounts, int32(i%3))
		c.Flags = append(c.Flags, []datav1.QualityRule{datav1.QualityRule_QUALITY_RULE_JUMP, datav1.QualityRule_QUALITY_RULE_STALE}[:i%3]...)
	}
	c.Values = &datav1.OfficialValueColumns_Prices{Prices: Texts(texts...)}
	return c
}

func TestValueColumnsDecodeFlagsAndCheckLengths(t *testing.T) {
	c, err := ColumnsOf(officialColumns(0, 4), 12)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Append(officialColumns(4, 2), 11); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 6 || c.Kind != "prices" || c.Unit != "USD" || c.Values[5] != "5.5" || c.ReadPosition != 11 {
		t.Fatalf("%+v", c)
	}
	jump, stale := datav1.QualityRule_QUALITY_RULE_JUMP, datav1.QualityRule_QUALITY_RULE_STALE
	want := [][]datav1.QualityRule{{}, {jump}, {jump, stale}, {}, {jump}, {jump, stale}}
	for i := range want {
		if !slices.Equal(c.Flags[i], want[i]) {
			t.Errorf("flags of row %d: %v; want %v", i, c.Flags[i], want[i])
		}
	}
	if !c.SnapTime(1).Equal(time.Unix(86_400, 0)) || c.SnapTime(1).Location() != time.UTC {
		t.Errorf("SnapTime(1) = %s", c.SnapTime(1))
	}

	short := officialColumns(0, 3)
	short.Methods = short.Methods[:2]
	miscounted := officialColumns(0, 3)
	miscounted.FlagCounts[0] = 5
	volumes := officialColumns(6, 1)
	volumes.Values = &datav1.OfficialValueColumns_Volumes{Volumes: Texts("1")}
	for name, bad := range map[string]*datav1.OfficialValueColumns{"short": short, "miscounted": miscounted, "volumes after prices": volumes} {
		if err := c.Append(bad, 0); !errors.Is(err, ErrColumns) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if c.Len() != 6 || len(c.Flags) != 6 {
		t.Errorf("a refused answer added rows: %d", c.Len())
	}

	bars, err := ColumnsOf(&datav1.OfficialValueColumns{
		SnapTimeMicros: []int64{0}, Versions: []int32{2}, QualityScores: []float64{1}, RecordTimeMicros: []int64{0},
		RecordPositions: []uint64{1}, SupersedePositions: []uint64{0}, Methods: []datav1.ValueMethod{4},
		Values: &datav1.OfficialValueColumns_Bars{Bars: &datav1.OhlcBarColumns{
			Open: Scaled(2, 1000), High: Texts("12"), Low: Texts("9"), Close: Texts("11")}},
	}, 0)
	if err != nil || bars.Kind != "bars" || bars.Bars.Open[0] != "10.00" || bars.Bars.Volume[0] != "" || len(bars.Flags[0]) != 0 {
		t.Errorf("bars: %+v, %v", bars, err)
	}
}

// columnsServer serves n points in the columnar view (the per-point one otherwise), at most
// perCall per call and page_size per message, and answers BulkIngest chunks, refusing those
// whose first price is 0.
type columnsServer struct {
	datav1.UnimplementedQueryServiceServer
	datav1.UnimplementedCommandServiceServer
	n, perCall int
	views      []datav1.ValueView
	chunks     []string
}

func (s *columnsServer) QueryRange(req *datav1.QueryRangeRequest, stream grpc.ServerStreamingServer[datav1.QueryRangeResponse]) error {
	s.views = append(s.views, req.GetView())
	start, _ := strconv.Atoi(req.GetPageToken())
	for sent := 0; start < s.n && sent < s.perCall; sent++ {
		stop := min(start+int(req.GetPageSize()), s.n)
		msg := &datav1.QueryRangeResponse{ReadPosition: uint64(100 - start)}
		if req.GetView() == datav1.ValueView_VALUE_VIEW_COLUMNS {
			msg.Columns = officialColumns(start, stop-start)
		}
		if stop < s.n {
			msg.NextPageToken = strconv.Itoa(stop)
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
		start = stop
	}
	return nil
}

func (s *columnsServer) BulkIngest(stream grpc.BidiStreamingServer[datav1.IngestPointsRequest, datav1.BulkIngestResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.chunks = append(s.chunks, req.GetCommandId())
		answer := &datav1.BulkIngestResponse{CommandId: req.GetCommandId()}
		if req.GetColumns().GetPrices().GetUnscaled()[0] == 0 {
			answer.Outcome = &datav1.BulkIngestResponse_Error{Error: status.New(codes.InvalidArgument, "columns.prices.unscaled[0]: must be positive").Proto()}
		} else {
			answer.Outcome = &datav1.BulkIngestResponse_Result{Result: &datav1.IngestPointsResponse{Accepted: int32(len(req.GetColumns().GetSnapTimeMicros()))}}
		}
		if err := stream.Send(answer); err != nil {
			return err
		}
	}
}

func TestColumnsOverGRPC(t *testing.T) {
	listener := bufconn.Listen(1 << 22)
	server := grpc.NewServer()
	fake := &columnsServer{n: 7, perCall: 2}
	datav1.RegisterQueryServiceServer(server, fake)
	datav1.RegisterCommandServiceServer(server, fake)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return listener.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()), WithUser("gopher"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()

	// 7 points, 2 a message, 2 messages a call: 2 calls, every one asking for columns.
	req := &datav1.QueryRangeRequest{Series: "series/X", PageSize: 2}
	cols, err := QueryRangeColumns(ctx, datav1.NewQueryServiceClient(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	if cols.Len() != 7 || cols.Values[6] != "6.5" || cols.ReadPosition != 94 || len(cols.Flags) != 7 {
		t.Fatalf("%d rows: %+v", cols.Len(), cols)
	}
	if !slices.Equal(fake.views, []datav1.ValueView{2, 2}) || req.GetView() != 0 {
		t.Errorf("views %v; the caller's request has %v", fake.views, req.GetView())
	}

	times := make([]time.Time, MaxRows+2)
	unscaled := make([]int64, MaxRows+2)
	for i := range times {
		times[i] = time.Date(2024, 3, 1, 0, i, 0, 0, time.UTC)
		unscaled[i] = int64(i) // the first is 0: that chunk is refused, the next goes on
	}
	points, err := PriceColumns(times, Scaled(2, unscaled...))
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := IngestRequests("load", "series/X", "sources/s", points)
	if err != nil {
		t.Fatal(err)
	}
	var answers []*datav1.BulkIngestResponse
	for answer, err := range BulkIngest(ctx, datav1.NewCommandServiceClient(conn), reqs) {
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, answer)
	}
	if len(answers) != 2 || answers[0].GetCommandId() != "load:0" || answers[1].GetResult().GetAccepted() != 2 {
		t.Fatalf("answers %v", answers)
	}
	if d := DetailsFromProto(answers[0].GetError()); d == nil || d.Code != codes.InvalidArgument {
		t.Errorf("refused chunk: %v", answers[0].GetError())
	}
}

// inOther is officialColumns(first, len(values)) with its values in `other`, the series' unit
// being EUR.
func inOther(first int, values ...*datav1.DataValue) *datav1.OfficialValueColumns {
	c := officialColumns(first, len(values))
	c.Values = &datav1.OfficialValueColumns_Other{Other: &datav1.DataValues{Values: values}}
	c.Unit = "EUR"
	return c
}

func inEUR(first, rows int) *datav1.OfficialValueColumns {
	c := officialColumns(first, rows)
	c.Unit = "EUR"
	return c
}

func priceIn(value, currency string) *datav1.DataValue {
	return &datav1.DataValue{Kind: &datav1.DataValue_Price{Price: &datav1.Price{Value: value, Currency: currency}}}
}

// describe is a DataValue in words: "price 0.5 USD", "volume 1 shares", "bar 1/2/0/1/".
func describe(values []*datav1.DataValue) []string {
	out := []string{}
	for _, v := range values {
		switch {
		case v.GetPrice() != nil:
			out = append(out, "price "+v.GetPrice().GetValue()+" "+v.GetPrice().GetCurrency())
		case v.GetVolume() != nil:
			out = append(out, "volume "+v.GetVolume().GetQuantity()+" "+v.GetVolume().GetUnit())
		case v.GetBar() != nil:
			b := v.GetBar()
			out = append(out, "bar "+strings.Join([]string{b.GetOpen(), b.GetHigh(), b.GetLow(), b.GetClose(), b.GetVolume()}, "/"))
		default:
			out = append(out, "?")
		}
	}
	return out
}

// checkAligned fails unless every column of c has its n rows.
func checkAligned(t *testing.T, c *ValueColumns, n int) {
	t.Helper()
	for name, got := range map[string]int{"snaps": c.Len(), "versions": len(c.Versions), "other": len(c.Other),
		"quality_scores": len(c.QualityScores), "record_time_micros": len(c.RecordTimeMicros),
		"record_positions": len(c.RecordPositions), "supersede_positions": len(c.SupersedePositions),
		"methods": len(c.Methods), "flags": len(c.Flags)} {
		if got != n {
			t.Errorf("%s: %d rows; want %d", name, got, n)
		}
	}
	if len(c.Values) != 0 || len(c.Bars.Open) != 0 {
		t.Errorf("typed columns left: %v %v", c.Values, c.Bars)
	}
}

func TestPricesAfterAPageInOtherBecomeOther(t *testing.T) {
	// A price series evolved USD -> EUR, page_size 2: the page holding a USD value comes in
	// `other`, the later ones in `prices` (EUR).
	c := &ValueColumns{}
	for _, page := range []*datav1.OfficialValueColumns{
		inOther(0, priceIn("0.5", "USD"), priceIn("1.5", "EUR")), inEUR(2, 2), inEUR(4, 1),
		{Values: &datav1.OfficialValueColumns_Prices{Prices: Texts()}, Unit: "EUR"}, // the end
	} {
		if err := c.Append(page, 0); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"price 0.5 USD", "price 1.5 EUR", "price 2.5 EUR", "price 3.5 EUR", "price 4.5 EUR"}
	if c.Kind != "other" || c.Unit != "EUR" || !slices.Equal(describe(c.Other), want) {
		t.Errorf("%s %s %v; want other EUR %v", c.Kind, c.Unit, describe(c.Other), want)
	}
	checkAligned(t, c, 5)
	if c.RecordPositions[4] != 14 || !slices.Equal(c.Flags[4], []datav1.QualityRule{datav1.QualityRule_QUALITY_RULE_JUMP}) {
		t.Errorf("row 4: %d %v", c.RecordPositions[4], c.Flags[4])
	}
}

func TestPricesBeforeAPageInOtherAreConverted(t *testing.T) {
	c, err := ColumnsOf(officialColumns(0, 2), 0) // USD, before the unit changed
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range []*datav1.OfficialValueColumns{inOther(2, priceIn("2.5", "USD"), priceIn("3.5", "EUR")), inEUR(4, 2)} {
		if err := c.Append(page, 0); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"price 0.5 USD", "price 1.5 USD", "price 2.5 USD", "price 3.5 EUR", "price 4.5 EUR", "price 5.5 EUR"}
	if c.Kind != "other" || c.Unit != "EUR" || !slices.Equal(describe(c.Other), want) {
		t.Errorf("%s %s %v; want other EUR %v", c.Kind, c.Unit, describe(c.Other), want)
	}
	checkAligned(t, c, 6)
	if c.SnapTimeMicros[5] != 5*86_400_000_000 {
		t.Errorf("snaps %v", c.SnapTimeMicros)
	}
}

func TestTypedPagesInTwoUnitsBecomeOther(t *testing.T) {
	c, err := ColumnsOf(officialColumns(0, 2), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Append(officialColumns(2, 1), 0); err != nil || c.Kind != "prices" || len(c.Values) != 3 {
		t.Fatalf("one unit: %s %v %v", c.Kind, c.Values, err)
	}
	if err := c.Append(inEUR(3, 2), 0); err != nil {
		t.Fatal(err)
	}
	want := []string{"price 0.5 USD", "price 1.5 USD", "price 2.5 USD", "price 3.5 EUR", "price 4.5 EUR"}
	if c.Kind != "other" || c.Unit != "EUR" || !slices.Equal(describe(c.Other), want) {
		t.Errorf("%s %s %v; want other EUR %v", c.Kind, c.Unit, describe(c.Other), want)
	}
	checkAligned(t, c, 5)

	// Volumes and bars likewise.
	shares, lots := officialColumns(0, 1), officialColumns(1, 1)
	shares.Values, shares.Unit = &datav1.OfficialValueColumns_Volumes{Volumes: Texts("7")}, "shares"
	lots.Values, lots.Unit = &datav1.OfficialValueColumns_Volumes{Volumes: Scaled(1, 15)}, "lots"
	volumes, err := ColumnsOf(shares, 0)
	if err == nil {
		err = volumes.Append(lots, 0)
	}
	if err != nil || !slices.Equal(describe(volumes.Other), []string{"volume 7 shares", "volume 1.5 lots"}) {
		t.Errorf("volumes: %v %v", describe(volumes.Other), err)
	}
	bar := officialColumns(0, 1)
	bar.Values = &datav1.OfficialValueColumns_Bars{Bars: &datav1.OhlcBarColumns{
		Open: Scaled(2, 1000), High: Texts("12"), Low: Texts("9"), Close: Texts("11")}}
	bars, err := ColumnsOf(bar, 0)
	if err == nil {
		err = bars.Append(inOther(1, &datav1.DataValue{Kind: &datav1.DataValue_Bar{Bar: &datav1.OhlcBar{Open: "1"}}}), 0)
	}
	if err != nil || bars.Kind != "other" || !slices.Equal(describe(bars.Other), []string{"bar 10.00/12/9/11/", "bar 1////"}) {
		t.Errorf("bars: %s %v %v", bars.Kind, describe(bars.Other), err)
	}
	checkAligned(t, bars, 2)
}

func TestPagesOfOneCaseAndUnitKeepTheirColumns(t *testing.T) {
	c := &ValueColumns{}
	for _, page := range []*datav1.OfficialValueColumns{
		{Values: &datav1.OfficialValueColumns_Other{Other: &datav1.DataValues{}}, Unit: "USD"}, // no rows
		officialColumns(0, 2), officialColumns(2, 2),
		{Values: &datav1.OfficialValueColumns_Prices{Prices: Texts()}, Unit: "EUR"}, // no rows
	} {
		if err := c.Append(page, 0); err != nil {
			t.Fatal(err)
		}
	}
	if c.Kind != "prices" || c.Unit != "USD" || len(c.Other) != 0 || !slices.Equal(c.Values, []string{"0.5", "1.5", "2.5", "3.5"}) {
		t.Errorf("%s %s %v %v", c.Kind, c.Unit, c.Values, c.Other)
	}
	// Volumes after prices stay malformed, even past a page in `other`.
	if err := c.Append(inOther(4, priceIn("4.5", "USD")), 0); err != nil {
		t.Fatal(err)
	}
	volumes := officialColumns(5, 1)
	volumes.Values = &datav1.OfficialValueColumns_Volumes{Volumes: Texts("1")}
	if err := c.Append(volumes, 0); !errors.Is(err, ErrColumns) || !strings.Contains(err.Error(), "volumes after prices") {
		t.Errorf("volumes after prices: %v", err)
	}
	checkAligned(t, c, 5)
}
