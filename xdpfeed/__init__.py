"""xdpfeed: a market-data feed handler for NASDAQ TotalView-ITCH 5.0 over MoldUDP64, with kernel-bypass
capture, as a library.

    from xdpfeed import Feed

    with Feed(line_a="pcap:day.pcap", consumers=[MyConsumer()]) as feed:
        feed.run(until_eos=True)

The names here are imported on first use, so `import xdpfeed.capture` stays light. The packages:
`xdpfeed.capture` (packet sources), `xdpfeed.multicast` (the handler: wire, feed, itch, book, ouch,
exchange, cli) and `xdpfeed.native` (the C modules).
"""

_EXPORTS = {
    "Feed": "xdpfeed.multicast.feed.feed",
    "Feeds": "xdpfeed.multicast.feed.feeds",
    "FeedConfig": "xdpfeed.multicast.feed.config",
    "FeedsConfig": "xdpfeed.multicast.feed.config",
    "load_config": "xdpfeed.multicast.feed.config",
    "ConsolidatedBook": "xdpfeed.multicast.book.consolidated",
    "ConfigError": "xdpfeed.multicast.feed.config",
    "Consumer": "xdpfeed.multicast.feed.consumers",
    "CompiledConsumer": "xdpfeed.multicast.feed.consumers",
    "MessageBatch": "xdpfeed.multicast.feed.consumers",
    "FeedState": "xdpfeed.multicast.feed.state",
    "LineState": "xdpfeed.multicast.feed.state",
    "OrderBook": "xdpfeed.multicast.book.order_book",
    "Subscriber": "xdpfeed.multicast.sinks.subscriber",
    "open_sink": "xdpfeed.multicast.sinks.uri",
    "status": "xdpfeed.multicast.feed.status",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xdpfeed' has no attribute {name!r}")
    import importlib

    mod = importlib.import_module(module)
    value = mod if name == "status" else mod.load_any if name == "load_config" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
