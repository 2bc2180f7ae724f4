package qis

import (
	"fmt"
	"time"
)

// snapLayout: RFC 3339 with at most 6 fraction digits (trailing zeros dropped) and the offset
// of the time's location ("Z" for UTC).
const snapLayout = "2006-01-02T15:04:05.999999Z07:00"

// FormatSnap writes t as a snap: RFC 3339 with t's own offset ("2024-03-15T16:00:00-04:00",
// "...Z" in UTC), at microsecond precision (what is below is truncated, as the service would).
// The offset is kept by the service as lineage, so pass times in the zone the value was
// observed in (t.In(loc)). It fails for years outside 1..9999 and offsets that are not whole
// minutes (local mean times of old dates), which RFC 3339 cannot write.
func FormatSnap(t time.Time) (string, error) {
	if y := t.Year(); y < 1 || y > 9999 {
		return "", fmt.Errorf("qis: snap year %d outside 1..9999", y)
	}
	if _, offset := t.Zone(); offset%60 != 0 {
		return "", fmt.Errorf("qis: snap offset %ds is not whole minutes", offset)
	}
	return t.Truncate(time.Microsecond).Format(snapLayout), nil
}

// ParseSnap reads an RFC 3339 snap, keeping its offset as the location of the time.
func ParseSnap(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("qis: not an RFC 3339 snap with offset: %w", err)
	}
	return t, nil
}
