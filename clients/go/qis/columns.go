package qis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	datav1 "qis-data/clients/go/gen/qis/data/v1"
)

// MaxRows is the most rows (points) of one request: one IngestPoints command, one BulkIngest
// chunk.
const MaxRows = 10_000

// MaxScale is the largest scale of a DecimalColumn of scaled integers.
const MaxScale = 18

var (
	// ErrColumns: columns that do not line up (lengths, flag counts, kinds), or a column the
	// service would refuse as a whole (a scale out of 0..18).
	ErrColumns = errors.New("qis: malformed columns")

	// |unscaled| below this at scale 0 (|x| < 1e18); at scale 1..18 every int64 is within it.
	scaledLimit int64 = 1_000_000_000_000_000_000
)

// Texts is a DecimalColumn of decimal strings ("101.25", "1E+3"), one per row, sent as written;
// "" for an absent value where the field is optional (an OHLC bar's volume). PriceColumns,
// VolumeColumns and BarColumns check them.
func Texts(texts ...string) *datav1.DecimalColumn {
	return &datav1.DecimalColumn{Texts: texts}
}

// Scaled is a DecimalColumn of integers at a scale: Scaled(2, 10125, 9950) is 101.25 and
// 99.50. They reach the service as integers, with no text to format or parse.
func Scaled(scale int32, unscaled ...int64) *datav1.DecimalColumn {
	return &datav1.DecimalColumn{Unscaled: unscaled, Scale: scale}
}

// SnapColumns is PointColumns.snap_time_micros and utc_offset_minutes of times, each checked as
// SnapOf checks a point's (years 1..9999 in UTC, whole microseconds, an offset of whole minutes
// within ±23:59: refused, not changed; a refusal names the row). The offsets are those of each
// time's own zone, collapsed: none when every row is UTC, one when every row has the same.
func SnapColumns(times []time.Time) (micros []int64, offsets []int32, err error) {
	micros = make([]int64, len(times))
	offsets = make([]int32, len(times))
	same := true
	for i, t := range times {
		offset, err := checkSnap(t)
		if err != nil {
			return nil, nil, fmt.Errorf("snaps[%d]: %w", i, err)
		}
		micros[i] = t.UnixMicro()
		offsets[i] = int32(offset / 60)
		same = same && offsets[i] == offsets[0]
	}
	switch {
	case len(times) == 0 || same && offsets[0] == 0:
		offsets = nil
	case same:
		offsets = offsets[:1]
	}
	return micros, offsets, nil
}

// checkColumn: rows values, each decimal a decimal string (or "" where optional), or integers
// at a scale within the service's bounds.
func checkColumn(name string, c *datav1.DecimalColumn, rows int, optional bool) error {
	if c == nil {
		return fmt.Errorf("%w: no %s column", ErrColumns, name)
	}
	if len(c.GetTexts()) > 0 && len(c.GetUnscaled()) > 0 {
		return fmt.Errorf("%w: %s has both texts and unscaled", ErrColumns, name)
	}
	if len(c.GetUnscaled()) > 0 {
		if n := len(c.GetUnscaled()); n != rows {
			return fmt.Errorf("%w: %s has %d rows, snaps %d", ErrColumns, name, n, rows)
		}
		if c.GetScale() < 0 || c.GetScale() > MaxScale {
			return fmt.Errorf("%w: %s.scale %d is not 0 to %d", ErrColumns, name, c.GetScale(), MaxScale)
		}
		if c.GetScale() == 0 {
			for i, u := range c.GetUnscaled() {
				if u >= scaledLimit || u <= -scaledLimit {
					return fmt.Errorf("%s.unscaled[%d]: %w: |%d| >= 1e18", name, i, ErrDecimalBounds, u)
				}
			}
		}
		return nil
	}
	if n := len(c.GetTexts()); n != rows {
		return fmt.Errorf("%w: %s has %d rows, snaps %d", ErrColumns, name, n, rows)
	}
	for i, s := range c.GetTexts() {
		if s == "" && optional {
			continue
		}
		if !decimalSyntax.MatchString(s) {
			return fmt.Errorf("%s.texts[%d]: %w: %q", name, i, ErrNotDecimal, s)
		}
	}
	return nil
}

