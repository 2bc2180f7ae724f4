"""`qis feed PROVIDER ...`: a one-off history load from a provider into one series.

The same runner and sender as the long-running qis-feeds process (services/feeds), with chunks
closed on size only: the same load makes the same chunks, whose ids come from their content, so
running it again (after a failure, or by mistake) stores nothing twice and resumes where the
first run stopped. A chunk the service refuses for good (an unknown series, no permission) stops
the load, since every other chunk would be refused alike.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
from qis.data.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from qis_feeds.adapters.bloomberg import (
    BbgField,
    BbgInstrument,
    BloombergError,
    BloombergProvider,
    BloombergUnavailable,
    BlpapiSession,
)
from qis_feeds.adapters.bulk_ingest import BulkIngestSender, SenderSettings, SendStopped
from qis_feeds.adapters.coingecko import CALLS_PER_MINUTE as COINGECKO_CALLS_PER_MINUTE
from qis_feeds.adapters.coingecko import KEY_ENV as COINGECKO_KEY_ENV
from qis_feeds.adapters.coingecko import (
    CoinGeckoProvider,
    CoinGeckoSettings,
    CoinInstrument,
    Field,
    Granularity,
    Plan,
)
from qis_feeds.adapters.http import VendorError
from qis_feeds.adapters.iex_hist import IexField, IexHistProvider, IexInstrument
from qis_feeds.adapters.lseg import (
    LsegError,
    LsegInstrument,
    LsegLibrary,
    LsegProvider,
    LsegSettings,
    LsegUnavailable,
)
from qis_feeds.adapters.source_config import (
    CredentialsError,
    SourceSettings,
    calls_per_minute,
    credentials,
    read_source,
    retry_policy,
)
from qis_feeds.adapters.synthetic import Faults, SyntheticProvider, Walk
from qis_feeds.application.counters import FeedCounters
from qis_feeds.application.ports import DataProvider, HistoricalRequest
from qis_feeds.application.runner import Feed, FeedRunner, ProviderFailed, RunnerSettings

from qis_cli import reading
from qis_cli.connection import (
    CONNECT_TIMEOUT_S,
    channel_credentials,
    default_query_address,
    identity,
    normalise_name,
)
from qis_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, CliError, exit_code_of

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, tzinfo=UTC)
AddConnection = Callable[[argparse.ArgumentParser, str], None]
_FAULTS = ("gap", "jump", "spike", "stale", "late", "duplicate", "out_of_order", "disagree")


def _time(text: str) -> datetime:
    try:
        return reading.parse_time(text).ToDatetime(tzinfo=UTC)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _duration(text: str) -> timedelta:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return timedelta(seconds=float(text[: -len(suffix)]) * units[suffix])
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 500ms, 1s, 5m, 1h, 1d")


def _within(low: int, high: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"between {low:,} and {high:,}")
        return value

    return check


def _faults(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, rate = item.partition("=")
        if name not in _FAULTS:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(_FAULTS)}")
        try:
            found[name] = float(rate)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not NAME=PROBABILITY") from None
    return found


def add_feed_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], add_connection: AddConnection
) -> None:
    feed = commands.add_parser(
        "feed",
        help="load a provider's history of one instrument into a series (CoinGecko, Bloomberg,"
        " LSEG, IEX HIST files, synthetic)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    providers = feed.add_subparsers(
        dest="provider",
        required=True,
        metavar="PROVIDER",
        help="coingecko, bloomberg, lseg, iex-hist or synthetic",
    )

    coingecko = providers.add_parser(
        "coingecko",
        help="/coins/{id}/market_chart/range (price, market cap, volume) or /coins/{id}/ohlc",
    )
    coingecko.add_argument("--coin", required=True, help="CoinGecko's coin id, e.g. bitcoin")
    coingecko.add_argument("--vs-currency", default="usd", help="default: %(default)s")
    coingecko.add_argument(
        "--field", choices=[f.value for f in Field], default="price", help="default: %(default)s"
    )
    coingecko.add_argument(
        "--granularity",
        choices=[g.value for g in Granularity],
        default="daily",
        help="of market_chart values (default: %(default)s; 5m needs a pro plan)",
    )
    coingecko.add_argument(
        "--plan", choices=[p.value for p in Plan], default="demo", help="default: %(default)s"
    )
    coingecko.add_argument(
        "--api-key-env",
        metavar="VARIABLE",
        help="the environment variable holding the key (default: the source's credentials"
        f" reference, else {COINGECKO_KEY_ENV})",
    )
    coingecko.add_argument("--base-url", help="default: the plan's documented base URL")
    coingecko.add_argument(
        "--calls-per-minute",
        type=float,
        help=f"rate limit (default: the source's, else {COINGECKO_CALLS_PER_MINUTE:g})",
    )
    coingecko.add_argument(
        "--max-attempts",
        type=int,
        help="per call, retries included (default: the source's retry policy, else 5)",
    )
    coingecko.set_defaults(make_provider=_coingecko)

    synthetic = providers.add_parser(
        "synthetic", help="a seeded random walk with injected faults, for demos and tests"
    )
    synthetic.add_argument(
        "--step", type=_duration, default=timedelta(days=1), help="between snaps (default: 1d)"
    )
    synthetic.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    synthetic.add_argument(
        "--start-price", type=float, default=100.0, help="first value (default: %(default)s)"
    )
    synthetic.add_argument(
        "--faults",
        type=_faults,
        default={},
        metavar="NAME=P,...",
        help=f"probabilities per snap of: {', '.join(_FAULTS)}",
    )
    synthetic.add_argument("--second-source", help="also send each value from this source")
    synthetic.set_defaults(make_provider=_synthetic)

    iex = providers.add_parser(
        "iex-hist",
        help="IEX HIST files (TOPS/DEEP pcap or pcapng, .gz too): trades, quotes",
        description="IEX Cloud was shut down on 2024-08-31; this reads the exchange's HIST"
        " files, downloaded beforehand (docs/providers.md).",
    )
    iex.add_argument(
        "--file", type=Path, action="append", required=True, help="a HIST file (repeatable)"
    )
    iex.add_argument("--symbol", required=True, help="e.g. AAPL")
    iex.add_argument(
        "--field",
        choices=[f.value for f in IexField],
        default="price",
        help="price or volume (trades), bid or ask (quote updates); default: %(default)s",
    )
    iex.set_defaults(make_provider=_iex_hist)

    bloomberg = providers.add_parser(
        "bloomberg",
        help="//blp/refdata HistoricalDataRequest, daily (needs blpapi and a Terminal or B-PIPE)",
        description="blpapi is not on PyPI: docs/providers.md says where Bloomberg publishes it.",
    )
    bloomberg.add_argument("--security", required=True, help='e.g. "IBM US Equity"')
    bloomberg.add_argument(
        "--field",
        choices=[f.value for f in BbgField],
        default="PX_LAST",
        help="OHLC: bars of PX_OPEN/HIGH/LOW/LAST and VOLUME (default: %(default)s)",
    )
    bloomberg.add_argument("--host", default="localhost", help="default: %(default)s")
    bloomberg.add_argument("--port", type=int, default=8194, help="default: %(default)s")
    bloomberg.set_defaults(make_provider=_bloomberg)

    lseg = providers.add_parser(
        "lseg",
        help="lseg.data.get_history (needs the lseg extra and an LSEG session)",
        description="The session is lseg-data's own: its configuration file names it.",
    )
    lseg.add_argument("--ric", required=True, help="e.g. VOD.L")
    lseg.add_argument(
        "--field", default="TRDPRC_1", help="an LSEG field, e.g. TRDPRC_1, BID, ACVOL_UNS"
    )
    lseg.add_argument("--interval", default="daily", help="get_history's (default: %(default)s)")
    lseg.add_argument(
        "--session", help="as lseg-data's configuration names it (default: its default session)"
    )
    lseg.set_defaults(make_provider=_lseg)

    for parser in (coingecko, synthetic, iex, bloomberg, lseg):
        whole_file = parser is iex
        parser.add_argument("--series", required=True, help="series id (or series/ID)")
        parser.add_argument("--source", required=True, help="source id (or sources/ID)")
        parser.add_argument(
            "--start",
            type=_time,
            required=not whole_file,
            default=_EPOCH,
            help="RFC 3339, or a date" + (" (default: the whole file)" if whole_file else ""),
        )
        parser.add_argument(
            "--end",
            type=_time,
            required=not whole_file,
            default=_LAST,
            help="values before this time",
        )
        parser.add_argument(
            "--chunk-size",
            type=_within(1, 10_000),  # the service's limit of points per request
            default=1000,
            help="points per chunk (default: 1000)",
        )
        parser.add_argument(
            "--in-flight", type=_within(1, 64), default=8, help="chunks unacknowledged (default: 8)"
        )
        add_connection(parser, "command")
        parser.add_argument(
            "--query-address",
            default=default_query_address(),
            help="where the source's configuration is read (default: %(default)s)",
        )
        parser.set_defaults(run=cmd_feed)


def _coingecko(args: argparse.Namespace, series_id: str, source: SourceSettings) -> DataProvider:
    plan = Plan(args.plan)
    key = None
    if plan is not Plan.KEYLESS:
        try:
            key = credentials(args.api_key_env, source, COINGECKO_KEY_ENV)
        except CredentialsError as error:
            raise CliError(str(error)) from None
        if not key:
            where = args.api_key_env or COINGECKO_KEY_ENV
            raise CliError(f"the {plan} plan needs a key: set {where}")
    settings = CoinGeckoSettings(
        plan=plan,
        api_key=key,
        base_url=args.base_url,
        calls_per_minute=calls_per_minute(
            args.calls_per_minute, source, COINGECKO_CALLS_PER_MINUTE
        ),
        retry=retry_policy(args.max_attempts, source),
    )
    instrument = CoinInstrument(
        series_id, args.coin, args.vs_currency, Field(args.field), Granularity(args.granularity)
    )
    try:
        return CoinGeckoProvider([instrument], settings)
    except ValueError as error:
        raise CliError(str(error)) from None


def _iex_hist(args: argparse.Namespace, series_id: str, _: SourceSettings) -> DataProvider:
    return IexHistProvider([IexInstrument(series_id, args.symbol, IexField(args.field))], args.file)


def _bloomberg(args: argparse.Namespace, series_id: str, _: SourceSettings) -> DataProvider:
    instrument = BbgInstrument(series_id, args.security, BbgField(args.field))
    try:
        return BloombergProvider([instrument], BlpapiSession(args.host, args.port))
    except BloombergUnavailable as error:
        raise CliError(str(error), EXIT_FAILED) from None


def _lseg(args: argparse.Namespace, series_id: str, _: SourceSettings) -> DataProvider:
    instrument = LsegInstrument(series_id, args.ric, args.field)
    try:
        library = LsegLibrary(args.session)
    except LsegUnavailable as error:
        raise CliError(str(error), EXIT_FAILED) from None
    return LsegProvider([instrument], library, LsegSettings(interval=args.interval))


def _synthetic(args: argparse.Namespace, series_id: str, _: SourceSettings) -> DataProvider:
    faults = Faults(**args.faults, second_source=args.second_source)
    walk = Walk(series_id, args.start_price)
    return SyntheticProvider([walk], random.Random(args.seed), step=args.step, faults=faults)


def cmd_feed(args: argparse.Namespace) -> int:
    series_id = normalise_name(args.series, "series")
    source_id = normalise_name(args.source, "sources")
    if args.end <= args.start:
        raise CliError("--end must be after --start")
    source = asyncio.run(_source(args, source_id))
    if not source.enabled:
        raise CliError(f"sources/{source_id} is disabled: not fed (enable it first)", EXIT_FAILED)
    provider: DataProvider = args.make_provider(args, series_id, source)
    request = HistoricalRequest((series_id,), args.start, args.end)
    counters = asyncio.run(_load(args, Feed(args.provider, provider, source_id), request))
    print(f"{args.provider} -> series/{series_id} from sources/{source_id}")
    print(f"  {counters.summary()}")
    if isinstance(provider, IexHistProvider):
        print(f"  {provider.stats.summary()}")
    return EXIT_FAILED if counters.dropped else EXIT_OK


def _channel(address: str) -> grpc.aio.Channel:
    tls = channel_credentials()
    if tls is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, tls)


async def _source(args: argparse.Namespace, source_id: str) -> SourceSettings:
    """The source's configuration (unreadable: nothing it states overrides, and a warning)."""
    async with _channel(args.query_address) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        return await read_source(stub, identity(args.user, args.token), source_id)


