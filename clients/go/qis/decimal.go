package qis

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// maxExponent: ParseDecimal refuses larger exponents (the bounds need at most 18 + 18 digits).
const maxExponent = 1000

// MaxDecimalPlaces is the most decimal places the service accepts in a decimal string, and
// decimals are bounded by |x| < 1e18 (see protos/qis/data/v1/values.proto).
const MaxDecimalPlaces = 18

var (
	// ErrNotDecimal: the string is not a finite decimal number.
	ErrNotDecimal = errors.New("qis: not a decimal number")
	// ErrDecimalBounds: the value has no exact decimal form within the service's bounds.
	ErrDecimalBounds = errors.New("qis: decimal out of bounds")

	decimalSyntax = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)
	decimalLimit  = new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil))
)

// ParseDecimal reads a decimal string as the service sends it ("101.25", "-0.5", "1E+3")
// into an exact rational. NaN, infinities, fractions ("1/3") and hexadecimal are refused.
func ParseDecimal(s string) (*big.Rat, error) {
	if !decimalSyntax.MatchString(s) {
		return nil, fmt.Errorf("%w: %q", ErrNotDecimal, s)
	}
	// An exponent far beyond the bounds would make big.Rat build a huge number for nothing.
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		if exp, err := strconv.Atoi(s[i+1:]); err != nil || exp > maxExponent || exp < -maxExponent {
			return nil, fmt.Errorf("%w: exponent of %q", ErrDecimalBounds, s)
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotDecimal, s)
	}
	return r, nil
}

// FormatDecimal writes r in plain decimal notation with as few decimal places as represent it
// exactly ("101.25", "-0.5", "1000"). It fails with ErrDecimalBounds when r has no finite
// decimal form (1/3), needs more than MaxDecimalPlaces places, or |r| >= 1e18: the service
// would refuse it, and rounding is the caller's decision, not this package's.
func FormatDecimal(r *big.Rat) (string, error) {
	if r == nil {
		return "", fmt.Errorf("%w: nil", ErrNotDecimal)
	}
	if new(big.Rat).Abs(r).Cmp(decimalLimit) >= 0 {
		return "", fmt.Errorf("%w: |%s| >= 1e18", ErrDecimalBounds, r.FloatString(0))
	}
	places, ok := decimalPlaces(r.Denom())
	if !ok || places > MaxDecimalPlaces {
		return "", fmt.Errorf("%w: %s has no exact decimal form with at most %d places",
			ErrDecimalBounds, r.RatString(), MaxDecimalPlaces)
	}
	return r.FloatString(places), nil
}

// decimalPlaces: the places a fraction with denominator d (> 0, in lowest terms) needs, and
// whether it has a finite decimal form at all (d = 2^a 5^b).
func decimalPlaces(d *big.Int) (int, bool) {
	rest := new(big.Int).Set(d)
	two, five, mod := big.NewInt(2), big.NewInt(5), new(big.Int)
	var twos, fives int
	for ; twos <= MaxDecimalPlaces+1; twos++ {
		if mod.Mod(rest, two).Sign() != 0 {
			break
		}
		rest.Quo(rest, two)
	}
	for ; fives <= MaxDecimalPlaces+1; fives++ {
		if mod.Mod(rest, five).Sign() != 0 {
			break
		}
		rest.Quo(rest, five)
	}
	if rest.Cmp(big.NewInt(1)) != 0 {
		return 0, false
	}
	return max(twos, fives), true
}
