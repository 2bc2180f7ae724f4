/**
 * A first session from TypeScript: registers a source, defines a series, ingests three daily
 * closes, reads them back (latest in a time range, as known before a correction, and the
 * corrected point's history page by page), receives them on a subscription, lists the series'
 * open quality issues with a filter, ingests more closes in columns (one array per field, over
 * BulkIngest) and reads the range back in the columnar view (the same values as the per-point
 * view), and shows how a malformed request is answered.
 *
 *   npx tsx examples/quickstart.ts [--command HOST:PORT] [--query HOST:PORT] [--user NAME]
 *                                  [--page-size N]
 *
 * Defaults: $QIS_COMMAND_ADDRESS, $QIS_QUERY_ADDRESS (127.0.0.1:50051 / :50052) and $QIS_USER
 * (else the login name), as for the `qis` command. Ids get a fresh suffix, so it can run again
 * against the same services. --page-size sets QueryRange's points per message (the service's
 * default otherwise).
 */
import { randomUUID } from "node:crypto";
import { userInfo } from "node:os";
import { parseArgs } from "node:util";

import {
  DataType,
  Frequency,
  QisError,
  QualityIssueStatus,
  QualityRule,
  ValueMethod,
  and,
  bulkIngest,
  connectQis,
  decimalOf,
  enumName,
  formatSnap,
  getPointHistory,
  ingestRequests,
  listQualityIssues,
  microsDate,
  point,
  price,
  priceColumns,
  queryRange,
  queryRangeColumns,
  snapTime,
  subscribe,
  timestampDate,
} from "../src/qis.js";
import type { OfficialValue, SubscriptionBatch, ValueColumns } from "../src/qis.js";

const { values: args } = parseArgs({
  options: {
    command: { type: "string", default: process.env.QIS_COMMAND_ADDRESS ?? "127.0.0.1:50051" },
    query: { type: "string", default: process.env.QIS_QUERY_ADDRESS ?? "127.0.0.1:50052" },
    user: { type: "string", default: process.env.QIS_USER || userInfo().username },
    "page-size": { type: "string" },
  },
});

/** New York's offset in winter, minutes east of UTC: the closes are observed at 16:00-05:00. */
const NEW_YORK = -300;

// Snaps come back as instants (snap_time); methods and flags as enums, shown by name.
const show = (v: OfficialValue) =>
  `${v.snapTime ? timestampDate(v.snapTime).toISOString() : "?"} ${decimalOf(v.value)} ` +
  `v${v.version} ${enumName(ValueMethod, v.method)} ` +
  `flags ${v.flags.map((f) => enumName(QualityRule, f)).join(",") || "-"}`;

const micros = (v: OfficialValue["snapTime"]) =>
  v ? v.seconds * 1_000_000n + BigInt(v.nanos / 1000) : undefined;

/** Throws unless both views hold the same values, field for field. */
function sameValues(cols: ValueColumns, points: readonly OfficialValue[]): void {
  if (cols.length !== points.length) {
    throw new Error(`${cols.length} values in columns, ${points.length} per point`);
  }
  points.forEach((v, i) => {
    const price = v.value?.kind.case === "price" ? v.value.kind.value : undefined;
    const same =
      cols.snapTimeMicros[i] === micros(v.snapTime) &&
      cols.versions[i] === v.version &&
      cols.values[i] === price?.value &&
      cols.unit === price?.currency &&
      cols.qualityScores[i] === v.qualityScore &&
      cols.recordTimeMicros[i] === micros(v.recordTime) &&
      cols.recordPositions[i] === v.recordPosition &&
      cols.supersedePositions[i] === v.supersedePosition &&
      cols.methods[i] === v.method &&
      cols.flags[i]?.join() === v.flags.join();
    if (!same) throw new Error(`row ${i} differs: columns ${cols.values[i]}, per point ${show(v)}`);
  });
}

