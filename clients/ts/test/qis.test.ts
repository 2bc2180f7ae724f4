/**
 * Unit tests of src/qis.ts, without a service: `npm test` (node:test through tsx). The columnar
 * helpers: Date[] and decimal strings in, PointColumns out (the point helpers' snap and offset
 * rules), cut into requests of at most 10,000 rows; OfficialValueColumns back into arrays, flags
 * per row, pages put together.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";
import { DurationSchema, TimestampSchema, anyPack, durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "../src/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../src/gen/google/rpc/status_pb.js";
import {
  BulkIngestResponseSchema,
  DataType,
  DataValueSchema,
  DataValuesSchema,
  DecimalColumnSchema,
  StructureColumnsSchema,
  GetPointHistoryResponseSchema,
  ListQualityIssuesResponseSchema,
  MAX_ROWS,
  OfficialValueColumnsSchema,
  OhlcBarColumnsSchema,
  QisError,
  QualityIssueStatus,
  QualityRule,
  QueryRangeResponseSchema,
  Severity,
  ValueColumns,
  ValueMethod,
  ValueView,
  and,
  barColumns,
  bulkIngest,
  chunkColumns,
  decimalColumn,
  enumName,
  formatScaled,
  formatSnap,
  getPointHistory,
  ingestRequests,
  listQualityIssues,
  microsDate,
  microsTimestamp,
  pages,
  point,
  price,
  priceColumns,
  queryRangeColumns,
  quote,
  quoteTime,
  snapColumns,
  snapOf,
  snapTime,
  volumeColumns,
} from "../src/qis.js";
import type {
  BulkIngestResponse,
  CommandService,
  DataValue,
  GetPointHistoryRequest,
  GetPointHistoryResponse,
  ListQualityIssuesRequest,
  IngestPointsRequest,
  ListQualityIssuesResponse,
  OfficialValueColumns,
  QueryRangeRequest,
  QueryRangeResponse,
  QueryService,
} from "../src/qis.js";

describe("snaps", () => {
  it("makes snap_time and utc_offset from a Date and an offset in minutes", () => {
    const { snapTime: ts, utcOffset } = snapOf(new Date("2024-03-01T21:00:00.123Z"), -300);
    assert.equal(ts.seconds, BigInt(Date.parse("2024-03-01T21:00:00Z") / 1000));
    assert.equal(ts.nanos, 123_000_000);
    assert.equal(utcOffset.seconds, -18_000n);
    assert.equal(utcOffset.nanos, 0);
    assert.equal(snapOf(new Date(0)).utcOffset.seconds, 0n);
    assert.equal(snapOf(new Date(0), 23 * 60 + 59).utcOffset.seconds, 86_340n);
  });

  it("refuses what the service refuses", () => {
    for (const offset of [0.5, 24 * 60, -24 * 60, Number.NaN]) {
      assert.throws(() => snapOf(new Date(0), offset), RangeError, String(offset));
    }
    assert.throws(() => snapOf(new Date("0000-12-31T23:59:59.999Z")), /out of range/);
    assert.throws(() => snapOf(new Date("+010000-01-01T00:00:00Z")), /out of range/);
    assert.throws(() => snapOf(new Date(Number.NaN)), /invalid Date/);
    assert.doesNotThrow(() => snapOf(new Date("0001-01-01T00:00:00Z")));
    assert.doesNotThrow(() => snapTime(new Date("9999-12-31T23:59:59.999Z")));
  });

  it("builds a DataPoint", () => {
    const p = point(new Date("2024-03-01T21:00:00Z"), price("5137.08"), -300);
    assert.equal(p.$typeName, "qis.data.v1.DataPoint");
    assert.equal(p.utcOffset?.seconds, -18_000n);
    assert.equal(p.value?.kind.case, "price");
  });

  it("formats a snap at an offset, exact to the microsecond", () => {
    const ts = create(TimestampSchema, {
      seconds: BigInt(Date.parse("2024-03-01T21:00:00Z") / 1000),
      nanos: 123_456_000,
    });
    assert.equal(formatSnap(ts), "2024-03-01T21:00:00.123456Z");
    assert.equal(formatSnap(ts, -300), "2024-03-01T16:00:00.123456-05:00");
    assert.equal(
      formatSnap(ts, create(DurationSchema, { seconds: 19_800n })),
      "2024-03-02T02:30:00.123456+05:30",
    );
    const whole = snapOf(new Date("2024-03-01T21:00:00Z"), -300);
    assert.equal(formatSnap(whole.snapTime, whole.utcOffset), "2024-03-01T16:00:00-05:00");
    assert.throws(() => formatSnap(ts, durationFromMs(90_000)), /whole minutes/);
  });
});

describe("filters and enums", () => {
  it("quotes strings and times", () => {
    assert.equal(quote('a "b" \\ c'), '"a \\"b\\" \\\\ c"');
    assert.equal(quoteTime(new Date("2024-03-01T00:00:00Z")), '"2024-03-01T00:00:00Z"');
    assert.equal(quoteTime(new Date("2024-03-01T05:00:00Z"), -300), '"2024-03-01T00:00:00-05:00"');
    const finer = create(TimestampSchema, { seconds: 0n, nanos: 1 });
    assert.throws(() => quoteTime(finer), /microsecond/);
  });

  it("joins terms and names enum values without their prefix", () => {
    const filter = and(
      `status = ${enumName(QualityIssueStatus, QualityIssueStatus.OPEN)}`,
      "",
      `severity = ${enumName(Severity, Severity.ERROR)}`,
      `raise_time < ${quoteTime(new Date("2024-03-01T00:00:00Z"))}`,
    );
    assert.equal(
      filter,
      'status = OPEN AND severity = ERROR AND raise_time < "2024-03-01T00:00:00Z"',
    );
    assert.equal(enumName(QualityRule, QualityRule.SOURCE_BREAK), "SOURCE_BREAK");
    assert.equal(enumName(ValueMethod, ValueMethod.PRIORITY), "PRIORITY");
    assert.equal(enumName(DataType, DataType.PRICE), "PRICE");
    assert.equal(enumName(QualityRule, 99), "99"); // a rule added after this client
  });
});

describe("paging", () => {
  it("follows page tokens through empty pages, keeping parent and filter", async () => {
    const seen: ListQualityIssuesRequest[] = [];
    const call = async (req: ListQualityIssuesRequest): Promise<ListQualityIssuesResponse> => {
      seen.push(req);
      const answers: Record<string, [string[], string]> = {
        "": [["a", "b"], "1"],
        "1": [[], "2"], // an empty page with more to come (AIP-158)
        "2": [["c"], ""],
      };
      const [ids, next] = answers[req.pageToken]!;
      return create(ListQualityIssuesResponseSchema, {
        issues: ids.map((issueId) => ({ issueId })),
        nextPageToken: next,
      });
    };
    const query = { listQualityIssues: call } as unknown as Client<typeof QueryService>;
    const ids: string[] = [];
    const request = { parent: "series/-", filter: "status = OPEN" };
    for await (const issue of listQualityIssues(query, request)) {
      ids.push(issue.issueId);
    }
    assert.deepEqual(ids, ["a", "b", "c"]);
    assert.deepEqual(
      seen.map((r) => [r.parent, r.filter, r.pageToken]),
      [
        ["series/-", "status = OPEN", ""],
        ["series/-", "status = OPEN", "1"],
        ["series/-", "status = OPEN", "2"],
      ],
    );
  });

  it("stops on a token that does not move", async () => {
    const stuck = async (_: { pageToken?: string }) => ({ nextPageToken: "same" });
    const iterate = async () => {
      for await (const _ of pages(stuck, { pageToken: "same" })) {
        // nothing
      }
    };
    await assert.rejects(iterate, /same page token/);
  });

  it("reads a point's whole history", async () => {
    const tokens: string[] = [];
    const call = async (req: GetPointHistoryRequest): Promise<GetPointHistoryResponse> => {
      tokens.push(req.pageToken);
      return req.pageToken === ""
        ? create(GetPointHistoryResponseSchema, {
            observations: [{ recordPosition: 10n }],
            versions: [{ version: 1 }],
            readPosition: 30n,
            nextPageToken: "next",
          })
        : create(GetPointHistoryResponseSchema, {
            observations: [{ recordPosition: 20n }],
            versions: [{ version: 2 }],
            readPosition: 31n,
          });
    };
    const query = { getPointHistory: call } as unknown as Client<typeof QueryService>;
    const history = await getPointHistory(query, {
      series: "series/X",
      snapTime: snapTime(new Date("2024-03-01T21:00:00Z")),
      pageSize: 2,
    });
    assert.deepEqual(tokens, ["", "next"]);
    assert.deepEqual(history.versions.map((v) => v.version), [1, 2]);
    assert.deepEqual(history.observations.map((o) => o.recordPosition), [10n, 20n]);
    assert.equal(history.readPosition, 30n);
  });
});

describe("errors", () => {
  it("decodes ErrorInfo, BadRequest and RetryInfo", () => {
    const error = new ConnectError("stale", Code.Aborted, undefined, [
      { desc: ErrorInfoSchema, value: { reason: "SCHEMA_VERSION_MISMATCH", domain: "qis.data" } },
      {
        desc: BadRequestSchema,
        value: { fieldViolations: [{ field: "points[0].snap_time", description: "finer" }] },
      },
      { desc: RetryInfoSchema, value: { retryDelay: { seconds: 2n } } },
    ]);
    const qis = QisError.from(error);
    assert.ok(qis instanceof QisError);
    assert.equal(qis.codeName, "ABORTED");
    assert.equal(qis.errorInfo?.reason, "SCHEMA_VERSION_MISMATCH");
    assert.equal(qis.fieldViolations[0]?.field, "points[0].snap_time");
    assert.equal(qis.retryDelayMs, 2000);
    assert.ok(!(new ConnectError("x") instanceof QisError));
  });
});

const day = (d: number) => new Date(Date.UTC(2024, 2, d, 21));

describe("columns in", () => {
  it("makes the snaps and offsets a point would have", () => {
    const dates = [day(1), new Date("2024-03-04T21:00:00.123Z")];
    const cols = priceColumns(dates, ["5137.08", 5130n], -300);
    const points = dates.map((d) => point(d, price("1"), -300));
    assert.deepEqual(
      cols.snapTimeMicros,
      points.map((p) => p.snapTime!.seconds * 1_000_000n + BigInt(p.snapTime!.nanos / 1000)),
    );
    assert.deepEqual(cols.utcOffsetMinutes, [-300]); // shared: one
    assert.equal(cols.values.case, "prices");
    assert.deepEqual(cols.values.value?.texts, ["5137.08", "5130"]);
    assert.deepEqual(snapColumns(dates).utcOffsetMinutes, []); // all UTC: none
    assert.deepEqual(snapColumns(dates, [-300, 60]).utcOffsetMinutes, [-300, 60]); // per row
    assert.deepEqual(snapColumns(dates, [60, 60]).utcOffsetMinutes, [60]);
    assert.deepEqual(snapColumns([]), { snapTimeMicros: [], utcOffsetMinutes: [] });
    assert.deepEqual(snapColumns([new Date(-1)]).snapTimeMicros, [-1000n]);
  });

  it("refuses what the service refuses, naming the row", () => {
    assert.throws(
      () => snapColumns([day(1), new Date(Number.NaN)]),
      /^RangeError: snaps\[1\]: invalid Date/,
    );
    assert.throws(() => snapColumns([day(1)], [30.5]), /snaps\[0\]: invalid UTC offset/);
    assert.throws(() => snapColumns([day(1)], 24 * 60), /snaps\[0\]/);
    assert.throws(
      () => snapColumns([new Date("+010000-01-01T00:00:00Z")]),
      /snaps\[0\]: snap out of range/,
    );
    assert.throws(() => snapColumns([day(1)], [0, 0]), /2 offsets for 1 snaps/);
    assert.throws(() => priceColumns([day(1), day(2)], ["1", "1,5"]), /prices\[1\]: not a decimal/);
    assert.throws(() => priceColumns([day(1)], [""]), /prices\[0\]: a value is required/);
    assert.throws(() => priceColumns([day(1), day(2)], ["1"]), /prices has 1 rows, snaps 2/);
    assert.throws(
      () => volumeColumns([day(1)], { unscaled: [1n], scale: 19 }),
      /volumes: scale 19 is not 0 to 18/,
    );
    assert.throws(
      () => volumeColumns([day(1)], { unscaled: [10n ** 18n], scale: 0 }),
      /volumes\[0\]: .* out of bounds/,
    );
    assert.throws(() => decimalColumn({ unscaled: [2n ** 63n], scale: 2 }), /values\[0\]/);
  });

  it("sends scaled integers and bars", () => {
    const cols = volumeColumns([day(1), day(2)], { unscaled: [10125n, -5n], scale: 2 });
    assert.equal(cols.values.case, "volumes");
    assert.deepEqual(cols.values.value?.unscaled, [10125n, -5n]);
    assert.equal(cols.values.value?.scale, 2);
    const bars = barColumns([day(1), day(2)], {
      open: ["10", "11"],
      high: { unscaled: [125n, 115n], scale: 1 },
      low: ["9.75", "10"],
      close: ["11", "10.25"],
      volume: ["1000", undefined],
    });
    assert.equal(bars.values.case, "bars");
    if (bars.values.case === "bars") {
      assert.deepEqual(bars.values.value.volume?.texts, ["1000", ""]);
      assert.deepEqual(bars.values.value.high?.unscaled, [125n, 115n]);
    }
    const noVolume = barColumns([day(1)], { open: ["1"], high: ["2"], low: ["0"], close: ["1"] });
    assert.equal(noVolume.values.case === "bars" && noVolume.values.value.volume, undefined);
  });

  it("cuts columns into requests of at most 10,000 rows", () => {
    const n = 2 * MAX_ROWS + 1;
    const dates = Array.from({ length: n }, (_, i) => new Date(Date.UTC(2024, 0, 1) + i * 60_000));
    const cols = priceColumns(dates, { unscaled: dates.map((_, i) => BigInt(i)), scale: 2 }, 60);
    const requests = ingestRequests(
      { commandId: "load-1", series: "series/X", source: "sources/s" },
      cols,
    );
    assert.deepEqual(
      requests.map((r) => r.commandId),
      ["load-1:0", "load-1:1", "load-1:2"],
    );
    assert.deepEqual(
      requests.map((r) => r.columns?.snapTimeMicros.length),
      [MAX_ROWS, MAX_ROWS, 1],
    );
    assert.deepEqual(
      requests.map((r) => r.columns?.utcOffsetMinutes),
      [[60], [60], [60]],
    );
    assert.deepEqual(
      requests.flatMap((r) => r.columns?.snapTimeMicros ?? []),
      cols.snapTimeMicros,
    );
    const last = requests[2]?.columns?.values;
    assert.ok(last?.case === "prices");
    assert.deepEqual(last.value.unscaled, [BigInt(2 * MAX_ROWS)]);
    assert.equal(last.value.scale, 2);
    const fresh = ingestRequests({ series: "series/X", source: "sources/s" }, cols);
    assert.equal(new Set(fresh.map((r) => r.commandId)).size, 3);
    assert.throws(() => chunkColumns(cols, MAX_ROWS + 1), /rows per chunk/);

    const perRow = volumeColumns([day(1), day(2), day(3)], ["1", "2", "3"], [-300, 0, -300]);
    const chunks = chunkColumns(perRow, 2);
    assert.deepEqual(
      chunks.map((c) => c.utcOffsetMinutes),
      [[-300, 0], [-300]],
    );
    const texts = chunks.map((c) => (c.values.case === "volumes" ? c.values.value.texts : []));
    assert.deepEqual(texts, [["1", "2"], ["3"]]);
  });
});

/** Rows first.. of a price series: row i has i % 3 flags. */
function officialColumns(first: number, rows: number): OfficialValueColumns {
  const range = Array.from({ length: rows }, (_, k) => first + k);
  return create(OfficialValueColumnsSchema, {
    snapTimeMicros: range.map((i) => BigInt(i) * 86_400_000_000n),
    versions: range.map(() => 1),
    values: { case: "prices", value: { texts: range.map((i) => `${i}.5`) } },
    unit: "USD",
    qualityScores: range.map(() => 1),
    recordTimeMicros: range.map(() => 5n),
    recordPositions: range.map((i) => BigInt(10 + i)),
    supersedePositions: range.map(() => 0n),
    methods: range.map(() => ValueMethod.PRIORITY),
    flagCounts: range.map((i) => i % 3),
    flags: range.flatMap((i) => [QualityRule.JUMP, QualityRule.STALE].slice(0, i % 3)),
  });
}

