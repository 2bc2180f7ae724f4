/**
 * A first session from TypeScript: registers a source, defines a series, ingests three daily
 * closes, reads them back (latest and as known before a correction), receives them on a
 * subscription, and shows how a malformed request is answered.
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
  connectQis,
  decimalOf,
  price,
  queryRange,
  subscribe,
  timestamp,
  timestampDate,
  toSnap,
} from "../src/qis.js";
import type { OfficialValue, SubscriptionBatch } from "../src/qis.js";

const { values: args } = parseArgs({
  options: {
    command: { type: "string", default: process.env.QIS_COMMAND_ADDRESS ?? "127.0.0.1:50051" },
    query: { type: "string", default: process.env.QIS_QUERY_ADDRESS ?? "127.0.0.1:50052" },
    user: { type: "string", default: process.env.QIS_USER || userInfo().username },
    "page-size": { type: "string" },
  },
});

const show = (v: OfficialValue) =>
  `${v.snap ? timestampDate(v.snap).toISOString() : "?"} ${decimalOf(v.value)} (v${v.version})`;

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

  await qis.command.registerDataSource({
    commandId: randomUUID(),
    sourceId,
    source: { provider: "example", enabled: true },
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

  // Closes at 16:00 New York time (UTC-05:00 in winter): snaps carry their offset.
  const closes: Array<[Date, string]> = [
    [new Date("2024-03-01T21:00:00Z"), "5137.08"],
    [new Date("2024-03-04T21:00:00Z"), "5130.95"],
    [new Date("2024-03-05T21:00:00Z"), "5078.18"],
  ];
  const ingested = await qis.command.ingestPoints({
    commandId: randomUUID(),
    series,
    source: `sources/${sourceId}`,
    points: closes.map(([at, value]) => ({ snap: toSnap(at, -300), value: price(value) })),
  });
  console.log(
    `ingested ${ingested.accepted} points at position ${ingested.commitPosition} ` +
      `(published ${ingested.published})`,
  );

  // Read your write: wait until the read side has projected the ingestion.
  const latest: OfficialValue[] = [];
  // queryRange follows next_page_token across calls (one call streams a bounded part).
  const pageSize = Number(args["page-size"] ?? 0);
  const range = { series, minPosition: ingested.commitPosition, pageSize };
  for await (const v of queryRange(qis.query, range)) {
    latest.push(v);
    console.log(`latest ${show(v)}`);
  }

  // A corrected close: a new version of that point. Then read it as known before the
  // correction: at the time its first version was recorded (the service's clock, not ours).
  const corrected = await qis.command.ingestPoints({
    commandId: randomUUID(),
    series,
    source: `sources/${sourceId}`,
    points: [{ snap: toSnap(closes[2]![0], -300), value: price("5078.20") }],
  });
  const snap = timestamp(closes[2]![0]);
  const knownAt = latest.at(-1)?.recordedFrom;
  if (!knownAt) throw new Error("no recorded_from on the latest value");
  const now = await qis.query.getValues({
    series,
    snaps: [snap],
    minPosition: corrected.commitPosition,
  });
  const then = await qis.query.getValues({
    series,
    snaps: [snap],
    asOf: { case: "knownAt", value: knownAt },
  });
  for (const v of now.values) console.log(`now ${show(v)}`);
  for (const v of then.values) {
    console.log(`as of ${timestampDate(knownAt).toISOString()} ${show(v)}`);
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

  // A malformed request: nothing is stored, and every violation comes back by field path.
  try {
    await qis.command.ingestPoints({
      commandId: randomUUID(),
      series,
      source: `sources/${sourceId}`,
      points: [
        { snap: "2024-03-06T16:00:00", value: price("5104.76") }, // no offset
        { snap: toSnap(new Date("2024-03-07T21:00:00Z")), value: price("1e400") }, // too large
      ],
    });
    throw new Error("the malformed request was accepted");
  } catch (e) {
    if (!(e instanceof QisError)) throw e;
    console.log(`${e.codeName}: ${e.rawMessage}`);
    for (const v of e.fieldViolations) console.log(`  ${v.field}: ${v.description}`);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof QisError ? `${e.codeName}: ${e.rawMessage}` : e);
  process.exitCode = 1;
});