async def _load(args: argparse.Namespace, feed: Feed, request: HistoricalRequest) -> FeedCounters:
    async with _channel(args.address) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise CliError(
                f"cannot reach the command service at {args.address} — is `qis up` running?",
                EXIT_UNAVAILABLE,
            ) from None
        counters = FeedCounters()
        sender = BulkIngestSender(
            command_service_pb2_grpc.CommandServiceStub(channel),
            identity(args.user, args.token),
            counters,
            SenderSettings(window=args.in_flight, max_stream_failures=5, stop_on_refusal=True),
        )
        runner = FeedRunner(sender, RunnerSettings(batch_points=args.chunk_size), counters)
        try:
            return await runner.load_history(feed, request)
        except SendStopped as error:
            raise CliError(f"{error}\n  {counters.summary()}", exit_code_of(error.status)) from None
        # Bloomberg's and LSEG's errors come from connecting: their sessions open there.
        except (ProviderFailed, VendorError, OSError, BloombergError, LsegError) as error:
            raise CliError(
                f"{error}\n  {counters.summary()}\n  Running the same command again resumes:"
                " the chunks already stored come back as duplicates.",
                EXIT_FAILED,
            ) from None
        except grpc.aio.AioRpcError as error:
            raise CliError(
                f"the command service failed: {error.details()}\n  {counters.summary()}",
                EXIT_UNAVAILABLE,
            ) from None
