/**
 * A small, idiomatic layer over the generated qis-data clients (src/gen, protobuf-es + Connect,
 * gRPC protocol over HTTP/2):
 *
 * - {@link connectQis}: command and query clients, with the caller's identity in call metadata
 *   (`x-qis-user` in development mode, or `authorization: Bearer ...`: same call sites);
 * - decimals are strings, never JS numbers ({@link decimal}, {@link price}, {@link decimalOf});
 * - snaps are a Timestamp `snapTime` (whole microseconds) plus a Duration `utcOffset` (the
 *   offset the value was observed at): {@link snapOf}, {@link point}, {@link snapTime} from a
 *   `Date` and an offset in minutes, {@link formatSnap} back to RFC 3339 text;
 * - columns, for long histories: {@link priceColumns}, {@link volumeColumns},
 *   {@link barColumns} build a PointColumns from `Date[]` and decimal strings (the snap rules of
 *   {@link snapOf}), {@link ingestRequests} cuts it into requests of at most {@link MAX_ROWS}
 *   rows and {@link bulkIngest} streams them; {@link queryRangeColumns} reads a range in the
 *   columnar view into a {@link ValueColumns} of arrays, flags decoded per row;
 * - {@link queryRange}: every official value of a range, following `next_page_token` across
 *   calls (one QueryRange call streams a bounded number of points); {@link pages} and the list
 *   helpers ({@link listAuditEntries}, {@link listQualityIssues}, {@link getPointHistory}...) do
 *   the same for the unary paged calls;
 * - AIP-160 filters: {@link quote}, {@link quoteTime}, {@link and}, {@link enumName} (which also
 *   prints enums by name);
 * - {@link subscribe}: Subscribe as an async iterator of batches with resume tokens, which
 *   reconnects from the last token after a transient failure;
 * - {@link QisError}: a failed call with its google.rpc error details (BadRequest, ErrorInfo,
 *   RetryInfo, ResourceInfo) decoded from the `grpc-status-details-bin` trailer.
 */
import { create, createRegistry, isMessage } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import {
  DurationSchema,
  TimestampSchema,
  durationFromMs,
  durationMs,
  timestampDate,
  timestampFromDate,
} from "@bufbuild/protobuf/wkt";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { CallOptions, Client, Interceptor } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import type {
  BadRequest_FieldViolation,
  ErrorInfo,
  ResourceInfo,
} from "./gen/google/rpc/error_details_pb.js";
import type { Status } from "./gen/google/rpc/status_pb.js";
import { CommandService, IngestPointsRequestSchema } from "./gen/qis/data/v1/command_service_pb.js";
import type {
  BulkIngestResponse,
  IngestPointsRequest,
} from "./gen/qis/data/v1/command_service_pb.js";
import {
  OfficialValueColumnsSchema,
  QueryService,
  ValueView,
} from "./gen/qis/data/v1/query_service_pb.js";
import type {
  AuditEntry,
  GetPointHistoryRequestSchema,
  GetPointHistoryResponse,
  ListAuditEntriesRequestSchema,
  ListQualityIssuesRequestSchema,
  ListQualityMetricsRequestSchema,
  ListSeriesRequestSchema,
  OfficialValue,
  OfficialValueColumns,
  QualityIssue,
  QualityMetrics,
  QueryRangeRequest,
  QueryRangeRequestSchema,
  QueryRangeResponse,
  SourceObservation,
  SubscribeResponse,
  ValueMethod,
} from "./gen/qis/data/v1/query_service_pb.js";
import type { Series } from "./gen/qis/data/v1/series_pb.js";
import type { QualityRule } from "./gen/qis/data/v1/quality_pb.js";
import {
  DataPointSchema,
  DataValueSchema,
  DecimalColumnSchema,
  OhlcBarColumnsSchema,
  PointColumnsSchema,
} from "./gen/qis/data/v1/values_pb.js";
import type {
  DataPoint,
  DataValue,
  DecimalColumn,
  PointColumns,
  StructureColumns,
} from "./gen/qis/data/v1/values_pb.js";

export * from "./gen/qis/data/v1/command_service_pb.js";
export * from "./gen/qis/data/v1/quality_pb.js";
export * from "./gen/qis/data/v1/query_service_pb.js";
export * from "./gen/qis/data/v1/series_pb.js";
export * from "./gen/qis/data/v1/values_pb.js";
export { Code, ConnectError, create };
export { durationFromMs, durationMs, timestampDate, timestampFromDate };
export type { Duration, Timestamp };

// ---------------------------------------------------------------------------------------------
// Identity and clients

/**
 * Who is calling. `{ user }` is the development mode (`x-qis-user`); `{ bearerToken }` sends
 * `authorization: Bearer ...` instead, for when signed tokens replace it server-side (the
 * contracts do not change). Exactly one header is sent: the service refuses a call with two.
 */
export type Identity = { readonly user: string } | { readonly bearerToken: string };

/** An interceptor that puts the identity in every call's metadata. */
export function identityInterceptor(identity: Identity): Interceptor {
  const [name, value] =
    "user" in identity
      ? ["x-qis-user", identity.user]
      : ["authorization", `Bearer ${identity.bearerToken}`];
  if (!value.trim() || /[\r\n]/.test(value)) {
    throw new TypeError(`invalid identity for ${name}`);
  }
  return (next) => async (req) => {
    req.header.set(name, value);
    return next(req);
  };
}

/** Turns every error a call raises, unary or streamed, into a {@link QisError}. */
export const qisErrorInterceptor: Interceptor = (next) => async (req) => {
  let res;
  try {
    res = await next(req);
  } catch (e) {
    throw QisError.from(e);
  }
  if (!res.stream) {
    return res;
  }
  const inner = res.message;
  async function* rethrowing() {
    try {
      yield* inner;
    } catch (e) {
      throw QisError.from(e);
    }
  }
  return { ...res, message: rethrowing() };
};

export interface QisOptions {
  /** The command service, "host:port" (plaintext) or a URL ("https://host:port"). */
  readonly commandAddress: string;
  /** The query service, "host:port" or a URL. */
  readonly queryAddress: string;
  readonly identity: Identity;
  /** More interceptors (tracing, deadlines...), after the identity one. */
  readonly interceptors?: readonly Interceptor[];
}

export interface Qis extends AsyncDisposable {
  readonly command: Client<typeof CommandService>;
  readonly query: Client<typeof QueryService>;
  /** Closes the HTTP/2 connections (calls in flight fail). */
  close(): void;
}