describe("columns out", () => {
  it("reads columns into arrays with flags per row", () => {
    const cols = new ValueColumns();
    cols.append(officialColumns(0, 4), 12n);
    cols.append(officialColumns(4, 2), 11n);
    assert.equal(cols.length, 6);
    assert.equal(cols.kind, "prices");
    assert.equal(cols.unit, "USD");
    assert.deepEqual(cols.values, ["0.5", "1.5", "2.5", "3.5", "4.5", "5.5"]);
    assert.deepEqual(cols.flags, [
      [],
      [QualityRule.JUMP],
      [QualityRule.JUMP, QualityRule.STALE],
      [],
      [QualityRule.JUMP],
      [QualityRule.JUMP, QualityRule.STALE],
    ]);
    assert.equal(cols.readPosition, 11n);
    assert.deepEqual(microsDate(cols.snapTimeMicros[1]!), new Date(86_400_000));
  });

  it("refuses columns that do not line up, adding nothing", () => {
    const cols = new ValueColumns();
    cols.append(officialColumns(0, 1));
    const short = officialColumns(1, 3);
    short.methods.pop();
    assert.throws(() => cols.append(short), /3 snaps, 2 methods/);
    const miscounted = officialColumns(1, 3);
    miscounted.flagCounts[0] = 5;
    assert.throws(() => cols.append(miscounted), /flag_counts add up to 7, for 3 flags/);
    const volumes = officialColumns(1, 1);
    volumes.values = { case: "volumes", value: create(DecimalColumnSchema, { texts: ["1"] }) };
    assert.throws(() => cols.append(volumes), /volumes after prices/);
    assert.equal(cols.length, 1);
    assert.equal(cols.flags.length, 1);
  });

  it("writes scaled integers and absent volumes of bars as decimal strings", () => {
    assert.equal(formatScaled(10125n, 2), "101.25");
    assert.equal(formatScaled(-5n, 2), "-0.05");
    assert.equal(formatScaled(0n, 3), "0.000");
    assert.equal(formatScaled(7n, 0), "7");
    const cols = new ValueColumns();
    cols.append(
      create(OfficialValueColumnsSchema, {
        snapTimeMicros: [0n],
        versions: [2],
        values: {
          case: "bars",
          value: {
            open: { unscaled: [1000n], scale: 2 },
            high: { texts: ["12"] },
            low: { texts: ["9"] },
            close: { texts: ["11"] },
          },
        },
        qualityScores: [1],
        recordTimeMicros: [0n],
        recordPositions: [1n],
        supersedePositions: [0n],
        methods: [ValueMethod.MANUAL],
      }),
    );
    assert.equal(cols.kind, "bars");
    assert.deepEqual(cols.bars.open, ["10.00"]);
    assert.deepEqual(cols.bars.volume, [""]);
    assert.deepEqual(cols.flags, [[]]); // no flag_counts and no flags: no row has one
  });

  it("puts structure columns back together into whole curves and surfaces", () => {
    const cols = new ValueColumns();
    const curves = officialColumns(0, 2);
    curves.values = {
      case: "structures",
      value: create(StructureColumnsSchema, {
        nodeCounts: [2, 1],
        tenors: ["P1M", "P1Y", "P3M"],
        values: { texts: ["4.01", "5E-7", "4.1"] },
      }),
    };
    cols.append(curves);
    const surfaces = officialColumns(2, 1);
    surfaces.values = {
      case: "structures",
      value: create(StructureColumnsSchema, {
        nodeCounts: [2],
        tenors: ["P1M", "P1M"],
        coordinates: ["0.9", "1.1"],
        values: { texts: ["0.25", "0.24"] },
      }),
    };
    cols.append(surfaces);
    assert.equal(cols.kind, "other");
    const nodes = cols.other.map(({ kind }) =>
      kind.case === "termStructure"
        ? kind.value.nodes.map((n) => `${n.tenor}=${n.value}`).join(" ")
        : kind.case === "surface"
          ? kind.value.nodes.map((n) => `${n.tenor}/${n.coordinate}=${n.value}`).join(" ")
          : String(kind.case),
    );
    assert.deepEqual(nodes, ["P1M=4.01 P1Y=5E-7", "P3M=4.1", "P1M/0.9=0.25 P1M/1.1=0.24"]);
    const miscounted = officialColumns(3, 1);
    miscounted.values = {
      case: "structures",
      value: create(StructureColumnsSchema, {
        nodeCounts: [2],
        tenors: ["P1M"],
        values: { texts: ["1"] },
      }),
    };
    assert.throws(() => cols.append(miscounted), /node_counts add up to 2, there are 1 tenors/);
    assert.equal(cols.length, 3);
  });

  it("keeps microseconds exact", () => {
    assert.equal(
      formatSnap(microsTimestamp(1_709_326_800_123_456n)),
      "2024-03-01T21:00:00.123456Z",
    );
    assert.equal(formatSnap(microsTimestamp(-1n)), "1969-12-31T23:59:59.999999Z");
    assert.deepEqual(microsDate(-1n), new Date(-1));
  });
});

