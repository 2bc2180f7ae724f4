/**
 * Unit tests of src/qis.ts, without a service: `npm test` (node:test through tsx).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";
import { DurationSchema, TimestampSchema, durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "../src/gen/google/rpc/error_details_pb.js";
import {
  DataType,
  GetPointHistoryResponseSchema,
  ListQualityIssuesResponseSchema,
  QisError,
  QualityIssueStatus,
  QualityRule,
  Severity,
  ValueMethod,
  and,
  enumName,
  formatSnap,
  getPointHistory,
  listQualityIssues,
  pages,
  point,
  price,
  quote,
  quoteTime,
  snapOf,
  snapTime,
} from "../src/qis.js";
import type {
  GetPointHistoryRequest,
  GetPointHistoryResponse,
  ListQualityIssuesRequest,
  ListQualityIssuesResponse,
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
