// Quickstart: the qis-data services from Go. It registers a data source, defines a price
// series, ingests three daily closes, restates one, reads them back (latest, as known before the
// restatement, and the restated point's history page by page), follows them on a subscription,
// finds the restatement in the audit trail with a filter, ingests more closes in columns (one
// slice per field, over BulkIngest) and reads the range back in the columnar view (the same
// values as the per-point view), evolves the series under optimistic concurrency, and shows how
// refused requests are answered (error details decoded). Every
// command has a fixed command id, so running it again changes nothing (each answer says
// "duplicate").
//
//	.venv/bin/qis up                        # in another terminal
//	cd clients/go && go run ./examples/quickstart [-command ADDR] [-query ADDR] [-user NAME]
//
// The addresses default to $QIS_COMMAND_ADDRESS and $QIS_QUERY_ADDRESS (else the services'
// defaults), the user to $QIS_USER (else the login name).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	datav1 "qis-data/clients/go/gen/qis/data/v1"
	"qis-data/clients/go/qis"
)

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	commandAddr := flag.String("command", envOr("QIS_COMMAND_ADDRESS", "127.0.0.1:50051"), "command service address")
	queryAddr := flag.String("query", envOr("QIS_QUERY_ADDRESS", "127.0.0.1:50052"), "query service address")
	user := flag.String("user", qis.UserFromEnv(), "who you are, sent as x-qis-user")
	seriesID := flag.String("series", "GO.QUICKSTART", "id of the series to define")
	timeout := flag.Duration("timeout", 30*time.Second, "for the whole session")
	flag.Parse()
	log.SetFlags(0)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *commandAddr, *queryAddr, *user, *seriesID); err != nil {
		if d, ok := qis.Details(err); ok {
			log.Fatalf("quickstart: %s", d)
		}
		log.Fatalf("quickstart: %v", err)
	}
}

