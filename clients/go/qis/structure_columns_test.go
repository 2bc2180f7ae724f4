package qis

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	datav1 "qis-data/clients/go/gen/qis/data/v1"
)

func inStructures(first int, s *datav1.StructureColumns) *datav1.OfficialValueColumns {
	c := officialColumns(first, len(s.GetNodeCounts()))
	c.Values = &datav1.OfficialValueColumns_Structures{Structures: s}
	return c
}

func TestStructureColumnsBecomeWholeValues(t *testing.T) {
	curves := &datav1.StructureColumns{
		NodeCounts: []int32{2, 1},
		Tenors:     []string{"P1M", "P1Y", "P3M"},
		Values:     &datav1.DecimalColumn{Texts: []string{"4.01", "5E-7", "4.1"}},
	}
	surfaces := &datav1.StructureColumns{
		NodeCounts:  []int32{2},
		Tenors:      []string{"P1M", "P1M"},
		Coordinates: []string{"0.9", "1.1"},
		Values:      &datav1.DecimalColumn{Texts: []string{"0.25", "0.24"}},
	}
	var c ValueColumns
	if err := c.Append(inStructures(0, curves), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Append(inStructures(2, surfaces), 0); err != nil {
		t.Fatal(err)
	}
	curve := func(nodes ...*datav1.CurveNode) *datav1.DataValue {
		return &datav1.DataValue{Kind: &datav1.DataValue_TermStructure{TermStructure: &datav1.TermStructure{Nodes: nodes}}}
	}
	want := []*datav1.DataValue{
		curve(&datav1.CurveNode{Tenor: "P1M", Value: "4.01"}, &datav1.CurveNode{Tenor: "P1Y", Value: "5E-7"}),
		curve(&datav1.CurveNode{Tenor: "P3M", Value: "4.1"}),
		{Kind: &datav1.DataValue_Surface{Surface: &datav1.Surface{Nodes: []*datav1.SurfaceNode{
			{Tenor: "P1M", Coordinate: "0.9", Value: "0.25"}, {Tenor: "P1M", Coordinate: "1.1", Value: "0.24"}}}}},
	}
	if c.Kind != "other" || c.Len() != 3 || len(c.Other) != len(want) {
		t.Fatalf("kind %q, %d rows, %d values", c.Kind, c.Len(), len(c.Other))
	}
	for i := range want {
		if !proto.Equal(c.Other[i], want[i]) {
			t.Errorf("row %d: %v, want %v", i, c.Other[i], want[i])
		}
	}
}

func TestStructureColumnsThatDoNotLineUpAreRefused(t *testing.T) {
	for _, s := range []*datav1.StructureColumns{
		{NodeCounts: []int32{2}, Tenors: []string{"P1M"}, Values: &datav1.DecimalColumn{Texts: []string{"1"}}},
		{NodeCounts: []int32{0}, Values: &datav1.DecimalColumn{}},
		{NodeCounts: []int32{1}, Tenors: []string{"P1M"}, Coordinates: []string{"1", "2"}, Values: &datav1.DecimalColumn{Texts: []string{"1"}}},
	} {
		var c ValueColumns
		if err := c.Append(inStructures(0, s), 0); !errors.Is(err, ErrColumns) || c.Len() != 0 {
			t.Errorf("%v: %v, %d rows", s, err, c.Len())
		}
	}
}
