"""qis-feeds: data providers as clients of the command API.

A provider (CoinGecko, a synthetic feed, a WebSocket feed, ...) hands over raw values; the feed
runner normalises them to points, batches them by size and time, and sends them through
BulkIngest with command ids derived from their content, so that a resend is a duplicate and
never a second value. Providers never touch the event store. docs/providers.md says how each
provider is configured and what has run against a real vendor (nothing, here).
"""
