// Quickstart: the qis-data services from Go. It registers a data source, defines a price
// series, ingests three daily closes, reads them back (latest, then as known before a
// restatement), follows them on a subscription, and shows how a malformed request is refused.
// Every command has a fixed command id, so running it again changes nothing (each answer says
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
	"time"

	"google.golang.org/grpc/codes"
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

	// 1. A source, and a daily USD price series fed by it.
	reg, err := commands.RegisterDataSource(ctx, &datav1.RegisterDataSourceRequest{
		CommandId: id("register-source"),
		SourceId:  "go-quickstart",
		Source:    &datav1.DataSource{Provider: "synthetic", Description: "Go quickstart", Enabled: true},
	})
	if err != nil {
		return fmt.Errorf("register source: %w", err)
	}
	fmt.Printf("registered source sources/go-quickstart at position %d (duplicate: %t)\n", reg.GetCommitPosition(), reg.GetDuplicate())
	def, err := commands.DefineSeries(ctx, &datav1.DefineSeriesRequest{
		CommandId: id("define"),
		SeriesId:  seriesID,
		Series: &datav1.Series{
			DataType:   datav1.DataType_DATA_TYPE_PRICE,
			Frequency:  datav1.Frequency_FREQUENCY_DAILY,
			Unit:       "USD",
			TimeZone:   "America/New_York",
			Sources:    []*datav1.SeriesSource{{Source: "sources/go-quickstart", Priority: 1}},
			Validation: &datav1.ValidationRules{RequirePositive: true},
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

	// 3. Three closes, snaps with the New York offset, values as exact decimals.
	closes := []string{"5150.48", "5165.31", "5117.09"}
	var points []*datav1.DataPoint
	var snaps []*timestamppb.Timestamp
	for i, c := range closes {
		t := time.Date(2024, 3, 13+i, 16, 0, 0, 0, newYork)
		snap, err := qis.FormatSnap(t)
		if err != nil {
			return err
		}
		value, err := qis.ParseDecimal(c)
		if err != nil {
			return err
		}
		text, err := qis.FormatDecimal(value)
		if err != nil {
			return err
		}
		points = append(points, &datav1.DataPoint{Snap: snap, Value: price(text)})
		snaps = append(snaps, timestamppb.New(t))
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
		CommandId: id("restate"), Series: series, Snap: points[2].GetSnap(),
		Value: price("5117.10"), Reason: "exchange correction", ReasonCode: "EXCHANGE_CORRECTION",
	})
	if err != nil {
		return fmt.Errorf("restate: %w", err)
	}
	fmt.Printf("restated %s at position %d (duplicate: %t)\n", points[2].GetSnap(), restate.GetCommitPosition(), restate.GetDuplicate())

	// 5. Read back: the latest values of the whole range (paged across calls by the iterator),
	// waiting until the read model has the restatement (read-your-writes)...
	fmt.Println("latest:")
	for v, err := range qis.QueryRange(ctx, queries, &datav1.QueryRangeRequest{
		Series: series, MinPosition: restate.GetCommitPosition(), PageSize: 2,
	}) {
		if err != nil {
			return fmt.Errorf("query range: %w", err)
		}
		printValue(v)
	}
	// ...and the same points as they were known right after the ingestion, before the
	// restatement: reproduces that past answer exactly.
	asOf, err := queries.GetValues(ctx, &datav1.GetValuesRequest{
		Series: series, Snaps: snaps,
		AsOf:        &datav1.GetValuesRequest_AtPosition{AtPosition: ingest.GetCommitPosition()},
		MinPosition: restate.GetCommitPosition(),
	})
	if err != nil {
		return fmt.Errorf("as-of values: %w", err)
	}
	fmt.Printf("as of position %d:\n", ingest.GetCommitPosition())
	for _, v := range asOf.GetValues() {
		printValue(v)
	}

	// 6. The subscription has seen the ingested values (and the restatement).
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

	// 7. A malformed batch: refused whole, with every violation named by its field path.
	_, err = commands.IngestPoints(ctx, &datav1.IngestPointsRequest{
		CommandId: id("malformed"), Series: series, Source: "sources/go-quickstart",
		Points: []*datav1.DataPoint{
			{Snap: "2024-03-18T16:00:00", Value: price("5200.00")}, // no offset
			{Snap: "2024-03-19T16:00:00-04:00", Value: price("1.2.3")},
		},
	})
	d, ok := qis.Details(err)
	if !ok || d.Code != codes.InvalidArgument {
		return fmt.Errorf("expected INVALID_ARGUMENT for a malformed batch, got %v", err)
	}
	fmt.Printf("malformed batch refused: INVALID_ARGUMENT, %d field violations:\n", len(d.FieldViolations()))
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

func printValue(v *datav1.OfficialValue) {
	text := v.GetValue().GetPrice().GetValue()
	// Arithmetic on values: exact, through big.Rat (never float64).
	double := "?"
	if r, err := qis.ParseDecimal(text); err == nil {
		if s, err := qis.FormatDecimal(new(big.Rat).Mul(r, big.NewRat(2, 1))); err == nil {
			double = s
		}
	}
	// Timestamps come back in UTC; shown at the market's offset.
	snap, _ := qis.FormatSnap(v.GetSnap().AsTime().In(newYork))
	fmt.Printf("  %s  %s  v%d  (x2 = %s)\n", snap, text, v.GetVersion(), double)
}
