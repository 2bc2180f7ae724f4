package qis

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	datav1 "qis-data/clients/go/gen/qis/data/v1"
)

// MaxUTCOffset is the largest UTC offset a snap may carry, either way: 23:59, as RFC 3339
// offsets.
const MaxUTCOffset = 23*time.Hour + 59*time.Minute

var (
	// ErrSnapRange: the instant is outside 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z.
	ErrSnapRange = errors.New("qis: snap outside 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z")
	// ErrSnapPrecision: the instant has a fraction finer than a microsecond.
	ErrSnapPrecision = errors.New("qis: snap finer than a microsecond")
	// ErrUTCOffset: the offset is not whole minutes within ±23:59.
	ErrUTCOffset = errors.New("qis: UTC offset not whole minutes within ±23:59")

	minInstant = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxInstant = time.Date(9999, 12, 31, 23, 59, 59, 999_999_000, time.UTC)
)

// SnapOf is a snap as a DataPoint carries it: snapTime, the instant t (DataPoint.snap_time),
// and utcOffset, the offset of t's own location at that instant (DataPoint.utc_offset, kept by
// the service as lineage: which instant the snap is never depends on it). Pass times in the
// zone the value was observed in, t.In(loc); a time in time.UTC gives a zero offset.
//
// SnapOf refuses what the service would refuse, rather than changing it:
//   - an instant outside years 1..9999 in UTC (ErrSnapRange);
//   - a fraction finer than a microsecond (ErrSnapPrecision): the service stores snaps at
//     microsecond precision and refuses a finer one, so that two distinct source timestamps
//     never merge into one snap. Times read from the clock (time.Now) carry nanoseconds: call
//     t.Truncate(time.Microsecond) first when truncating is what you mean;
//   - an offset that is not whole minutes within ±23:59 (ErrUTCOffset), such as the local mean
//     time of an old date in a time zone database location.
func SnapOf(t time.Time) (snapTime *timestamppb.Timestamp, utcOffset *durationpb.Duration, err error) {
	offset, err := checkSnap(t)
	if err != nil {
		return nil, nil, err
	}
	return timestamppb.New(t), durationpb.New(time.Duration(offset) * time.Second), nil
}

// checkSnap: the instant and zone offset of t as SnapOf refuses them, and the offset in
// seconds (a whole number of minutes).
func checkSnap(t time.Time) (offset int, err error) {
	if err := checkInstant(t); err != nil {
		return 0, err
	}
	_, offset = t.Zone()
	off := time.Duration(offset) * time.Second
	if offset%60 != 0 || off > MaxUTCOffset || off < -MaxUTCOffset {
		return 0, fmt.Errorf("%w: %s has offset %ds", ErrUTCOffset, t.Format(time.RFC3339Nano), offset)
	}
	return offset, nil
}

// checkInstant: years 1..9999 in UTC, whole microseconds.
func checkInstant(t time.Time) error {
	if t.Before(minInstant) || t.After(maxInstant) {
		return fmt.Errorf("%w: %s", ErrSnapRange, t.Format(time.RFC3339Nano))
	}
	if t.Nanosecond()%1000 != 0 {
		return fmt.Errorf("%w: %s (t.Truncate(time.Microsecond) drops the rest)",
			ErrSnapPrecision, t.Format(time.RFC3339Nano))
	}
	return nil
}

// SnapTimestamp is the snap_time of t alone, for the requests that name a point without an
// offset (RestatePointRequest.snap_time, PublishPointsRequest.snap_times,
// GetValuesRequest.snap_times, GetPointHistoryRequest.snap_time). It refuses an instant outside
// years 1..9999 in UTC (ErrSnapRange) or finer than a microsecond (ErrSnapPrecision), as
// SnapOf does.
func SnapTimestamp(t time.Time) (*timestamppb.Timestamp, error) {
	if err := checkInstant(t); err != nil {
		return nil, err
	}
	return timestamppb.New(t), nil
}

// SnapTimestamps is SnapTimestamp of each time, in order; the first refusal names its index.
func SnapTimestamps(times ...time.Time) ([]*timestamppb.Timestamp, error) {
	out := make([]*timestamppb.Timestamp, len(times))
	for i, t := range times {
		ts, err := SnapTimestamp(t)
		if err != nil {
			return nil, fmt.Errorf("snap %d: %w", i, err)
		}
		out[i] = ts
	}
	return out, nil
}

// Point is a DataPoint of value at t, its snap_time and utc_offset from SnapOf(t).
func Point(t time.Time, value *datav1.DataValue) (*datav1.DataPoint, error) {
	snapTime, utcOffset, err := SnapOf(t)
	if err != nil {
		return nil, err
	}
	return &datav1.DataPoint{SnapTime: snapTime, UtcOffset: utcOffset, Value: value}, nil
}

// SnapIn is the time of a snap_time as seen at a utc_offset (of a DataPoint or a
// SourceObservation), in a fixed zone of that offset: SnapOf's inverse. A nil offset is UTC
// (an unset utc_offset). It fails for a missing or invalid timestamp or offset.
func SnapIn(snapTime *timestamppb.Timestamp, utcOffset *durationpb.Duration) (time.Time, error) {
	if snapTime == nil {
		return time.Time{}, errors.New("qis: no snap_time")
	}
	if err := snapTime.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("qis: snap_time: %w", err)
	}
	t := snapTime.AsTime()
	if utcOffset == nil {
		return t, nil
	}
	if err := utcOffset.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("qis: utc_offset: %w", err)
	}
	off := utcOffset.AsDuration()
	if off%time.Minute != 0 || off > MaxUTCOffset || off < -MaxUTCOffset {
		return time.Time{}, fmt.Errorf("%w: %s", ErrUTCOffset, off)
	}
	if off == 0 {
		return t, nil
	}
	return t.In(time.FixedZone(formatOffset(off), int(off/time.Second))), nil
}

// formatOffset: "-04:00", the name of a fixed zone.
func formatOffset(off time.Duration) string {
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Sprintf("%c%02d:%02d", sign, int(off/time.Hour), int(off%time.Hour/time.Minute))
}