func pointColumns(times []time.Time) (*datav1.PointColumns, error) {
	micros, offsets, err := SnapColumns(times)
	if err != nil {
		return nil, err
	}
	return &datav1.PointColumns{SnapTimeMicros: micros, UtcOffsetMinutes: offsets}, nil
}

// PriceColumns is the points of a price series in columns: the snaps of times (SnapColumns)
// and prices (Texts or Scaled), as long as times; the currency is the series' own. Decimal
// strings are checked for their syntax; bounds are the service's (it names the row). At most
// MaxRows rows go in one request: IngestRequests cuts longer columns into chunks.
//
//	cols, err := qis.PriceColumns(times, qis.Texts("5150.48", "5165.31"))
func PriceColumns(times []time.Time, prices *datav1.DecimalColumn) (*datav1.PointColumns, error) {
	if err := checkColumn("prices", prices, len(times), false); err != nil {
		return nil, err
	}
	cols, err := pointColumns(times)
	if err != nil {
		return nil, err
	}
	cols.Values = &datav1.PointColumns_Prices{Prices: prices}
	return cols, nil
}

// VolumeColumns is PriceColumns for a volume series (the unit is the series' own).
func VolumeColumns(times []time.Time, volumes *datav1.DecimalColumn) (*datav1.PointColumns, error) {
	if err := checkColumn("volumes", volumes, len(times), false); err != nil {
		return nil, err
	}
	cols, err := pointColumns(times)
	if err != nil {
		return nil, err
	}
	cols.Values = &datav1.PointColumns_Volumes{Volumes: volumes}
	return cols, nil
}

// BarColumns is PriceColumns for an OHLC bar series: open, high, low and close, and volume
// (nil when no bar has one; "" texts for the bars without one).
func BarColumns(times []time.Time, bars *datav1.OhlcBarColumns) (*datav1.PointColumns, error) {
	for _, c := range []struct {
		name string
		col  *datav1.DecimalColumn
	}{{"bars.open", bars.GetOpen()}, {"bars.high", bars.GetHigh()}, {"bars.low", bars.GetLow()}, {"bars.close", bars.GetClose()}} {
		if err := checkColumn(c.name, c.col, len(times), false); err != nil {
			return nil, err
		}
	}
	if bars.GetVolume() != nil {
		if err := checkColumn("bars.volume", bars.GetVolume(), len(times), true); err != nil {
			return nil, err
		}
	}
	cols, err := pointColumns(times)
	if err != nil {
		return nil, err
	}
	cols.Values = &datav1.PointColumns_Bars{Bars: bars}
	return cols, nil
}

func sliceDecimals(c *datav1.DecimalColumn, start, stop int) *datav1.DecimalColumn {
	if c == nil {
		return nil
	}
	if len(c.GetUnscaled()) > 0 {
		return &datav1.DecimalColumn{Unscaled: c.GetUnscaled()[start:stop:stop], Scale: c.GetScale()}
	}
	return &datav1.DecimalColumn{Texts: c.GetTexts()[start:stop:stop]}
}

// ChunkColumns cuts cols into runs of at most rows rows (1..MaxRows), in order; the runs share
// cols' arrays (nothing is copied). A single offset, or none, goes with every run.
func ChunkColumns(cols *datav1.PointColumns, rows int) ([]*datav1.PointColumns, error) {
	if rows < 1 || rows > MaxRows {
		return nil, fmt.Errorf("%w: %d rows per chunk is not 1 to %d", ErrColumns, rows, MaxRows)
	}
	total := len(cols.GetSnapTimeMicros())
	var chunks []*datav1.PointColumns
	for start := 0; start < total; start += rows {
		stop := min(start+rows, total)
		offsets := cols.GetUtcOffsetMinutes()
		if len(offsets) > 1 {
			offsets = offsets[start:stop:stop]
		}
		chunk := &datav1.PointColumns{SnapTimeMicros: cols.GetSnapTimeMicros()[start:stop:stop], UtcOffsetMinutes: offsets}
		switch v := cols.GetValues().(type) {
		case *datav1.PointColumns_Prices:
			chunk.Values = &datav1.PointColumns_Prices{Prices: sliceDecimals(v.Prices, start, stop)}
		case *datav1.PointColumns_Volumes:
			chunk.Values = &datav1.PointColumns_Volumes{Volumes: sliceDecimals(v.Volumes, start, stop)}
		case *datav1.PointColumns_Bars:
			chunk.Values = &datav1.PointColumns_Bars{Bars: &datav1.OhlcBarColumns{
				Open:   sliceDecimals(v.Bars.GetOpen(), start, stop),
				High:   sliceDecimals(v.Bars.GetHigh(), start, stop),
				Low:    sliceDecimals(v.Bars.GetLow(), start, stop),
				Close:  sliceDecimals(v.Bars.GetClose(), start, stop),
				Volume: sliceDecimals(v.Bars.GetVolume(), start, stop),
			}}
		}
		chunks = append(chunks, chunk)
	}
	return chunks, nil
}