func run(ctx context.Context, commandAddr, queryAddr, user, seriesID string) error {
	// One connection per service; each call carries the user (qis.BearerToken{...} instead,
	// once the services take signed tokens).
	commandConn, err := qis.Dial(commandAddr, qis.User(user))
	if err != nil {
		return err
	}
	defer commandConn.Close()
	queryConn, err := qis.Dial(queryAddr, qis.User(user))
	if err != nil {
		return err
	}
	defer queryConn.Close()
	commands := datav1.NewCommandServiceClient(commandConn)
	queries := datav1.NewQueryServiceClient(queryConn)
	series := "series/" + seriesID
	id := func(what string) string { return "go-quickstart:" + seriesID + ":" + what }

	// 1. A source (in use: DataSource.disabled is false), and a daily USD price series fed by it.
	reg, err := commands.RegisterDataSource(ctx, &datav1.RegisterDataSourceRequest{
		CommandId: id("register-source"),
		SourceId:  "go-quickstart",
		Source:    &datav1.DataSource{Provider: "synthetic", Description: "Go quickstart"},
	})
	if err != nil {
		return fmt.Errorf("register source: %w", err)
	}
	fmt.Printf("registered source sources/go-quickstart at position %d (duplicate: %t)\n", reg.GetCommitPosition(), reg.GetDuplicate())
	def, err := commands.DefineSeries(ctx, &datav1.DefineSeriesRequest{
		CommandId: id("define"),
		SeriesId:  seriesID,
		Series: &datav1.Series{
			DataType:    datav1.DataType_DATA_TYPE_PRICE,
			Frequency:   datav1.Frequency_FREQUENCY_DAILY,
			Unit:        "USD",
			TimeZone:    "America/New_York",
			Sources:     []*datav1.SeriesSource{{Source: "sources/go-quickstart", Priority: 1}},
			Validation:  &datav1.ValidationRules{RequirePositive: true},
			Description: "Go quickstart closes",
		},
	})
	if err != nil {
		return fmt.Errorf("define series: %w", err)
	}
	fmt.Printf("defined %s at position %d (duplicate: %t)\n", series, def.GetCommitPosition(), def.GetDuplicate())

	// 2. Subscribe first, from the definition on: the values ingested below arrive on it.
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	sub, err := queries.Subscribe(subCtx, &datav1.SubscribeRequest{
		Series: []string{series},
		Start:  &datav1.SubscribeRequest_AfterPosition{AfterPosition: def.GetCommitPosition()},
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}

	// 3. Three closes at 16:00 New York time: qis.Point makes the snap_time (the instant, whole
	// microseconds) and the utc_offset (-04:00, kept as lineage) from the time and its zone.
	closes := []string{"5150.48", "5165.31", "5117.09"}
	var points []*datav1.DataPoint
	var snaps []time.Time
	for i, c := range closes {
		t := time.Date(2024, 3, 13+i, 16, 0, 0, 0, newYork)
		value, err := qis.ParseDecimal(c)
		if err != nil {
			return err
		}
		text, err := qis.FormatDecimal(value)
		if err != nil {
			return err
		}
		point, err := qis.Point(t, price(text))
		if err != nil {
			return err
		}
		points = append(points, point)
		snaps = append(snaps, t)
	}
	ingest, err := commands.IngestPoints(ctx, &datav1.IngestPointsRequest{
		CommandId: id("ingest"), Series: series, Source: "sources/go-quickstart", Points: points,
	})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	fmt.Printf("ingested %d points, %d published, at position %d (duplicate: %t)\n",
		len(points), ingest.GetPublished(), ingest.GetCommitPosition(), ingest.GetDuplicate())

	// 4. A correction of the last close: a new version; the first one stays in history.
	restate, err := commands.RestatePoint(ctx, &datav1.RestatePointRequest{
		CommandId: id("restate"), Series: series, SnapTime: points[2].GetSnapTime(),
		Value: price("5117.10"), Reason: "exchange correction", ReasonCode: "EXCHANGE_CORRECTION",
	})
	if err != nil {
		return fmt.Errorf("restate: %w", err)
	}
	fmt.Printf("restated %s at position %d (duplicate: %t)\n", formatSnap(points[2].GetSnapTime()), restate.GetCommitPosition(), restate.GetDuplicate())

	// 5. Read back: the latest values of the range [start_time, end_time) (paged across calls
	// by the iterator), waiting until the read model has the restatement (read-your-writes)...
	start, err := qis.SnapTimestamp(snaps[0])
	if err != nil {
		return err
	}
	end, err := qis.SnapTimestamp(snaps[2].AddDate(0, 0, 1))
	if err != nil {
		return err
	}
	fmt.Println("latest:")
	for v, err := range qis.QueryRange(ctx, queries, &datav1.QueryRangeRequest{
		Series: series, StartTime: start, EndTime: end, MinPosition: restate.GetCommitPosition(), PageSize: 2,
	}) {
		if err != nil {
			return fmt.Errorf("query range: %w", err)
		}
		printValue(v)
	}
	// ...and the same points as they were known right after the ingestion, before the
	// restatement: reproduces that past answer exactly.
	snapTimes, err := qis.SnapTimestamps(snaps...)
	if err != nil {
		return err
	}
	asOf, err := queries.GetValues(ctx, &datav1.GetValuesRequest{
		Series: series, SnapTimes: snapTimes,
		AsOf:        &datav1.GetValuesRequest_AsOfPosition{AsOfPosition: ingest.GetCommitPosition()},
		MinPosition: restate.GetCommitPosition(),
	})
	if err != nil {
		return fmt.Errorf("as-of values: %w", err)
	}
	fmt.Printf("as of position %d:\n", ingest.GetCommitPosition())
	for _, v := range asOf.GetValues() {
		printValue(v)
	}

	// 6. The restated point's history, one version or observation per page (GetPointHistory
	// reads every page): its versions, and what the source sent, at the offset it stated.
	history, err := qis.GetPointHistory(ctx, queries, &datav1.GetPointHistoryRequest{
		Series: series, SnapTime: points[2].GetSnapTime(), MinPosition: restate.GetCommitPosition(), PageSize: 1,
	})
	if err != nil {
		return fmt.Errorf("point history: %w", err)
	}
	fmt.Printf("history of %s:\n", formatSnap(points[2].GetSnapTime()))
	for _, v := range history.GetVersions() {
		fmt.Printf("  version v%d  %s  %s  recorded at position %d", v.GetVersion(),
			v.GetValue().GetPrice().GetValue(), qis.EnumName(v.GetMethod()), v.GetRecordPosition())
		if v.GetSupersedePosition() != 0 {
			fmt.Printf(", superseded at %d", v.GetSupersedePosition())
		}
		if v.GetReason() != "" {
			fmt.Printf(" (%s)", v.GetReason())
		}
		fmt.Println()
	}
	for _, o := range history.GetObservations() {
		at, err := qis.SnapIn(points[2].GetSnapTime(), o.GetUtcOffset())
		if err != nil {
			return err
		}
		fmt.Printf("  observed %s  %s  from %s at position %d\n", at.Format(time.RFC3339Nano),
			o.GetValue().GetPrice().GetValue(), o.GetSource(), o.GetRecordPosition())
	}

	// 7. The subscription has seen the ingested values (and the restatement).
	want := len(points) + 1
	for got := 0; got < want; {
		msg, err := sub.Recv()
		if err != nil {
			return fmt.Errorf("subscription: %w", err)
		}
		for _, v := range msg.GetValues() {
			fmt.Print("subscription received: ")
			printValue(v)
			got++
		}
	}
	stopSub()

	// 8. The audit trail of the series, filtered (AIP-160): who restated what, when.
	for e, err := range qis.ListAuditEntries(ctx, queries, &datav1.ListAuditEntriesRequest{
		Parent:      series,
		Filter:      qis.And("action = "+qis.Quote("DataRestated"), "user = "+qis.Quote(user)),
		MinPosition: restate.GetCommitPosition(),
	}) {
		if err != nil {
			return fmt.Errorf("audit entries: %w", err)
		}
		fmt.Printf("audit: %s %s %s by %s at position %d\n", e.GetAction(), e.GetResource(),
			formatSnap(e.GetSnapTime()), e.GetUser(), e.GetCommitPosition())
	}

	// 9. Columns: more closes as one slice of times and one of prices (decimal strings with
	// qis.Texts, or integers at a scale with qis.Scaled); the currency is the series' own.
	// qis.IngestRequests cuts them into requests of at most qis.MaxRows rows (one here),
	// qis.BulkIngest streams them and yields each chunk's answer.
	var later []time.Time
	for _, d := range []int{25, 26, 27} {
		later = append(later, time.Date(2024, 3, d, 16, 0, 0, 0, newYork))
	}
	more, err := qis.PriceColumns(later, qis.Scaled(2, 521819, 520358, 524849)) // 5218.19, ...
	if err != nil {
		return err
	}
	chunks, err := qis.IngestRequests(id("ingest-columns"), series, "sources/go-quickstart", more)
	if err != nil {
		return err
	}
	lastPosition := restate.GetCommitPosition()
	for answer, err := range qis.BulkIngest(ctx, commands, chunks) {
		if err != nil {
			return fmt.Errorf("bulk ingest: %w", err)
		}
		if answer.GetError() != nil {
			return fmt.Errorf("chunk %s refused: %s", answer.GetCommandId(), qis.DetailsFromProto(answer.GetError()))
		}
		r := answer.GetResult()
		fmt.Printf("chunk %s: ingested %d points in columns, %d published (duplicate: %t)\n",
			answer.GetCommandId(), r.GetAccepted(), r.GetPublished(), r.GetDuplicate())
		lastPosition = max(lastPosition, r.GetCommitPosition())
	}
	// The whole range in the columnar view (two values a message: it pages like the per-point
	// view), and the per-point view of the same range: the same values.
	whole := &datav1.QueryRangeRequest{Series: series, MinPosition: lastPosition, PageSize: 2}
	cols, err := qis.QueryRangeColumns(ctx, queries, whole)
	if err != nil {
		return fmt.Errorf("query range columns: %w", err)
	}
	var perPoint []*datav1.OfficialValue
	for v, err := range qis.QueryRange(ctx, queries, whole) {
		if err != nil {
			return fmt.Errorf("query range: %w", err)
		}
		perPoint = append(perPoint, v)
	}
	fmt.Println("columns:")
	for i := range cols.Len() {
		flags := make([]string, 0, len(cols.Flags[i]))
		for _, f := range cols.Flags[i] {
			flags = append(flags, qis.EnumName(f))
		}
		if len(flags) == 0 {
			flags = append(flags, "-")
		}
		fmt.Printf("  %s  %s %s  v%d  %s  flags %s\n", cols.SnapTime(i).In(newYork).Format(time.RFC3339Nano),
			cols.Values[i], cols.Unit, cols.Versions[i], qis.EnumName(cols.Methods[i]), strings.Join(flags, ","))
	}
	if err := sameValues(cols, perPoint); err != nil {
		return err
	}
	fmt.Printf("columnar read = per-point read: %d values\n", cols.Len())

	// 10. Evolve the series from schema version 1 (a fresh definition's): only the fields named
	// by the update mask change. The same evolution from a version that is no longer current
	// is refused: ABORTED, reason SCHEMA_VERSION_MISMATCH (read the series again, reapply).
	evolve := func(commandID string) (*datav1.CommandResponse, error) {
		return commands.EvolveSeriesSchema(ctx, &datav1.EvolveSeriesSchemaRequest{
			CommandId:             commandID,
			Series:                &datav1.Series{Name: series, Description: "Go quickstart closes, evolved"},
			Reason:                "describe the series better",
			UpdateMask:            &fieldmaskpb.FieldMask{Paths: []string{"description"}},
			ExpectedSchemaVersion: 1,
		})
	}
	evolved, err := evolve(id("evolve"))
	if err != nil {
		return fmt.Errorf("evolve: %w", err)
	}
	fmt.Printf("evolved %s at position %d (duplicate: %t)\n", series, evolved.GetCommitPosition(), evolved.GetDuplicate())
	_, err = evolve(id("evolve-again"))
	d, ok := qis.Details(err)
	if !ok || d.Code != codes.Aborted || d.Reason() != "SCHEMA_VERSION_MISMATCH" {
		return fmt.Errorf("expected ABORTED SCHEMA_VERSION_MISMATCH for a stale evolution, got %v", err)
	}
	_, retry := d.RetryDelay()
	fmt.Printf("stale evolution refused: %s, reason %s (retry as is: %t): %s\n", d.Code, d.Reason(), retry, d.Message)

	// 11. A malformed batch: refused whole, with every violation named by its field path.
	// qis.SnapOf refuses a snap finer than a microsecond (so does the service: two source
	// timestamps must never merge into one snap); built by hand, it reaches the service.
	day := func(d int) time.Time { return time.Date(2024, 3, 18+d, 16, 0, 0, 0, newYork) }
	fine := day(0).Add(500 * time.Nanosecond)
	if _, _, err := qis.SnapOf(fine); err != nil {
		fmt.Printf("refused before sending: %v\n", err)
	}
	_, err = commands.IngestPoints(ctx, &datav1.IngestPointsRequest{
		CommandId: id("malformed"), Series: series, Source: "sources/go-quickstart",
		Points: []*datav1.DataPoint{
			{SnapTime: timestamppb.New(fine), Value: price("5200.00")}, // finer than a microsecond
			{SnapTime: timestamppb.New(day(1)), Value: price("1.2.3")}, // not a decimal
			{SnapTime: timestamppb.New(day(2)), Value: price("5210.00"), // an offset of 90 s
				UtcOffset: durationpb.New(90 * time.Second)},
		},
	})
	d, ok = qis.Details(err)
	if !ok || d.Code != codes.InvalidArgument {
		return fmt.Errorf("expected INVALID_ARGUMENT for a malformed batch, got %v", err)
	}
	fmt.Printf("malformed batch refused: INVALID_ARGUMENT (reason %s), %d field violations:\n", d.Reason(), len(d.FieldViolations()))
	for _, v := range d.FieldViolations() {
		fmt.Printf("  %s: %s\n", v.GetField(), v.GetDescription())
	}
	if len(d.FieldViolations()) == 0 {
		return errors.New("INVALID_ARGUMENT without field violations")
	}
	return nil
}

// newYork: the series' market offset in March 2024 (time.LoadLocation("America/New_York") works
// too where the system has time zone data).
var newYork = time.FixedZone("EDT", -4*60*60)

func price(value string) *datav1.DataValue {
	return &datav1.DataValue{Kind: &datav1.DataValue_Price{Price: &datav1.Price{Value: value, Currency: "USD"}}}
}

// formatSnap: a snap_time as RFC 3339 at the market's offset (OfficialValue, AuditEntry and
// QualityIssue carry the instant only; SourceObservation also has the offset the source sent).
func formatSnap(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().In(newYork).Format(time.RFC3339Nano)
}

func printValue(v *datav1.OfficialValue) {
	text := v.GetValue().GetPrice().GetValue()
	// Arithmetic on values: exact, through big.Rat (never float64).
	double := "?"
	if r, err := qis.ParseDecimal(text); err == nil {
		if s, err := qis.FormatDecimal(new(big.Rat).Mul(r, big.NewRat(2, 1))); err == nil {
			double = s
		}
	}
	// Enums by name: method PRIORITY, MANUAL...; flags are the rules the value's inputs failed.
	flags := make([]string, 0, len(v.GetFlags()))
	for _, f := range v.GetFlags() {
		flags = append(flags, qis.EnumName(f))
	}
	if len(flags) == 0 {
		flags = append(flags, "-")
	}
	fmt.Printf("  %s  %s  v%d  %s  flags %s  (x2 = %s)\n", formatSnap(v.GetSnapTime()), text, v.GetVersion(),
		qis.EnumName(v.GetMethod()), strings.Join(flags, ","), double)
}

// sameValues: what both views carry of each value is the same, row for row.
func sameValues(cols *qis.ValueColumns, points []*datav1.OfficialValue) error {
	if cols.Len() != len(points) {
		return fmt.Errorf("%d values in columns, %d per point", cols.Len(), len(points))
	}
	for i, v := range points {
		same := cols.SnapTimeMicros[i] == v.GetSnapTime().AsTime().UnixMicro() &&
			cols.Versions[i] == v.GetVersion() &&
			cols.Values[i] == v.GetValue().GetPrice().GetValue() &&
			cols.Unit == v.GetValue().GetPrice().GetCurrency() &&
			cols.QualityScores[i] == v.GetQualityScore() &&
			cols.RecordTimeMicros[i] == v.GetRecordTime().AsTime().UnixMicro() &&
			cols.RecordPositions[i] == v.GetRecordPosition() &&
			cols.SupersedePositions[i] == v.GetSupersedePosition() &&
			cols.Methods[i] == v.GetMethod() &&
			slices.Equal(cols.Flags[i], v.GetFlags())
		if !same {
			return fmt.Errorf("row %d differs: columns %s %s v%d, per point %v", i,
				cols.SnapTime(i).Format(time.RFC3339Nano), cols.Values[i], cols.Versions[i], v)
		}
	}
	return nil
}