function baseUrl(address: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `http://${address}`;
}

/** Clients of both services over gRPC (HTTP/2), one connection each. */
export function connectQis(options: QisOptions): Qis {
  const interceptors = [
    qisErrorInterceptor,
    identityInterceptor(options.identity),
    ...(options.interceptors ?? []),
  ];
  const sessions: Http2SessionManager[] = [];
  const transport = (address: string) => {
    const url = baseUrl(address);
    const sessionManager = new Http2SessionManager(url);
    sessions.push(sessionManager);
    return createGrpcTransport({ baseUrl: url, sessionManager, interceptors });
  };
  const close = () => sessions.forEach((s) => s.abort());
  return {
    command: createClient(CommandService, transport(options.commandAddress)),
    query: createClient(QueryService, transport(options.queryAddress)),
    close,
    [Symbol.asyncDispose]: async () => close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Decimals and snaps

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A decimal for the wire: a string in decimal notation ("101.25", "-0.5", "1E+3") or a bigint.
 * There is deliberately no `number` overload: binary floating point cannot hold most decimal
 * fractions, so prices never go through one. Bounds (|x| < 1e18, 18 places) are the server's.
 */
export function decimal(value: string | bigint): string {
  if (typeof value === "bigint") {
    return value.toString();
  }
  if (!DECIMAL.test(value)) {
    throw new TypeError(`not a decimal: ${JSON.stringify(value)}`);
  }
  return value;
}

/** A DataValue holding a price; the currency defaults to the series' unit server-side. */
export function price(value: string | bigint, currency = ""): DataValue {
  return create(DataValueSchema, {
    kind: { case: "price", value: { value: decimal(value), currency } },
  });
}

/** A DataValue holding a volume; the unit defaults to the series' unit server-side. */
export function volume(quantity: string | bigint, unit = ""): DataValue {
  return create(DataValueSchema, {
    kind: { case: "volume", value: { quantity: decimal(quantity), unit } },
  });
}

/** The main decimal of a price, volume or bar (its close), as sent: a string. */
export function decimalOf(value: DataValue | undefined): string | undefined {
  switch (value?.kind.case) {
    case "price":
      return value.kind.value.value;
    case "volume":
      return value.kind.value.quantity;
    case "bar":
      return value.kind.value.close;
    default:
      return undefined;
  }
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the instants a snap may be, in ms. */
const MIN_INSTANT_MS = -62_135_596_800_000;
const MAX_INSTANT_MS = 253_402_300_799_999;
/** The largest UTC offset, either way: 23:59, as RFC 3339 offsets. */
export const MAX_UTC_OFFSET_MINUTES = 23 * 60 + 59;

/** A snap as a DataPoint carries it. */
export interface Snap {
  /** The instant (DataPoint.snap_time): whole microseconds, as every Date is. */
  readonly snapTime: Timestamp;
  /** The offset the value was observed at (DataPoint.utc_offset), whole minutes; lineage. */
  readonly utcOffset: Duration;
}

/**
 * An offset in minutes east of UTC (`-300` for New York in winter), `"local"` for this
 * machine's offset at that instant, or `"Z"` (0); checked: whole minutes within ±23:59.
 */
export type UtcOffset = number | "local" | "Z";

function offsetMinutes(date: Date, offset: UtcOffset): number {
  // `|| 0`: getTimezoneOffset() is 0 in UTC, and -0 must not become "-00:00".
  const minutes = offset === "Z" ? 0 : offset === "local" ? -date.getTimezoneOffset() || 0 : offset;
  if (!Number.isInteger(minutes) || Math.abs(minutes) > MAX_UTC_OFFSET_MINUTES) {
    throw new RangeError(`invalid UTC offset: ${minutes} minutes (whole minutes within ±23:59)`);
  }
  return minutes;
}

/** The Timestamp of a Date within the instants the service takes (years 1..9999 in UTC). */
function instant(date: Date): Timestamp {
  const ms = date.getTime();
  if (Number.isNaN(ms)) {
    throw new RangeError("invalid Date");
  }
  if (ms < MIN_INSTANT_MS || ms > MAX_INSTANT_MS) {
    throw new RangeError(
      "snap out of range (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z): " +
        date.toISOString(),
    );
  }
  return timestampFromDate(date);
}

/**
 * A snap for a DataPoint: `snapTime`, the instant, and `utcOffset`, the offset the source
 * stated it at (kept as lineage; it never changes which instant the snap is). A JS Date has no
 * zone of its own, so the offset is given: minutes east of UTC, `"local"`, or `"Z"` (default).
 * A Date is whole milliseconds, so the snap is always whole microseconds (the service refuses a
 * finer one). Throws a RangeError for an instant outside years 1..9999 in UTC or an offset that
 * is not whole minutes within ±23:59.
 *
 *     snapOf(new Date("2024-03-01T21:00:00Z"), -300) // 21:00Z, observed as 16:00-05:00
 */
export function snapOf(date: Date, offset: UtcOffset = "Z"): Snap {
  const snapTime = instant(date);
  const minutes = offsetMinutes(date, offset);
  return { snapTime, utcOffset: create(DurationSchema, { seconds: BigInt(minutes * 60) }) };
}

/** A DataPoint of `value` at `date`, observed at `offset` (see {@link snapOf}). */
export function point(date: Date, value: DataValue, offset: UtcOffset = "Z"): DataPoint {
  return create(DataPointSchema, { ...snapOf(date, offset), value });
}

/**
 * The snap_time of a point named without its offset (RestatePoint, PublishPoints, GetValues,
 * GetPointHistory), checked as {@link snapOf} checks it.
 */
export function snapTime(date: Date): Timestamp {
  return instant(date);
}

/**
 * A Timestamp (of a query request) from a Date or an RFC 3339 string with an offset. A string's
 * fraction below the millisecond is dropped (a Date holds milliseconds): for snaps, prefer
 * {@link snapTime} with a Date.
 */
export function timestamp(at: Date | string): Timestamp {
  const date = typeof at === "string" ? new Date(at) : at;
  if (Number.isNaN(date.getTime())) {
    throw new RangeError(`not a date-time: ${String(at)}`);
  }
  return timestampFromDate(date);
}

/**
 * RFC 3339 text of a Timestamp at an offset: a Duration (`SourceObservation.utcOffset`; unset is
 * UTC) or minutes east of UTC. Exact to the microsecond (a Date would round to milliseconds);
 * the fraction is written only when not zero, without trailing zeros.
 *
 *     formatSnap(request.snapTime, observation.utcOffset) === "2024-03-01T16:00:00-05:00"
 */
export function formatSnap(at: Timestamp, offset?: Duration | number): string {
  const seconds =
    offset === undefined ? 0 : typeof offset === "number" ? offset * 60 : Number(offset.seconds);
  const whole = Number.isInteger(seconds) && seconds % 60 === 0;
  if (!whole || Math.abs(seconds) > MAX_UTC_OFFSET_MINUTES * 60) {
    throw new RangeError(`invalid UTC offset: ${seconds} s (whole minutes within ±23:59)`);
  }
  if (typeof offset === "object" && offset.nanos !== 0) {
    throw new RangeError(`invalid UTC offset: ${seconds} s and ${offset.nanos} ns`);
  }
  if (!Number.isInteger(at.nanos) || at.nanos < 0 || at.nanos > 999_999_999) {
    throw new RangeError(`invalid Timestamp nanos: ${at.nanos}`);
  }
  const wall = new Date((Number(at.seconds) + seconds) * 1000); // read with getUTC*
  const year = wall.getUTCFullYear();
  if (Number.isNaN(wall.getTime()) || year < 1 || year > 9999) {
    throw new RangeError(`Timestamp out of range: ${at.seconds} s`);
  }
  const digits = String(at.nanos).padStart(9, "0").replace(/0+$/, "");
  const minutes = Math.abs(seconds) / 60;
  const zone =
    seconds === 0
      ? "Z"
      : `${seconds < 0 ? "-" : "+"}${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`;
  return (
    `${pad(year, 4)}-${pad(wall.getUTCMonth() + 1)}-${pad(wall.getUTCDate())}` +
    `T${pad(wall.getUTCHours())}:${pad(wall.getUTCMinutes())}:${pad(wall.getUTCSeconds())}` +
    `${digits ? `.${digits}` : ""}${zone}`
  );
}

// ---------------------------------------------------------------------------------------------
// Filters (AIP-160 subset of ListAuditEntries and ListQualityIssues) and enums

/** A filter string value: in double quotes, `"` and `\` escaped by a backslash. */
export function quote(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * A filter timestamp: quoted RFC 3339 (`"2024-03-01T00:00:00Z"`), at an offset in minutes
 * (default UTC). Throws as {@link snapOf} for an instant or offset the service would refuse.
 */
export function quoteTime(at: Date | Timestamp, offset: UtcOffset = "Z"): string {
  if (at instanceof Date) {
    const { snapTime: ts } = snapOf(at, offset);
    return quote(formatSnap(ts, offsetMinutes(at, offset)));
  }
  if (at.nanos % 1000 !== 0) {
    throw new RangeError(`timestamp finer than a microsecond: ${at.nanos} ns`);
  }
  return quote(formatSnap(at, offsetMinutes(timestampDate(at), offset)));
}

/** Filter terms joined by " AND ", leaving out empty ones. */
export function and(...terms: readonly (string | undefined)[]): string {
  return terms
    .map((t) => t?.trim() ?? "")
    .filter((t) => t !== "")
    .join(" AND ");
}

/**
 * The name of an enum value without its prefix, as filters write it and as it reads best:
 * `enumName(QualityRule, QualityRule.JUMP) === "JUMP"`, `enumName(ValueMethod, v.method)`. A
 * number the generated code does not know yet (a rule added to the service later) is written as
 * the number: clients must accept such values.
 */
export function enumName(enumObject: { readonly [key: number]: string }, value: number): string {
  return enumObject[value] ?? String(value);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** A QueryRange request as a plain object, without the page token (that is the iterator's). */
export type QueryRangeInit = Omit<
  Exclude<MessageInitShape<typeof QueryRangeRequestSchema>, QueryRangeRequest>,
  "pageToken" | "$typeName"
>;

/**
 * Every message of a range, across as many QueryRange calls as it takes: a call streams a
 * bounded part of a long range and ends with a `next_page_token`; this calls again with it until
 * a message carries an empty one. Breaking out of the loop cancels the call in flight.
 */
export async function* queryRangePages(
  query: Client<typeof QueryService>,
  request: QueryRangeInit,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<QueryRangeResponse, void, undefined> {
  let pageToken = options?.pageToken ?? "";
  for (;;) {
    let next = "";
    let messages = 0;
    for await (const page of query.queryRange({ ...request, pageToken }, options)) {
      messages += 1;
      next = page.nextPageToken;
      yield page;
    }
    if (!next) {
      return;
    }
    if (messages === 0 || next === pageToken) {
      throw new QisError("QueryRange made no progress", Code.Internal);
    }
    pageToken = next;
  }
}

/**
 * Every official value of a range, ascending by snap, following `next_page_token` across calls
 * ({@link queryRangePages}). Breaking out of the loop cancels the call in flight.
 */
export async function* queryRange(
  query: Client<typeof QueryService>,
  request: QueryRangeInit,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<OfficialValue, void, undefined> {
  for await (const page of queryRangePages(query, request, options)) {
    yield* page.values;
  }
}

/** A request of a unary paged call as a plain object, without the page token. */
type PagedInit<Schema extends DescMessage> = Omit<
  Exclude<MessageInitShape<Schema>, MessageShape<Schema>>,
  "pageToken" | "$typeName"
>;

/**
 * Every response of a unary paged call (AIP-158), calling again with each `nextPageToken` until
 * one is empty: `pages(qis.query.listSeries, {pageSize: 50})`. A page may hold fewer items than
 * `pageSize`, even none, while more follow: keep iterating rather than stopping at a short page.
 * `options.pageToken` resumes where an earlier iteration stopped.
 */
export async function* pages<
  Request extends { pageToken?: string },
  Response extends { readonly nextPageToken: string },
>(
  call: (request: Request, options?: CallOptions) => Promise<Response>,
  request: Request,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<Response, void, undefined> {
  let pageToken = options?.pageToken ?? request.pageToken ?? "";
  for (;;) {
    const page = await call({ ...request, pageToken }, options);
    yield page;
    if (!page.nextPageToken) {
      return;
    }
    if (page.nextPageToken === pageToken) {
      throw new QisError("the service answered with the same page token", Code.Internal);
    }
    pageToken = page.nextPageToken;
  }
}

async function* itemsOf<Response, Item>(
  responses: AsyncIterable<Response>,
  of: (response: Response) => readonly Item[],
): AsyncGenerator<Item, void, undefined> {
  for await (const response of responses) {
    yield* of(response);
  }
}

/** Every series of the catalogue, by series id, across pages. */
export function listSeries(
  query: Client<typeof QueryService>,
  request: PagedInit<typeof ListSeriesRequestSchema> = {},
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<Series, void, undefined> {
  return itemsOf(pages(query.listSeries, request, options), (r) => r.series);
}

/**
 * The audit entries of `parent` ("series/{id}", "sources/{id}", or "-" for every entry) that
 * match `filter`, across pages:
 * `listAuditEntries(qis.query, {parent: "series/X", filter: and(`user = ${quote("alice")}`)})`.
 */
export function listAuditEntries(
  query: Client<typeof QueryService>,
  request: PagedInit<typeof ListAuditEntriesRequestSchema>,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<AuditEntry, void, undefined> {
  return itemsOf(pages(query.listAuditEntries, request, options), (r) => r.entries);
}

/**
 * The quality issues of `parent` ("series/{id}", or "series/-" for every series) that match
 * `filter`, across pages. An empty filter lists issues in every status: the open queue is
 * `status = OPEN`.
 */
export function listQualityIssues(
  query: Client<typeof QueryService>,
  request: PagedInit<typeof ListQualityIssuesRequestSchema>,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<QualityIssue, void, undefined> {
  return itemsOf(pages(query.listQualityIssues, request, options), (r) => r.issues);
}

/** The quality metric windows of a series, across pages. */
export function listQualityMetrics(
  query: Client<typeof QueryService>,
  request: PagedInit<typeof ListQualityMetricsRequestSchema>,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<QualityMetrics, void, undefined> {
  return itemsOf(pages(query.listQualityMetrics, request, options), (r) => r.metrics);
}

/**
 * The pages of a point's history: each holds the versions and observations of a run of commit
 * positions, up to `pageSize` of them together.
 */
export function pointHistoryPages(
  query: Client<typeof QueryService>,
  request: PagedInit<typeof GetPointHistoryRequestSchema>,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<GetPointHistoryResponse, void, undefined> {
  return pages(query.getPointHistory, request, options);
}

/** The whole history of a point, every page read. */
export interface PointHistory {
  /** Ascending by version. */
  readonly versions: readonly OfficialValue[];
  /** Ascending by commit position. */
  readonly observations: readonly SourceObservation[];
  /** What the whole answer reflects at least: the smallest read position of its pages. */
  readonly readPosition: bigint;
}

/**
 * Every page of a point's history, read into one: versions ascending by version, observations
 * by commit position (pages come in commit order). For a very long history,
 * {@link pointHistoryPages} handles one page at a time.
 */
export async function getPointHistory(
  query: Client<typeof QueryService>,
  request: PagedInit<typeof GetPointHistoryRequestSchema>,
  options?: CallOptions & { readonly pageToken?: string },
): Promise<PointHistory> {
  const versions: OfficialValue[] = [];
  const observations: SourceObservation[] = [];
  let readPosition: bigint | undefined;
  for await (const page of pointHistoryPages(query, request, options)) {
    versions.push(...page.versions);
    observations.push(...page.observations);
    if (readPosition === undefined || page.readPosition < readPosition) {
      readPosition = page.readPosition;
    }
  }
  // Already in order when the pages are; a stable sort keeps the contract if they were not.
  versions.sort((a, b) => a.version - b.version);
  observations.sort((a, b) =>
    a.recordPosition < b.recordPosition ? -1 : a.recordPosition > b.recordPosition ? 1 : 0,
  );
  return { versions, observations, readPosition: readPosition ?? 0n };
}

export interface SubscribeInit {
  /** "series/{id}" names; empty or unset for every series. */
  readonly series?: readonly string[];
  /** Continue right after the batch that carried this token... */
  readonly resumeToken?: string;
  /** ...or after this commit position (0n or unset: from the beginning). */
  readonly afterPosition?: bigint;
  /** Stops the subscription (the iterator ends with an AbortError-coded QisError). */
  readonly signal?: AbortSignal;
  /**
   * Transient failures (UNAVAILABLE; RESOURCE_EXHAUSTED after the service disconnected a
   * stalled reader) in a row after which the error is thrown; 0 never reconnects. Default 5.
   */
  readonly maxReconnects?: number;
}

/** One batch of new or restated official values; store `resumeToken` once it is handled. */
export interface SubscriptionBatch {
  readonly values: readonly OfficialValue[];
  readonly resumeToken: string;
}

const RECONNECTABLE = new Set([Code.Unavailable, Code.ResourceExhausted]);

/**
 * Subscribe as an async iterator of batches (at least once, in commit order, strictly
 * increasing resume tokens): catch-up, then live. After a transient failure it reconnects from
 * the last token received, with a capped backoff (RetryInfo's delay when the service gives one).
 */
export async function* subscribe(
  query: Client<typeof QueryService>,
  init: SubscribeInit = {},
): AsyncGenerator<SubscriptionBatch, void, undefined> {
  let token = init.resumeToken ?? "";
  const maxReconnects = init.maxReconnects ?? 5;
  let failures = 0;
  for (;;) {
    const start = token
      ? { case: "resumeToken" as const, value: token }
      : { case: "afterPosition" as const, value: init.afterPosition ?? 0n };
    try {
      const stream = query.subscribe(
        { series: [...(init.series ?? [])], start },
        { signal: init.signal },
      );
      for await (const message of stream) {
        failures = 0;
        token = message.resumeToken;
        yield batchOf(message);
      }
      return; // the service ended the stream (it is shutting down): done
    } catch (e) {
      const error = QisError.from(e);
      if (!RECONNECTABLE.has(error.code) || failures >= maxReconnects || init.signal?.aborted) {
        throw error;
      }
      failures += 1;
      const backoff = Math.min(10_000, 250 * 2 ** failures);
      await sleep(error.retryDelayMs ?? backoff, init.signal);
    }
  }
}

function batchOf(message: SubscribeResponse): SubscriptionBatch {
  return { values: message.values, resumeToken: message.resumeToken };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Columns: points and official values one column per field

/** The most rows (points) of one request: one IngestPoints command, one BulkIngest chunk. */
export const MAX_ROWS = 10_000;
/** The largest scale of a column of scaled integers. */
export const MAX_SCALE = 18;

/**
 * Decimals as integers scaled by 10^-scale: `{ unscaled: [10125n, 9950n], scale: 2 }` is 101.25
 * and 99.50. They reach the service as integers, with no text to format or parse.
 */
export interface Scaled {
  readonly unscaled: readonly bigint[];
  readonly scale: number;
}

/** A column of decimals: strings ("101.25", sent as written), bigints, or {@link Scaled}. */
export type Decimals = readonly (string | bigint)[] | Scaled;

const SINT64_MIN = -(2n ** 63n);
const SINT64_MAX = 2n ** 63n - 1n;
const SCALED_LIMIT = 10n ** 18n; // |unscaled| below it at scale 0 (|x| < 1e18)

function isScaled(values: unknown): values is Scaled {
  return typeof values === "object" && values !== null && "unscaled" in values;
}

/**
 * A DecimalColumn of `values`, each checked: decimal syntax for strings ("" only where
 * `optional`, an OHLC bar's volume), scale 0 to 18 and 64 bits for scaled integers. A refusal
 * names the row (`prices[3]`); bounds beyond these are the service's, which names it too.
 */
export function decimalColumn(
  values: Decimals | readonly (string | bigint | undefined)[],
  name = "values",
  optional = false,
): DecimalColumn {
  if (isScaled(values)) {
    if (!Number.isInteger(values.scale) || values.scale < 0 || values.scale > MAX_SCALE) {
      throw new RangeError(`${name}: scale ${values.scale} is not 0 to ${MAX_SCALE}`);
    }
    values.unscaled.forEach((u, row) => {
      const limit = values.scale === 0 ? SCALED_LIMIT : SINT64_MAX + 1n;
      if (typeof u !== "bigint" || u < SINT64_MIN || u > SINT64_MAX || u >= limit || -u >= limit) {
        throw new RangeError(
          `${name}[${row}]: ${String(u)} out of bounds at scale ${values.scale}`,
        );
      }
    });
    return create(DecimalColumnSchema, { unscaled: [...values.unscaled], scale: values.scale });
  }
  const texts = values.map((v, row) => {
    if (v === undefined || v === "") {
      if (optional) return "";
      throw new TypeError(`${name}[${row}]: a value is required`);
    }
    try {
      return decimal(v);
    } catch (e) {
      throw new TypeError(`${name}[${row}]: ${(e as Error).message}`);
    }
  });
  return create(DecimalColumnSchema, { texts });
}

/** The snaps of a PointColumns. */
export interface SnapColumns {
  readonly snapTimeMicros: bigint[];
  readonly utcOffsetMinutes: number[];
}

/**
 * `snap_time_micros` and `utc_offset_minutes` of Dates, checked as {@link snapOf} checks a
 * point's (years 1..9999 in UTC, offsets whole minutes within ±23:59; a refusal names the row).
 * `offset` is one for every row (minutes east of UTC, `"local"`, `"Z"`) or one per row. The
 * offsets are collapsed: none when every row is UTC, one when every row has the same.
 */
export function snapColumns(
  dates: readonly Date[],
  offset: UtcOffset | readonly UtcOffset[] = "Z",
): SnapColumns {
  if (Array.isArray(offset) && offset.length !== dates.length) {
    throw new RangeError(`${offset.length} offsets for ${dates.length} snaps`);
  }
  const snapTimeMicros: bigint[] = [];
  const minutes: number[] = [];
  dates.forEach((date, row) => {
    try {
      instant(date);
      const stated = Array.isArray(offset) ? (offset[row] as UtcOffset) : (offset as UtcOffset);
      minutes.push(offsetMinutes(date, stated));
    } catch (e) {
      throw new RangeError(`snaps[${row}]: ${(e as Error).message}`);
    }
    snapTimeMicros.push(BigInt(date.getTime()) * 1000n);
  });
  const same = minutes.every((m) => m === minutes[0]);
  const utcOffsetMinutes = !same ? minutes : minutes[0] ? [minutes[0]] : [];
  return { snapTimeMicros, utcOffsetMinutes };
}

function lengthOf(values: Decimals | readonly unknown[]): number {
  return isScaled(values) ? values.unscaled.length : values.length;
}

function column(
  values: Decimals | readonly (string | bigint | undefined)[],
  name: string,
  rows: number,
  optional = false,
): DecimalColumn {
  if (lengthOf(values) !== rows) {
    throw new RangeError(`${name} has ${lengthOf(values)} rows, snaps ${rows}`);
  }
  return decimalColumn(values, name, optional);
}

/**
 * Points of a price series in columns: the snaps of `dates` observed at `offset` (see
 * {@link snapColumns}) and `prices`, as long as `dates`; the currency is the series' own. At
 * most {@link MAX_ROWS} rows go in one request: {@link ingestRequests} cuts longer ones.
 *
 *     priceColumns(dates, ["5137.08", "5130.95"], -300) // closes stated at 16:00-05:00
 */
export function priceColumns(
  dates: readonly Date[],
  prices: Decimals,
  offset: UtcOffset | readonly UtcOffset[] = "Z",
): PointColumns {
  const value = column(prices, "prices", dates.length);
  return create(PointColumnsSchema, {
    ...snapColumns(dates, offset),
    values: { case: "prices", value },
  });
}

/** {@link priceColumns} for a volume series (the unit is the series' own). */
export function volumeColumns(
  dates: readonly Date[],
  volumes: Decimals,
  offset: UtcOffset | readonly UtcOffset[] = "Z",
): PointColumns {
  const value = column(volumes, "volumes", dates.length);
  return create(PointColumnsSchema, {
    ...snapColumns(dates, offset),
    values: { case: "volumes", value },
  });
}

/** OHLC bars in columns; `volume` is left out when no bar has one, undefined for a bar without. */
export interface BarColumnsInit {
  readonly open: Decimals;
  readonly high: Decimals;
  readonly low: Decimals;
  readonly close: Decimals;
  readonly volume?: readonly (string | bigint | undefined)[] | Scaled;
}

/** {@link priceColumns} for an OHLC bar series. */
export function barColumns(
  dates: readonly Date[],
  bars: BarColumnsInit,
  offset: UtcOffset | readonly UtcOffset[] = "Z",
): PointColumns {
  const rows = dates.length;
  const value = create(OhlcBarColumnsSchema, {
    open: column(bars.open, "bars.open", rows),
    high: column(bars.high, "bars.high", rows),
    low: column(bars.low, "bars.low", rows),
    close: column(bars.close, "bars.close", rows),
    volume: bars.volume === undefined ? undefined : column(bars.volume, "bars.volume", rows, true),
  });
  return create(PointColumnsSchema, {
    ...snapColumns(dates, offset),
    values: { case: "bars", value },
  });
}

function sliceDecimals(c: DecimalColumn | undefined, start: number, stop: number) {
  if (c === undefined) return undefined;
  return c.unscaled.length > 0
    ? create(DecimalColumnSchema, { unscaled: c.unscaled.slice(start, stop), scale: c.scale })
    : create(DecimalColumnSchema, { texts: c.texts.slice(start, stop) });
}

/**
 * `columns` cut into runs of at most `rows` rows (1 to {@link MAX_ROWS}), in order. A single
 * offset, or none, goes with every run.
 */
export function chunkColumns(columns: PointColumns, rows = MAX_ROWS): PointColumns[] {
  if (!Number.isInteger(rows) || rows < 1 || rows > MAX_ROWS) {
    throw new RangeError(`${rows} rows per chunk is not 1 to ${MAX_ROWS}`);
  }
  const chunks: PointColumns[] = [];
  const offsets = columns.utcOffsetMinutes;
  for (let start = 0; start < columns.snapTimeMicros.length; start += rows) {
    const stop = Math.min(start + rows, columns.snapTimeMicros.length);
    const chunk = create(PointColumnsSchema, {
      snapTimeMicros: columns.snapTimeMicros.slice(start, stop),
      utcOffsetMinutes: offsets.length > 1 ? offsets.slice(start, stop) : [...offsets],
    });
    const v = columns.values;
    if (v.case === "prices" || v.case === "volumes") {
      chunk.values = { case: v.case, value: sliceDecimals(v.value, start, stop)! };
    } else if (v.case === "bars") {
      chunk.values = {
        case: "bars",
        value: create(OhlcBarColumnsSchema, {
          open: sliceDecimals(v.value.open, start, stop),
          high: sliceDecimals(v.value.high, start, stop),
          low: sliceDecimals(v.value.low, start, stop),
          close: sliceDecimals(v.value.close, start, stop),
          volume: sliceDecimals(v.value.volume, start, stop),
        }),
      };
    }
    chunks.push(chunk);
  }
  return chunks;
}

/**
 * `columns` as IngestPointsRequests of at most `chunkRows` rows, each one IngestPoints command
 * or one BulkIngest chunk. Chunk i's command id is `${commandId}:${i}`, so that a re-run of the
 * same load resends the same chunks (each answered as a duplicate); without a commandId, every
 * chunk gets a fresh UUID.
 */
export function ingestRequests(
  init: { readonly series: string; readonly source: string; readonly commandId?: string },
  columns: PointColumns,
  chunkRows = MAX_ROWS,
): IngestPointsRequest[] {
  return chunkColumns(columns, chunkRows).map((chunk, i) =>
    create(IngestPointsRequestSchema, {
      commandId: init.commandId === undefined ? crypto.randomUUID() : `${init.commandId}:${i}`,
      series: init.series,
      source: init.source,
      columns: chunk,
    }),
  );
}

/**
 * Sends `requests` (the chunks of {@link ingestRequests}) over one BulkIngest stream and yields
 * each chunk's answer, in order, as it is committed or rejected: a rejected chunk's
 * `outcome.case` is "error" ({@link QisError.fromStatus} decodes it), and the chunks after it
 * go on. Breaking out of the loop cancels the stream.
 */
export async function* bulkIngest(
  command: Client<typeof CommandService>,
  requests: readonly IngestPointsRequest[],
  options?: CallOptions,
): AsyncGenerator<BulkIngestResponse, void, undefined> {
  async function* chunks() {
    yield* requests;
  }
  yield* command.bulkIngest(chunks(), options);
}

/** OHLC bars in columns of decimal strings; a volume is "" where unknown. */
export interface BarTexts {
  readonly open: string[];
  readonly high: string[];
  readonly low: string[];
  readonly close: string[];
  readonly volume: string[];
}

/** The decimal string of `unscaled` × 10^-scale: `formatScaled(-5n, 2) === "-0.05"`. */
export function formatScaled(unscaled: bigint, scale: number): string {
  const sign = unscaled < 0n ? "-" : "";
  let digits = (unscaled < 0n ? -unscaled : unscaled).toString();
  if (scale <= 0) return sign + digits;
  digits = digits.padStart(scale + 1, "0");
  return `${sign}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

function textsOf(c: DecimalColumn | undefined): string[] {
  if (c === undefined) return [];
  return c.unscaled.length > 0 ? c.unscaled.map((u) => formatScaled(u, c.scale)) : [...c.texts];
}

/** A Date of microseconds since 1970-01-01T00:00:00Z (to the millisecond, as a Date holds). */
export function microsDate(micros: bigint): Date {
  return new Date(Number(micros / 1000n) - (micros % 1000n < 0n ? 1 : 0));
}

/** A Timestamp of microseconds since 1970-01-01T00:00:00Z, exact (for {@link formatSnap}). */
export function microsTimestamp(micros: bigint): Timestamp {
  // Division truncates toward zero: the floor of a negative instant is one second earlier.
  const floor = micros / 1_000_000n - (micros < 0n && micros % 1_000_000n !== 0n ? 1n : 0n);
  return create(TimestampSchema, {
    seconds: floor,
    nanos: Number(micros - floor * 1_000_000n) * 1000,
  });
}

const PARTS = ["open", "high", "low", "close", "volume"] as const;

/** Typed rows (a kind's decimal strings or bars, in `unit`) as the per-point view's DataValues. */
function dataValues(kind: string, unit: string, values: string[], bars: BarTexts): DataValue[] {
  switch (kind) {
    case "prices":
      return values.map((value) =>
        create(DataValueSchema, { kind: { case: "price", value: { value, currency: unit } } }),
      );
    case "volumes":
      return values.map((quantity) =>
        create(DataValueSchema, { kind: { case: "volume", value: { quantity, unit } } }),
      );
    case "bars":
      return bars.open.map((open, i) =>
        create(DataValueSchema, {
          kind: {
            case: "bar",
            value: {
              open,
              high: bars.high[i] ?? "",
              low: bars.low[i] ?? "",
              close: bars.close[i] ?? "",
              volume: bars.volume[i] ?? "",
            },
          },
        }),
      );
    default:
      return [];
  }
}

/**
 * Curves or surfaces in columns (row i owns the next `nodeCounts[i]` nodes; coordinates only for
 * surfaces) put back together into whole DataValues, as the per-point view carries them; a
 * RangeError when the node columns do not line up.
 */
function structureValues(s: StructureColumns): DataValue[] {
  const values = textsOf(s.values);
  const { tenors, coordinates } = s;
  const total = s.nodeCounts.reduce((sum, n) => sum + n, 0);
  if (
    s.nodeCounts.some((n) => n < 1) ||
    total !== tenors.length ||
    values.length !== tenors.length ||
    (coordinates.length !== 0 && coordinates.length !== tenors.length)
  ) {
    throw new RangeError(
      `malformed columns: node_counts add up to ${total}, there are ${tenors.length} tenors,` +
        ` ${values.length} values, ${coordinates.length} coordinates`,
    );
  }
  const out: DataValue[] = [];
  let start = 0;
  for (const n of s.nodeCounts) {
    const at = Array.from({ length: n }, (_, i) => start + i);
    start += n;
    out.push(
      coordinates.length === 0
        ? create(DataValueSchema, {
            kind: {
              case: "termStructure",
              value: { nodes: at.map((i) => ({ tenor: tenors[i], value: values[i] })) },
            },
          })
        : create(DataValueSchema, {
            kind: {
              case: "surface",
              value: {
                nodes: at.map((i) => ({
                  tenor: tenors[i],
                  coordinate: coordinates[i],
                  value: values[i],
                })),
              },
            },
          }),
    );
  }
  return out;
}

/**
 * Official values in columns, row i of each array being one value: what
 * {@link queryRangeColumns} returns, every page put together ({@link ValueColumns.append}
 * reads one answer, a GetValues response's too). `kind` says where the values are: "prices" or
 * "volumes" in `values` (decimal strings as published), "bars" in `bars`, "other" (options
 * chains, corporate actions, and curves and surfaces put back together from their nodes) in
 * `other`; "" while there is no row. Instants are microseconds
 * since 1970-01-01T00:00:00Z ({@link microsDate}, {@link microsTimestamp}).
 *
 * Pages may differ in case: a page holding a value in another currency or unit than the
 * series' current one (published before a schema evolution changed the unit) carries its
 * values in `other`, the other pages in `prices`, `volumes` or `bars`; typed pages may also
 * state different units (the unit changed between two calls of a range). The typed columns
 * stay while every page with rows has the same case and unit. Once they differ, the rows read
 * so far and every later page become DataValues in `other` and `kind` becomes "other": a price
 * text and its page's unit make Price{value, currency: unit}, a volume Volume{quantity, unit},
 * a bar an OhlcBar; `other` then holds what the per-point view does, row for row, and `unit`
 * is the series' unit as the last page with rows stated it. Prices after volumes (or bars)
 * stay malformed: a series' data type never changes.
 */
export class ValueColumns {
  readonly snapTimeMicros: bigint[] = [];
  readonly versions: number[] = [];
  kind: "" | "prices" | "volumes" | "bars" | "other" = "";
  readonly values: string[] = [];
  readonly bars: BarTexts = { open: [], high: [], low: [], close: [], volume: [] };
  readonly other: DataValue[] = [];
  /** The currency (prices, bars) or unit (volumes) of every row of `values` or `bars`. */
  unit = "";
  readonly qualityScores: number[] = [];
  readonly recordTimeMicros: bigint[] = [];
  readonly recordPositions: bigint[] = [];
  /** 0n while current. */
  readonly supersedePositions: bigint[] = [];
  readonly methods: ValueMethod[] = [];
  /** Each row's flags, decoded from `flag_counts` + `flags`. */
  readonly flags: QualityRule[][] = [];
  /** The least of the answers' read positions: the whole reflects at least it. */
  readPosition = 0n;
  /** The typed case (prices, volumes, bars) of every typed page with rows so far. */
  #typed = "";

  get length(): number {
    return this.snapTimeMicros.length;
  }

  /**
   * Adds the rows of one answer, after checking that its columns line up (a RangeError
   * otherwise, and nothing is added).
   */
  append(columns: OfficialValueColumns, readPosition = 0n): void {
    const rows = columns.snapTimeMicros.length;
    const v = columns.values;
    const lengths: Record<string, number> = {
      versions: columns.versions.length,
      qualityScores: columns.qualityScores.length,
      recordTimeMicros: columns.recordTimeMicros.length,
      recordPositions: columns.recordPositions.length,
      supersedePositions: columns.supersedePositions.length,
      methods: columns.methods.length,
    };
    let values: string[] = [];
    let bars: BarTexts = { open: [], high: [], low: [], close: [], volume: [] };
    let other: DataValue[] = [];
    if (v.case === "prices" || v.case === "volumes") {
      values = textsOf(v.value);
      lengths[v.case] = values.length;
    } else if (v.case === "bars") {
      const volume = textsOf(v.value.volume);
      bars = {
        open: textsOf(v.value.open),
        high: textsOf(v.value.high),
        low: textsOf(v.value.low),
        close: textsOf(v.value.close),
        volume: volume.length > 0 ? volume : new Array<string>(rows).fill(""),
      };
      for (const [part, texts] of Object.entries(bars)) lengths[`bars.${part}`] = texts.length;
    } else if (v.case === "other") {
      other = v.value.values;
      lengths.other = other.length;
    } else if (v.case === "structures") {
      other = structureValues(v.value); // whole curves and surfaces, as in `other`
      lengths.other = other.length;
    } else if (rows > 0) {
      throw new RangeError(`malformed columns: ${rows} rows without values`);
    }
    const kind = v.case === "structures" ? "other" : (v.case ?? "");
    if (rows > 0 && kind !== "other" && this.#typed && kind !== this.#typed) {
      throw new RangeError(`malformed columns: ${kind} after ${this.#typed}`);
    }
    const counts =
      columns.flagCounts.length === 0 && columns.flags.length === 0
        ? new Array<number>(rows).fill(0) // no row has a flag
        : columns.flagCounts;
    lengths.flagCounts = counts.length;
    const uneven = Object.entries(lengths).filter(([, n]) => n !== rows);
    if (uneven.length > 0) {
      throw new RangeError(
        `malformed columns: ${rows} snaps, ${uneven.map(([f, n]) => `${n} ${f}`).join(", ")}`,
      );
    }
    const total = counts.reduce((sum, n) => sum + n, 0);
    if (counts.some((n) => n < 0) || total !== columns.flags.length) {
      throw new RangeError(
        `malformed columns: flag_counts add up to ${total}, for ${columns.flags.length} flags`,
      );
    }
    let start = 0;
    for (const n of counts) {
      this.flags.push(columns.flags.slice(start, start + n));
      start += n;
    }
    const unit = columns.unit;
    if (this.length === 0) {
      // Nothing to line up with yet: the first page with rows sets the case and unit.
      if (rows > 0 || kind) this.kind = kind;
      if (rows > 0 || unit) this.unit = unit;
    } else if (rows > 0 && (this.kind === "other" || kind === "other" || unit !== this.unit)) {
      if (this.kind !== "other") {
        this.other.push(...dataValues(this.kind, this.unit, this.values, this.bars));
        this.values.length = 0;
        for (const part of PARTS) this.bars[part].length = 0;
        this.kind = "other";
      }
      if (unit) this.unit = unit;
    } // else an empty page (the end of a range) changes nothing
    if (rows > 0 && kind !== "other") this.#typed = kind;
    if (this.kind === "other" && kind !== "other") {
      this.other.push(...dataValues(kind, unit, values, bars));
    } else {
      this.values.push(...values);
      for (const part of PARTS) this.bars[part].push(...bars[part]);
      this.other.push(...other);
    }
    this.snapTimeMicros.push(...columns.snapTimeMicros);
    this.versions.push(...columns.versions);
    this.qualityScores.push(...columns.qualityScores);
    this.recordTimeMicros.push(...columns.recordTimeMicros);
    this.recordPositions.push(...columns.recordPositions);
    this.supersedePositions.push(...columns.supersedePositions);
    this.methods.push(...columns.methods);
    if (readPosition !== 0n && (this.readPosition === 0n || readPosition < this.readPosition)) {
      this.readPosition = readPosition;
    }
  }
}

/**
 * A whole range in the columnar view (`view: ValueView.COLUMNS`: the same values, pages and
 * tokens as the per-point view), following `next_page_token` across calls as
 * {@link queryRange} does, into one {@link ValueColumns}.
 *
 *     const cols = await queryRangeColumns(qis.query, { series: "series/X" });
 *     cols.values[0], cols.snapTimeMicros[0], cols.flags[0]
 */
export async function queryRangeColumns(
  query: Client<typeof QueryService>,
  request: QueryRangeInit,
  options?: CallOptions & { readonly pageToken?: string },
): Promise<ValueColumns> {
  const columns = new ValueColumns();
  const columnar = { ...request, view: ValueView.COLUMNS };
  for await (const page of queryRangePages(query, columnar, options)) {
    columns.append(page.columns ?? create(OfficialValueColumnsSchema), page.readPosition);
  }
  return columns;
}

// ---------------------------------------------------------------------------------------------
// Errors

const DETAILS = createRegistry(
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
  ResourceInfoSchema,
);

export interface FieldViolation {
  /** Path of the field in the request, e.g. "points[17].value.price.value". */
  readonly field: string;
  readonly description: string;
  readonly reason: string;
}

/**
 * A failed call: its gRPC code and the google.rpc details of its `grpc-status-details-bin`
 * trailer (a google.rpc.Status), decoded and typed. `codeName` is the gRPC name
 * ("INVALID_ARGUMENT").
 */
export class QisError extends ConnectError {
  /** google.rpc.BadRequest: every violation of the request (INVALID_ARGUMENT). */
  readonly fieldViolations: readonly FieldViolation[];
  /** google.rpc.ErrorInfo: a stable reason, domain "qis.data" (e.g. COMMAND_ID_REUSED). */
  readonly errorInfo: ErrorInfo | undefined;
  /** google.rpc.RetryInfo: how long to wait before resending (same command id). */
  readonly retryDelayMs: number | undefined;
  /** google.rpc.ResourceInfo: what was not found. */
  readonly resourceInfo: ResourceInfo | undefined;

  constructor(
    message: string,
    code: Code,
    init: {
      metadata?: HeadersInit;
      cause?: unknown;
      violations?: readonly BadRequest_FieldViolation[];
      errorInfo?: ErrorInfo;
      retryDelayMs?: number;
      resourceInfo?: ResourceInfo;
    } = {},
  ) {
    super(message, code, init.metadata, undefined, init.cause);
    // `name` stays "ConnectError": Connect recognises its errors by name and shape (not by
    // prototype), and would wrap any other error an interceptor throws into UNKNOWN.
    this.fieldViolations = (init.violations ?? []).map(({ field, description, reason }) => ({
      field,
      description,
      reason,
    }));
    this.errorInfo = init.errorInfo;
    this.retryDelayMs = init.retryDelayMs;
    this.resourceInfo = init.resourceInfo;
  }

  /**
   * A real instanceof: ConnectError's own check accepts any ConnectError-shaped object (to work
   * across copies of the library), which would make every ConnectError pass as a QisError.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  /** "INVALID_ARGUMENT", "NOT_FOUND", ... as gRPC names them. */
  get codeName(): string {
    return Code[this.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  }

  /** A google.rpc.Status as a QisError: a rejected BulkIngest chunk's `error`. */
  static fromStatus(status: Status): QisError {
    const error = new ConnectError(status.message, status.code as Code);
    error.details = status.details.map((any) => ({
      type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1),
      value: any.value,
    }));
    return QisError.from(error);
  }

  /** Any error (a ConnectError, an AbortError, anything) as a QisError. */
  static override from(e: unknown): QisError {
    if (e instanceof QisError) {
      return e;
    }
    const error = ConnectError.from(e);
    const details = error.findDetails(DETAILS);
    const violations: BadRequest_FieldViolation[] = [];
    let errorInfo: ErrorInfo | undefined;
    let retryDelayMs: number | undefined;
    let resourceInfo: ResourceInfo | undefined;
    for (const detail of details) {
      if (isMessage(detail, BadRequestSchema)) {
        violations.push(...detail.fieldViolations);
      } else if (isMessage(detail, ErrorInfoSchema)) {
        errorInfo = detail;
      } else if (isMessage(detail, RetryInfoSchema)) {
        retryDelayMs = detail.retryDelay ? durationMs(detail.retryDelay) : undefined;
      } else if (isMessage(detail, ResourceInfoSchema)) {
        resourceInfo = detail;
      }
    }
    const qis = new QisError(error.rawMessage, error.code, {
      metadata: error.metadata,
      cause: error.cause ?? e,
      violations,
      errorInfo,
      retryDelayMs,
      resourceInfo,
    });
    (qis as { details: ConnectError["details"] }).details = error.details;
    return qis;
  }
}