// IngestRequests is cols as IngestPointsRequests of at most MaxRows rows, each one IngestPoints
// command or one BulkIngest chunk. Chunk i's command id is "{commandID}:{i}", so that a re-run
// of the same load resends the same chunks and each is answered as a duplicate; an empty
// commandID gives every chunk a fresh random id instead.
func IngestRequests(commandID, series, source string, cols *datav1.PointColumns) ([]*datav1.IngestPointsRequest, error) {
	chunks, err := ChunkColumns(cols, MaxRows)
	if err != nil {
		return nil, err
	}
	reqs := make([]*datav1.IngestPointsRequest, len(chunks))
	for i, chunk := range chunks {
		id := commandID + ":" + strconv.Itoa(i)
		if commandID == "" {
			id = rand.Text()
		}
		reqs[i] = &datav1.IngestPointsRequest{CommandId: id, Series: series, Source: source, Columns: chunk}
	}
	return reqs, nil
}

// BulkIngest sends reqs (IngestRequests' chunks) over one BulkIngest stream and yields each
// chunk's answer, in order, as the service commits or rejects it: a rejected chunk's
// GetError() is its status (DetailsFromProto decodes it), and the chunks after it go on. A
// failure of the stream itself is yielded once, with a nil answer, and ends the iteration;
// stopping early cancels the stream.
func BulkIngest(ctx context.Context, client datav1.CommandServiceClient, reqs []*datav1.IngestPointsRequest, opts ...grpc.CallOption) iter.Seq2[*datav1.BulkIngestResponse, error] {
	return func(yield func(*datav1.BulkIngestResponse, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := client.BulkIngest(ctx, opts...)
		if err != nil {
			yield(nil, err)
			return
		}
		go func() {
			// A failed Send means the stream has ended: Recv reports why.
			for _, req := range reqs {
				if stream.Send(req) != nil {
					return
				}
			}
			_ = stream.CloseSend()
		}()
		for {
			answer, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(answer, nil) {
				return
			}
		}
	}
}

// BarTexts is OHLC bars in columns of decimal strings; a volume is "" where unknown.
type BarTexts struct {
	Open, High, Low, Close, Volume []string
}

// ValueColumns is official values in columns, row i of each slice being one value: what
// QueryRangeColumns returns (every page put together), or ColumnsOf one answer.
type ValueColumns struct {
	SnapTimeMicros []int64 // OfficialValue.snap_time, µs since 1970-01-01T00:00:00Z (MicrosTime)
	Versions       []int32
	// Kind says where the values are: "prices" or "volumes" in Values (decimal strings as
	// published: ParseDecimal), "bars" in Bars, "other" (options chains, corporate actions) in
	// Other; "" while there is no row.
	//
	// Pages may differ in case: a page holding a value in another currency or unit than the
	// series' current one (published before a schema evolution changed the unit) carries its
	// values in `other`, the other pages in `prices`, `volumes` or `bars`; typed pages may also
	// state different units (the unit changed between two calls of a range). The typed columns
	// stay while every page with rows has the same case and unit. Once they differ, the rows
	// read so far and every later page become DataValues in Other and Kind becomes "other": a
	// price text and its page's unit make Price{Value, Currency: unit}, a volume
	// Volume{Quantity, Unit: unit}, a bar an OhlcBar; Other then holds what the per-point view
	// does, row for row, and Unit is the series' unit as the last page with rows stated it.
	// Prices after volumes (or bars) stay ErrColumns: a series' data type never changes.
	Kind   string
	Values []string
	Bars   BarTexts
	Other  []*datav1.DataValue
	// Unit is the currency (prices, bars) or unit (volumes) of every row of Values or Bars:
	// the series'.
	Unit               string
	QualityScores      []float64
	RecordTimeMicros   []int64
	RecordPositions    []uint64
	SupersedePositions []uint64 // 0 while current
	Methods            []datav1.ValueMethod
	Flags              [][]datav1.QualityRule // each row's, from flag_counts + flags
	// ReadPosition is the least of the answers' read positions: the whole reflects at least it.
	ReadPosition uint64
	typed        string // the typed case (prices, volumes, bars) of every typed page with rows
}

// Len is the number of rows.
func (c *ValueColumns) Len() int { return len(c.SnapTimeMicros) }

// SnapTime is row i's snap, in UTC.
func (c *ValueColumns) SnapTime(i int) time.Time { return MicrosTime(c.SnapTimeMicros[i]) }

// MicrosTime is a time of microseconds since 1970-01-01T00:00:00Z (a snap_time_micros or
// record_time_micros), in UTC.
func MicrosTime(micros int64) time.Time { return time.UnixMicro(micros).UTC() }

// ColumnsOf is one answer's columns (QueryRangeResponse.columns, GetValuesResponse.columns)
// as a ValueColumns.
func ColumnsOf(cols *datav1.OfficialValueColumns, readPosition uint64) (*ValueColumns, error) {
	c := &ValueColumns{}
	if err := c.Append(cols, readPosition); err != nil {
		return nil, err
	}
	return c, nil
}

// FormatScaled is the decimal string of unscaled × 10^-scale: FormatScaled(-5, 2) is "-0.05".
func FormatScaled(unscaled int64, scale int32) string {
	digits := strconv.FormatInt(unscaled, 10)
	sign := ""
	if unscaled < 0 {
		sign, digits = "-", digits[1:]
	}
	if scale <= 0 {
		return sign + digits
	}
	if pad := int(scale) + 1 - len(digits); pad > 0 {
		digits = strings.Repeat("0", pad) + digits
	}
	point := len(digits) - int(scale)
	return sign + digits[:point] + "." + digits[point:]
}

func texts(c *datav1.DecimalColumn) []string {
	if len(c.GetUnscaled()) == 0 {
		return c.GetTexts()
	}
	out := make([]string, len(c.GetUnscaled()))
	for i, u := range c.GetUnscaled() {
		out[i] = FormatScaled(u, c.GetScale())
	}
	return out
}

// dataValues is typed rows (a kind's decimal strings or bars, in unit) as the DataValues the
// per-point view carries.
func dataValues(kind, unit string, values []string, bars BarTexts) []*datav1.DataValue {
	var out []*datav1.DataValue
	switch kind {
	case "prices":
		for _, v := range values {
			out = append(out, &datav1.DataValue{Kind: &datav1.DataValue_Price{Price: &datav1.Price{Value: v, Currency: unit}}})
		}
	case "volumes":
		for _, v := range values {
			out = append(out, &datav1.DataValue{Kind: &datav1.DataValue_Volume{Volume: &datav1.Volume{Quantity: v, Unit: unit}}})
		}
	case "bars":
		for i := range bars.Open {
			out = append(out, &datav1.DataValue{Kind: &datav1.DataValue_Bar{Bar: &datav1.OhlcBar{
				Open: bars.Open[i], High: bars.High[i], Low: bars.Low[i], Close: bars.Close[i], Volume: bars.Volume[i]}}})
		}
	}
	return out
}

// structureValues are the term structures or surfaces of StructureColumns (row i owns the next
// NodeCounts[i] nodes; coordinates only for surfaces), as whole DataValues.
func structureValues(s *datav1.StructureColumns) ([]*datav1.DataValue, error) {
	tenors, coordinates, values := s.GetTenors(), s.GetCoordinates(), texts(s.GetValues())
	total := 0
	for _, n := range s.GetNodeCounts() {
		if n < 1 {
			return nil, fmt.Errorf("%w: a row without nodes", ErrColumns)
		}
		total += int(n)
	}
	if total != len(tenors) || len(values) != len(tenors) || (len(coordinates) != 0 && len(coordinates) != len(tenors)) {
		return nil, fmt.Errorf("%w: node_counts add up to %d, there are %d tenors, %d values, %d coordinates",
			ErrColumns, total, len(tenors), len(values), len(coordinates))
	}
	out := make([]*datav1.DataValue, 0, len(s.GetNodeCounts()))
	start := 0
	for _, n := range s.GetNodeCounts() {
		stop := start + int(n)
		if len(coordinates) == 0 {
			nodes := make([]*datav1.CurveNode, 0, n)
			for i := start; i < stop; i++ {
				nodes = append(nodes, &datav1.CurveNode{Tenor: tenors[i], Value: values[i]})
			}
			out = append(out, &datav1.DataValue{Kind: &datav1.DataValue_TermStructure{
				TermStructure: &datav1.TermStructure{Nodes: nodes}}})
		} else {
			nodes := make([]*datav1.SurfaceNode, 0, n)
			for i := start; i < stop; i++ {
				nodes = append(nodes, &datav1.SurfaceNode{Tenor: tenors[i], Coordinate: coordinates[i], Value: values[i]})
			}
			out = append(out, &datav1.DataValue{Kind: &datav1.DataValue_Surface{Surface: &datav1.Surface{Nodes: nodes}}})
		}
		start = stop
	}
	return out, nil
}

// Append adds the rows of one answer, after checking that its columns line up (ErrColumns
// otherwise, and nothing is added).
func (c *ValueColumns) Append(cols *datav1.OfficialValueColumns, readPosition uint64) error {
	rows := len(cols.GetSnapTimeMicros())
	var kind string
	var values []string
	var bars BarTexts
	var other []*datav1.DataValue
	lengths := map[string]int{
		"versions": len(cols.GetVersions()), "quality_scores": len(cols.GetQualityScores()),
		"record_time_micros": len(cols.GetRecordTimeMicros()), "record_positions": len(cols.GetRecordPositions()),
		"supersede_positions": len(cols.GetSupersedePositions()), "methods": len(cols.GetMethods()),
	}
	switch v := cols.GetValues().(type) {
	case *datav1.OfficialValueColumns_Prices:
		kind, values = "prices", texts(v.Prices)
		lengths[kind] = len(values)
	case *datav1.OfficialValueColumns_Volumes:
		kind, values = "volumes", texts(v.Volumes)
		lengths[kind] = len(values)
	case *datav1.OfficialValueColumns_Bars:
		kind = "bars"
		bars = BarTexts{Open: texts(v.Bars.GetOpen()), High: texts(v.Bars.GetHigh()), Low: texts(v.Bars.GetLow()),
			Close: texts(v.Bars.GetClose()), Volume: texts(v.Bars.GetVolume())}
		if len(bars.Volume) == 0 {
			bars.Volume = make([]string, rows) // no volume column: none known
		}
		for name, col := range map[string][]string{"open": bars.Open, "high": bars.High, "low": bars.Low, "close": bars.Close, "volume": bars.Volume} {
			lengths["bars."+name] = len(col)
		}
	case *datav1.OfficialValueColumns_Other:
		kind, other = "other", v.Other.GetValues()
		lengths[kind] = len(other)
	case *datav1.OfficialValueColumns_Structures:
		// Curves and surfaces, one entry per node: put back together into whole values, as
		// the per-point view carries them.
		structures, err := structureValues(v.Structures)
		if err != nil {
			return err
		}
		kind, other = "other", structures
		lengths[kind] = len(other)
	default:
		if rows > 0 {
			return fmt.Errorf("%w: %d rows without values", ErrColumns, rows)
		}
	}
	if rows > 0 && kind != "other" && c.typed != "" && kind != c.typed {
		return fmt.Errorf("%w: %s after %s", ErrColumns, kind, c.typed)
	}
	counts, flags := cols.GetFlagCounts(), cols.GetFlags()
	if len(counts) == 0 && len(flags) == 0 {
		counts = make([]int32, rows) // no row has a flag
	}
	lengths["flag_counts"] = len(counts)
	for name, n := range lengths {
		if n != rows {
			return fmt.Errorf("%w: %d snaps, %d %s", ErrColumns, rows, n, name)
		}
	}
	total := 0
	for _, n := range counts {
		if n < 0 {
			return fmt.Errorf("%w: a negative flag count", ErrColumns)
		}
		total += int(n)
	}
	if total != len(flags) {
		return fmt.Errorf("%w: flag_counts add up to %d, there are %d flags", ErrColumns, total, len(flags))
	}
	start := 0
	for _, n := range counts {
		stop := start + int(n)
		c.Flags = append(c.Flags, flags[start:stop:stop])
		start = stop
	}
	unit := cols.GetUnit()
	switch {
	case c.Len() == 0:
		// Nothing to line up with yet: the first page with rows sets the case and unit.
		if rows > 0 || kind != "" {
			c.Kind = kind
		}
		if rows > 0 || unit != "" {
			c.Unit = unit
		}
	case rows == 0:
		// An empty page (the end of a range) changes nothing.
	case c.Kind == "other" || kind == "other" || unit != c.Unit:
		if c.Kind != "other" {
			c.Other = append(c.Other, dataValues(c.Kind, c.Unit, c.Values, c.Bars)...)
			c.Values, c.Bars, c.Kind = nil, BarTexts{}, "other"
		}
		if unit != "" {
			c.Unit = unit
		}
	}
	if rows > 0 && kind != "other" {
		c.typed = kind
	}
	if c.Kind == "other" && kind != "other" {
		c.Other = append(c.Other, dataValues(kind, unit, values, bars)...)
	} else {
		c.Values = append(c.Values, values...)
		c.Bars.Open = append(c.Bars.Open, bars.Open...)
		c.Bars.High = append(c.Bars.High, bars.High...)
		c.Bars.Low = append(c.Bars.Low, bars.Low...)
		c.Bars.Close = append(c.Bars.Close, bars.Close...)
		c.Bars.Volume = append(c.Bars.Volume, bars.Volume...)
		c.Other = append(c.Other, other...)
	}
	c.SnapTimeMicros = append(c.SnapTimeMicros, cols.GetSnapTimeMicros()...)
	c.Versions = append(c.Versions, cols.GetVersions()...)
	c.QualityScores = append(c.QualityScores, cols.GetQualityScores()...)
	c.RecordTimeMicros = append(c.RecordTimeMicros, cols.GetRecordTimeMicros()...)
	c.RecordPositions = append(c.RecordPositions, cols.GetRecordPositions()...)
	c.SupersedePositions = append(c.SupersedePositions, cols.GetSupersedePositions()...)
	c.Methods = append(c.Methods, cols.GetMethods()...)
	if readPosition != 0 && (c.ReadPosition == 0 || readPosition < c.ReadPosition) {
		c.ReadPosition = readPosition
	}
	return nil
}

// QueryRangeColumns reads a whole range in the columnar view (view = VALUE_VIEW_COLUMNS: the
// same values, pages and tokens as the per-point view), following next_page_token across calls
// as QueryRangePages does, into one ValueColumns. req is not modified.
//
//	cols, err := qis.QueryRangeColumns(ctx, queries, &datav1.QueryRangeRequest{Series: "series/X"})
//	for i := range cols.Len() { fmt.Println(cols.SnapTime(i), cols.Values[i], cols.Versions[i]) }
func QueryRangeColumns(ctx context.Context, client datav1.QueryServiceClient, req *datav1.QueryRangeRequest, opts ...grpc.CallOption) (*ValueColumns, error) {
	columnar := proto.Clone(req).(*datav1.QueryRangeRequest)
	columnar.View = datav1.ValueView_VALUE_VIEW_COLUMNS
	all := &ValueColumns{}
	for msg, err := range QueryRangePages(ctx, client, columnar, opts...) {
		if err != nil {
			return nil, err
		}
		if err := all.Append(msg.GetColumns(), msg.GetReadPosition()); err != nil {
			return nil, err
		}
	}
	return all, nil
}
