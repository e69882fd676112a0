package store

import (
	"database/sql"
	"fmt"
	"time"
)

// TimeLayout is how every time column is stored: RFC 3339 in UTC with as
// many fractional digits as needed, so that text order is time order within
// a second and values survive a round trip exactly.
const TimeLayout = time.RFC3339Nano

// maxTimeText bounds what ParseTime accepts: a stored time is at most 35
// bytes, and an error quotes the value.
const maxTimeText = 64

// FormatTime is the stored form of t.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// FormatNullTime is FormatTime, or NULL for the zero time.
func FormatNullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return FormatTime(t)
}

// ParseTime parses the value of column in table, where every time column
// is read: a value that is not a stored time is an error naming the table,
// the column and the value, never a zero time.
func ParseTime(table, column, value string) (time.Time, error) {
	if len(value) > maxTimeText {
		return time.Time{}, fmt.Errorf("%s.%s: time %.64q... is longer than %d bytes", table, column, value, maxTimeText)
	}
	t, err := time.Parse(TimeLayout, value)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s.%s: time %q is not RFC 3339: %w", table, column, value, err)
	}
	return t.UTC(), nil
}

// ParseNullTime is ParseTime for a nullable column: NULL is the zero time.
func ParseNullTime(table, column string, v sql.NullString) (time.Time, error) {
	if !v.Valid {
		return time.Time{}, nil
	}
	return ParseTime(table, column, v.String)
}
