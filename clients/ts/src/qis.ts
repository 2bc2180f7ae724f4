/**
 * A small, idiomatic layer over the generated qis-data clients (src/gen, protobuf-es + Connect,
 * gRPC protocol over HTTP/2):
 *
 * - {@link connectQis}: command and query clients, with the caller's identity in call metadata
 *   (`x-qis-user` in development mode, or `authorization: Bearer ...`: same call sites);
 * - decimals are strings, never JS numbers ({@link decimal}, {@link price}, {@link decimalOf});
 * - {@link toSnap}: RFC 3339 snaps with an explicit offset from a `Date`;
 * - {@link queryRange}: every official value of a range, following `next_page_token` across
 *   calls (one QueryRange call streams a bounded number of points);
 * - {@link subscribe}: Subscribe as an async iterator of batches with resume tokens, which
 *   reconnects from the last token after a transient failure;
 * - {@link QisError}: a failed call with its google.rpc error details (BadRequest, ErrorInfo,
 *   RetryInfo, ResourceInfo) decoded from the `grpc-status-details-bin` trailer.
 */
import { create, createRegistry, isMessage } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
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
import { CommandService } from "./gen/qis/data/v1/command_service_pb.js";
import { QueryService } from "./gen/qis/data/v1/query_service_pb.js";
import type {
  OfficialValue,
  QueryRangeRequest,
  QueryRangeRequestSchema,
  SubscribeResponse,
} from "./gen/qis/data/v1/query_service_pb.js";
import { DataValueSchema } from "./gen/qis/data/v1/values_pb.js";
import type { DataValue } from "./gen/qis/data/v1/values_pb.js";

export * from "./gen/qis/data/v1/command_service_pb.js";
export * from "./gen/qis/data/v1/query_service_pb.js";
export * from "./gen/qis/data/v1/series_pb.js";
export * from "./gen/qis/data/v1/values_pb.js";
export { Code, ConnectError, create };
export { timestampDate, timestampFromDate };
export type { Timestamp };

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

/**
 * A Date as an RFC 3339 snap with an explicit offset (the service refuses a snap without one):
 * `"Z"` by default, or the given offset in minutes east of UTC (`-300` for New York in
 * winter), or `"local"` for this machine's offset at that instant. Milliseconds are written
 * only when not zero.
 *
 *     toSnap(new Date("2024-03-01T21:00:00Z"), -300) === "2024-03-01T16:00:00-05:00"
 */
export function toSnap(date: Date, offset: number | "local" | "Z" = "Z"): string {
  const ms = date.getTime();
  if (Number.isNaN(ms)) {
    throw new RangeError("invalid Date");
  }
  const minutes = offset === "Z" ? 0 : offset === "local" ? -date.getTimezoneOffset() : offset;
  if (!Number.isInteger(minutes) || Math.abs(minutes) >= 24 * 60) {
    throw new RangeError(`invalid UTC offset: ${minutes} minutes`);
  }
  const t = new Date(ms + minutes * 60_000); // wall clock at that offset, read with getUTC*
  const year = t.getUTCFullYear();
  if (year < 1 || year > 9999) {
    throw new RangeError(`snap out of range: ${date.toISOString()}`);
  }
  const fraction = t.getUTCMilliseconds() ? `.${pad(t.getUTCMilliseconds(), 3)}` : "";
  const zone =
    offset === "Z"
      ? "Z"
      : `${minutes < 0 ? "-" : "+"}${pad(Math.floor(Math.abs(minutes) / 60))}:${pad(Math.abs(minutes) % 60)}`;
  return (
    `${pad(year, 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}` +
    `T${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}${fraction}${zone}`
  );
}

/** A Timestamp (of a query request) from a Date or an RFC 3339 string with an offset. */
export function timestamp(at: Date | string): Timestamp {
  const date = typeof at === "string" ? new Date(at) : at;
  if (Number.isNaN(date.getTime())) {
    throw new RangeError(`not a date-time: ${String(at)}`);
  }
  return timestampFromDate(date);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** A QueryRange request as a plain object, without the page token (that is the iterator's). */
export type QueryRangeInit = Omit<
  Exclude<MessageInitShape<typeof QueryRangeRequestSchema>, QueryRangeRequest>,
  "pageToken" | "$typeName"
>;

/**
 * Every official value of a range, ascending by snap. A QueryRange call streams a bounded part
 * of a long range and ends with a `next_page_token`; this calls again with it until a message
 * carries an empty one. Breaking out of the loop cancels the call in flight.
 */
export async function* queryRange(
  query: Client<typeof QueryService>,
  request: QueryRangeInit,
  options?: CallOptions & { readonly pageToken?: string },
): AsyncGenerator<OfficialValue, void, undefined> {
  let pageToken = options?.pageToken ?? "";
  for (;;) {
    let next = "";
    let messages = 0;
    for await (const page of query.queryRange({ ...request, pageToken }, options)) {
      messages += 1;
      next = page.nextPageToken;
      yield* page.values;
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