/** officialColumns(first, values.length) with its values in `other` (the series' unit EUR). */
function inOther(first: number, ...values: DataValue[]): OfficialValueColumns {
  const c = officialColumns(first, values.length);
  c.values = { case: "other", value: create(DataValuesSchema, { values }) };
  c.unit = "EUR";
  return c;
}

function inEur(first: number, rows: number): OfficialValueColumns {
  const c = officialColumns(first, rows);
  c.unit = "EUR";
  return c;
}

/** DataValues in words: "price 0.5 USD", "volume 7 shares", "bar 1/2/0/1/". */
function described(values: readonly DataValue[]): string[] {
  return values.map(({ kind }) => {
    switch (kind.case) {
      case "price":
        return `price ${kind.value.value} ${kind.value.currency}`;
      case "volume":
        return `volume ${kind.value.quantity} ${kind.value.unit}`;
      case "bar": {
        const b = kind.value;
        return `bar ${[b.open, b.high, b.low, b.close, b.volume].join("/")}`;
      }
      default:
        return "?";
    }
  });
}

/** Every column of `cols` has its `n` rows, the values in `other`. */
function assertAligned(cols: ValueColumns, n: number): void {
  const lengths = [
    cols.length,
    cols.versions.length,
    cols.other.length,
    cols.qualityScores.length,
    cols.recordTimeMicros.length,
    cols.recordPositions.length,
    cols.supersedePositions.length,
    cols.methods.length,
    cols.flags.length,
  ];
  assert.deepEqual(lengths, new Array<number>(lengths.length).fill(n));
  assert.deepEqual([cols.values.length, cols.bars.open.length, cols.bars.volume.length], [0, 0, 0]);
}

