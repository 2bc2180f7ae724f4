package qis

import (
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The filters of ListQualityIssues and ListAuditEntries are a subset of AIP-160: comparisons
// `field op value` joined by AND, where a value is a double-quoted string (resource names,
// users, actions, and RFC 3339 timestamps) or the bare name of an enum value without its
// prefix (`OPEN`, `ERROR`, `JUMP`). The helpers below write such values; which fields and
// operators each call accepts is in the request's documentation. For example:
//
//	at, _ := qis.QuoteTime(cutoff)
//	filter := qis.And(
//		"status = "+qis.EnumName(datav1.QualityIssueStatus_QUALITY_ISSUE_STATUS_OPEN),
//		"severity = "+qis.EnumName(datav1.Severity_SEVERITY_ERROR),
//		"raise_time < "+at,
//	) // status = OPEN AND severity = ERROR AND raise_time < "2024-03-01T00:00:00Z"

// Quote writes s as a filter string: in double quotes, with `"` and `\` escaped by a
// backslash.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// QuoteTime writes t as a filter timestamp: quoted RFC 3339 with t's own offset and at most
// six fraction digits ("2024-03-01T00:00:00Z"). It refuses, as SnapTimestamp does, an instant
// outside years 1..9999 in UTC or finer than a microsecond (the service compares at microsecond
// precision and would not read more digits), and, as SnapOf does, an offset that RFC 3339
// cannot write (not whole minutes).
func QuoteTime(t time.Time) (string, error) {
	if _, _, err := SnapOf(t); err != nil {
		return "", err
	}
	return Quote(t.Format("2006-01-02T15:04:05.999999Z07:00")), nil
}

// And joins filter terms with " AND ", leaving out empty ones.
func And(terms ...string) string {
	kept := make([]string, 0, len(terms))
	for _, t := range terms {
		if t = strings.TrimSpace(t); t != "" {
			kept = append(kept, t)
		}
	}
	return strings.Join(kept, " AND ")
}

// EnumName is the name of an enum value without its enum's prefix, as filters write it and
// as it reads best in output: "OPEN" for QUALITY_ISSUE_STATUS_OPEN, "JUMP" for
// QUALITY_RULE_JUMP, "PRIORITY" for VALUE_METHOD_PRIORITY. A number this client's generated
// code does not know (a rule added to the service later) is written as the number: clients
// must accept such values.
func EnumName(e protoreflect.Enum) string {
	desc := e.Descriptor()
	value := desc.Values().ByNumber(e.Number())
	if value == nil {
		return strconv.Itoa(int(e.Number()))
	}
	return strings.TrimPrefix(string(value.Name()), enumPrefix(desc))
}

// enumPrefix: what precedes UNSPECIFIED in the name of the enum's zero value
// ("QUALITY_RULE_"), or "" when the enum has no such value.
func enumPrefix(desc protoreflect.EnumDescriptor) string {
	if zero := desc.Values().ByNumber(0); zero != nil {
		if prefix, ok := strings.CutSuffix(string(zero.Name()), "UNSPECIFIED"); ok {
			return prefix
		}
	}
	return ""
}