async function main(): Promise<void> {
  await using qis = connectQis({
    commandAddress: args.command,
    queryAddress: args.query,
    identity: { user: args.user }, // or { bearerToken: "..." } once tokens are checked
  });
  const run = Date.now().toString(36);
  const sourceId = `ts-quickstart-${run}`;
  const seriesId = `TS.QUICKSTART.${run}`;
  const series = `series/${seriesId}`;

  // A source is in use unless `disabled` is set.
  await qis.command.registerDataSource({
    commandId: randomUUID(),
    sourceId,
    source: { provider: "example" },
  });
  console.log(`registered sources/${sourceId}`);

  const defined = await qis.command.defineSeries({
    commandId: randomUUID(),
    seriesId,
    series: {
      dataType: DataType.PRICE,
      frequency: Frequency.DAILY,
      unit: "USD",
      sources: [{ source: `sources/${sourceId}`, priority: 1 }],
      validation: { requirePositive: true },
    },
  });
  console.log(`defined ${series}`);

  // Subscribe before ingesting (the values arrive as they are published), once the read side
  // knows the series: a subscription to a series it does not know yet is NOT_FOUND.
  await qis.query.getSeries({ name: series, minPosition: defined.commitPosition });
  const abort = new AbortController();
  const received: Promise<SubscriptionBatch[]> = (async () => {
    const batches: SubscriptionBatch[] = [];
    let count = 0;
    for await (const batch of subscribe(qis.query, { series: [series], signal: abort.signal })) {
      batches.push(batch);
      count += batch.values.length;
      if (count >= 3) break;
    }
    return batches;
  })();

  // Closes at 16:00 New York time: each point's snap_time is the instant (21:00Z), its
  // utc_offset the offset the source stated (-05:00), kept as lineage.
  const closes: Array<[Date, string]> = [
    [new Date("2024-03-01T21:00:00Z"), "5137.08"],
    [new Date("2024-03-04T21:00:00Z"), "5130.95"],
    [new Date("2024-03-05T21:00:00Z"), "5078.18"],
  ];
  const ingested = await qis.command.ingestPoints({
    commandId: randomUUID(),
    series,
    source: `sources/${sourceId}`,
    points: closes.map(([at, value]) => point(at, price(value), NEW_YORK)),
  });
  console.log(
    `ingested ${ingested.accepted} points at position ${ingested.commitPosition} ` +
      `(published ${ingested.published})`,
  );

  // Read your write: wait until the read side has projected the ingestion. The range is
  // [start_time, end_time): March 2024.
  const latest: OfficialValue[] = [];
  // queryRange follows next_page_token across calls (one call streams a bounded part).
  const pageSize = Number(args["page-size"] ?? 0);
  const range = {
    series,
    startTime: snapTime(new Date("2024-03-01T00:00:00Z")),
    endTime: snapTime(new Date("2024-04-01T00:00:00Z")),
    minPosition: ingested.commitPosition,
    pageSize,
  };
  for await (const v of queryRange(qis.query, range)) {
    latest.push(v);
    console.log(`latest ${show(v)}`);
  }

  // A corrected close from the source: a new version of that point. Then read it as known
  // before the correction: at the time its first version was recorded (the service's clock).
  const [lastAt] = closes[2]!;
  const corrected = await qis.command.ingestPoints({
    commandId: randomUUID(),
    series,
    source: `sources/${sourceId}`,
    points: [point(lastAt, price("5078.20"), NEW_YORK)],
  });
  const snap = snapTime(lastAt);
  const knownAt = latest.at(-1)?.recordTime;
  if (!knownAt) throw new Error("no record_time on the latest value");
  const now = await qis.query.getValues({
    series,
    snapTimes: [snap],
    minPosition: corrected.commitPosition,
  });
  const then = await qis.query.getValues({
    series,
    snapTimes: [snap],
    asOf: { case: "asOfTime", value: knownAt },
  });
  for (const v of now.values) console.log(`now ${show(v)}`);
  for (const v of then.values) {
    console.log(`as of ${timestampDate(knownAt).toISOString()} ${show(v)}`);
  }

  // The point's history, one version or observation per page (getPointHistory reads them all):
  // what each source sent, at the offset it stated.
  const history = await getPointHistory(qis.query, {
    series,
    snapTime: snap,
    minPosition: corrected.commitPosition,
    pageSize: 1,
  });
  for (const v of history.versions) console.log(`history ${show(v)}`);
  for (const o of history.observations) {
    console.log(
      `observed ${formatSnap(snap, o.utcOffset)} ${decimalOf(o.value)} from ${o.source} ` +
        `at position ${o.recordPosition}`,
    );
  }

  let timer: NodeJS.Timeout | undefined;
  const batches = await Promise.race([
    received,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no subscription batch within 20 s")), 20_000);
    }),
  ]).finally(() => clearTimeout(timer));
  abort.abort();
  for (const batch of batches) {
    for (const v of batch.values) console.log(`subscription ${v.series} ${show(v)}`);
  }
  console.log(`subscription resume token ${batches.at(-1)?.resumeToken}`);

  // The exception queue of the series: an AIP-160 filter on the parent's issues (an empty
  // filter would list every status).
  const open = and(`status = ${enumName(QualityIssueStatus, QualityIssueStatus.OPEN)}`);
  let issues = 0;
  for await (const issue of listQualityIssues(qis.query, {
    parent: series,
    filter: open,
    minPosition: corrected.commitPosition,
  })) {
    issues += 1;
    console.log(`issue ${issue.issueId} ${enumName(QualityRule, issue.rule)}`);
  }
  console.log(`quality issues (${open}): ${issues}`);

  // Columns: more closes as one array of Dates and one of prices (decimal strings, or
  // { unscaled, scale } integers), observed at 16:00-05:00; the currency is the series' own.
  // ingestRequests cuts them into requests of at most MAX_ROWS rows (one here), bulkIngest
  // streams them and yields each chunk's answer.
  const later = ["2024-03-11", "2024-03-12", "2024-03-13"].map((d) => new Date(`${d}T21:00:00Z`));
  const more = priceColumns(later, ["5117.94", "5175.27", "5165.31"], NEW_YORK);
  let position = corrected.commitPosition;
  const chunks = ingestRequests({ series, source: `sources/${sourceId}` }, more);
  for await (const answer of bulkIngest(qis.command, chunks)) {
    if (answer.outcome.case === "error") throw QisError.fromStatus(answer.outcome.value);
    const result = answer.outcome.value;
    console.log(`ingested ${result?.accepted} points in columns (published ${result?.published})`);
    if (result && result.commitPosition > position) position = result.commitPosition;
  }
  // The range in the columnar view (pages and calls as in the per-point view), and the
  // per-point view of it: the same values.
  const cols = await queryRangeColumns(qis.query, { ...range, minPosition: position });
  const points: OfficialValue[] = [];
  for await (const v of queryRange(qis.query, { ...range, minPosition: position })) points.push(v);
  for (let i = 0; i < cols.length; i += 1) {
    const flags = cols.flags[i]?.map((f) => enumName(QualityRule, f)).join(",") || "-";
    console.log(
      `columns ${microsDate(cols.snapTimeMicros[i]!).toISOString()} ${cols.values[i]} ` +
        `${cols.unit} v${cols.versions[i]} ${enumName(ValueMethod, cols.methods[i]!)} flags ${flags}`,
    );
  }
  sameValues(cols, points);
  console.log(`columnar read = per-point read: ${cols.length} values`);

  // A malformed request: nothing is stored, and every violation comes back by field path.
  // point() refuses an offset of seconds, so this one is built by hand.
  try {
    await qis.command.ingestPoints({
      commandId: randomUUID(),
      series,
      source: `sources/${sourceId}`,
      points: [
        {
          snapTime: snapTime(new Date("2024-03-06T21:00:00Z")),
          utcOffset: { seconds: 30n }, // not whole minutes
          value: price("5104.76"),
        },
        point(new Date("2024-03-07T21:00:00Z"), price("1e400")), // too large
      ],
    });
    throw new Error("the malformed request was accepted");
  } catch (e) {
    if (!(e instanceof QisError)) throw e;
    console.log(`${e.codeName} (${e.errorInfo?.reason ?? "no reason"}): ${e.rawMessage}`);
    for (const v of e.fieldViolations) console.log(`  ${v.field}: ${v.description}`);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof QisError ? `${e.codeName}: ${e.rawMessage}` : e);
  process.exitCode = 1;
});