describe("columns out, pages of mixed cases", () => {
  it("turns prices after a page in other into other, row for row", () => {
    // A price series evolved USD -> EUR, page_size 2: the page holding a USD value comes in
    // `other`, the later ones in `prices` (EUR).
    const cols = new ValueColumns();
    cols.append(inOther(0, price("0.5", "USD"), price("1.5", "EUR")));
    cols.append(inEur(2, 2));
    cols.append(inEur(4, 1));
    cols.append(
      create(OfficialValueColumnsSchema, { values: { case: "prices", value: {} }, unit: "EUR" }),
    ); // the end
    assert.deepEqual([cols.kind, cols.unit], ["other", "EUR"]);
    assert.deepEqual(described(cols.other), [
      "price 0.5 USD",
      "price 1.5 EUR",
      "price 2.5 EUR",
      "price 3.5 EUR",
      "price 4.5 EUR",
    ]);
    assertAligned(cols, 5);
    assert.equal(cols.recordPositions[4], 14n);
    assert.deepEqual(cols.flags[4], [QualityRule.JUMP]);
  });

  it("converts the prices read before a page in other", () => {
    const cols = new ValueColumns();
    cols.append(officialColumns(0, 2)); // USD, before the unit changed
    cols.append(inOther(2, price("2.5", "USD"), price("3.5", "EUR")));
    cols.append(inEur(4, 2));
    assert.deepEqual([cols.kind, cols.unit], ["other", "EUR"]);
    assert.deepEqual(described(cols.other), [
      "price 0.5 USD",
      "price 1.5 USD",
      "price 2.5 USD",
      "price 3.5 EUR",
      "price 4.5 EUR",
      "price 5.5 EUR",
    ]);
    assertAligned(cols, 6);
    assert.equal(cols.snapTimeMicros[5], 5n * 86_400_000_000n);
  });

  it("turns typed pages in two units into other", () => {
    const cols = new ValueColumns();
    cols.append(officialColumns(0, 2));
    cols.append(officialColumns(2, 1));
    assert.deepEqual([cols.kind, cols.unit, cols.values], ["prices", "USD", ["0.5", "1.5", "2.5"]]);
    cols.append(inEur(3, 2));
    assert.deepEqual([cols.kind, cols.unit], ["other", "EUR"]);
    assert.deepEqual(described(cols.other), [
      "price 0.5 USD",
      "price 1.5 USD",
      "price 2.5 USD",
      "price 3.5 EUR",
      "price 4.5 EUR",
    ]);
    assertAligned(cols, 5);
    // Volumes and bars likewise.
    const shares = officialColumns(0, 1);
    shares.values = { case: "volumes", value: create(DecimalColumnSchema, { texts: ["7"] }) };
    shares.unit = "shares";
    const lots = officialColumns(1, 1);
    lots.values = {
      case: "volumes",
      value: create(DecimalColumnSchema, { unscaled: [15n], scale: 1 }),
    };
    lots.unit = "lots";
    const volumes = new ValueColumns();
    volumes.append(shares);
    volumes.append(lots);
    assert.deepEqual(described(volumes.other), ["volume 7 shares", "volume 1.5 lots"]);
    const bar = officialColumns(0, 1);
    bar.values = {
      case: "bars",
      value: create(OhlcBarColumnsSchema, {
        open: { unscaled: [1000n], scale: 2 },
        high: { texts: ["12"] },
        low: { texts: ["9"] },
        close: { texts: ["11"] },
      }),
    };
    const bars = new ValueColumns();
    bars.append(bar);
    bars.append(
      inOther(1, create(DataValueSchema, { kind: { case: "bar", value: { open: "1" } } })),
    );
    assert.equal(bars.kind, "other");
    assert.deepEqual(described(bars.other), ["bar 10.00/12/9/11/", "bar 1////"]);
    assertAligned(bars, 2);
  });

  it("keeps the columns of pages of one case and unit", () => {
    const cols = new ValueColumns();
    cols.append(
      create(OfficialValueColumnsSchema, { values: { case: "other", value: {} }, unit: "USD" }),
    ); // no rows
    cols.append(officialColumns(0, 2));
    cols.append(officialColumns(2, 2));
    cols.append(
      create(OfficialValueColumnsSchema, { values: { case: "prices", value: {} }, unit: "EUR" }),
    ); // no rows
    assert.deepEqual(
      [cols.kind, cols.unit, cols.values, cols.other.length],
      ["prices", "USD", ["0.5", "1.5", "2.5", "3.5"], 0],
    );
    // Volumes after prices stay malformed, even past a page in `other`.
    cols.append(inOther(4, price("4.5", "USD")));
    const volumes = officialColumns(5, 1);
    volumes.values = { case: "volumes", value: create(DecimalColumnSchema, { texts: ["1"] }) };
    assert.throws(() => cols.append(volumes), /volumes after prices/);
    assertAligned(cols, 5);
  });
});

describe("columns over calls", () => {
  it("reads a columnar range across pages and calls", async () => {
    const seen: QueryRangeRequest[] = [];
    // 7 rows, pageSize a message, two messages a call.
    async function* queryRange(req: QueryRangeRequest): AsyncGenerator<QueryRangeResponse> {
      seen.push(req);
      let start = Number(req.pageToken || 0);
      for (let sent = 0; sent < 2 && start < 7; sent += 1) {
        const stop = Math.min(start + req.pageSize, 7);
        yield create(QueryRangeResponseSchema, {
          columns: officialColumns(start, stop - start),
          nextPageToken: stop < 7 ? String(stop) : "",
          readPosition: BigInt(100 - start),
        });
        start = stop;
      }
    }
    const query = { queryRange } as unknown as Client<typeof QueryService>;
    const cols = await queryRangeColumns(query, { series: "series/X", pageSize: 2 });
    assert.equal(cols.length, 7);
    assert.equal(cols.values[6], "6.5");
    assert.equal(cols.readPosition, 94n);
    assert.deepEqual(
      seen.map((r) => [r.view, r.pageToken]),
      [
        [ValueView.COLUMNS, ""],
        [ValueView.COLUMNS, "4"],
      ],
    );
  });

  it("streams chunks to BulkIngest and yields each answer", async () => {
    const sent: IngestPointsRequest[] = [];
    async function* bulk(
      requests: AsyncIterable<IngestPointsRequest>,
    ): AsyncGenerator<BulkIngestResponse> {
      for await (const r of requests) {
        sent.push(r);
        const refused =
          r.columns?.values.case === "prices" && r.columns.values.value.texts[0] === "0";
        yield create(BulkIngestResponseSchema, {
          commandId: r.commandId,
          outcome: refused
            ? {
                case: "error",
                value: create(StatusSchema, {
                  code: Code.InvalidArgument,
                  message: "must be positive",
                  details: [
                    anyPack(
                      BadRequestSchema,
                      create(BadRequestSchema, {
                        fieldViolations: [
                          { field: "columns.prices.texts[0]", description: "must be positive" },
                        ],
                      }),
                    ),
                  ],
                }),
              }
            : { case: "result", value: { accepted: r.columns?.snapTimeMicros.length ?? 0 } },
        });
      }
    }
    const command = { bulkIngest: bulk } as unknown as Client<typeof CommandService>;
    const dates = Array.from({ length: MAX_ROWS + 2 }, (_, i) => new Date(i * 60_000));
    const cols = priceColumns(
      dates,
      dates.map((_, i) => String(i)),
    );
    const answers: BulkIngestResponse[] = [];
    const requests = ingestRequests(
      { commandId: "load", series: "series/X", source: "sources/s" },
      cols,
    );
    for await (const a of bulkIngest(command, requests)) answers.push(a);
    assert.deepEqual(
      sent.map((r) => r.commandId),
      ["load:0", "load:1"],
    );
    assert.deepEqual(
      answers.map((a) => a.outcome.case),
      ["error", "result"],
    );
    const first = answers[0]?.outcome;
    assert.ok(first?.case === "error");
    const error = QisError.fromStatus(first.value);
    assert.equal(error.codeName, "INVALID_ARGUMENT");
    assert.equal(error.fieldViolations[0]?.field, "columns.prices.texts[0]");
  });
});
