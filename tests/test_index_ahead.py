"""A capture indexed a batch ahead on a thread (multicast.itch.index_ahead) gives its consumer exactly what one
thread gives: the same messages in the same order, the same counters and sessions, the same error at the same
place; each batch stays intact while the next is read; a consumer that stops early stops the reader."""

import threading
import time

import numpy as np
import pytest

from xdpfeed.capture import pcapfile
from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.itch import pipeline
from xdpfeed.multicast.itch.index_ahead import index_ahead
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import Sessions

from helpers import decode_all, frame, mold, write_pcap

D1 = b"D" + (1).to_bytes(2, "big") + (0).to_bytes(2, "big") + (5).to_bytes(6, "big") + (77).to_bytes(8, "big")
NOGROUP = np.zeros((0, 2), dtype=np.int64)


def _reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "capture-index-ahead"]


def _mixed_capture(path) -> str:
    """Data packets of 1 to 60 blocks, two far larger than a 4 KiB chunk (the buffer grows, twice for the second),
    heartbeats, a malformed packet, a second session, frames of no interest."""
    rng = np.random.default_rng(11)
    frames, seq = [], 1
    for i in range(400):
        n = 400 if i == 100 else 900 if i == 250 else int(rng.integers(1, 61))
        if i % 37 == 5:
            frames.append(frame(mold(b"HB", seq)))
        elif i % 53 == 7:
            frames.append(frame(mold(b"BAD", seq, [D1] * n)[:-1]))
        elif i % 41 == 3:
            frames.append(frame(b"not mold", port=9))
        frames.append(frame(mold(b"S1" if i % 5 else b"S2", seq, [D1] * n)))
        seq += n
    return str(write_pcap(path, frames))


def _decoded(monkeypatch, path, ahead: bool):
    monkeypatch.setattr(pipeline, "worth_a_thread", lambda: ahead)
    msgs, run = decode_all(path)
    return msgs, run.counters.copy(), run.sessions


@pytest.mark.parametrize("chunk", [4096, 1 << 20])
def test_the_same_messages_counters_and_sessions_as_one_thread(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(pcapfile, "CHUNK_BYTES", chunk)
    path = _mixed_capture(tmp_path / "mixed.pcap")
    one, c1, s1 = _decoded(monkeypatch, path, False)
    two, c2, s2 = _decoded(monkeypatch, path, True)
    assert len(one) == int(c1[C.DECODED]) > 9000
    assert two == one
    assert C.as_dict(c2) == C.as_dict(c1)
    assert c1[C.MALFORMED_PACKETS] > 0 and c1[C.HEARTBEATS] > 0
    assert s2.names() == s1.names() == ["S2", "S1", "HB"]
    for a in ("first_seq", "end_seq", "messages"):
        assert np.array_equal(getattr(s2, a), getattr(s1, a))


def test_a_synthetic_day_decodes_and_books_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(pcapfile, "CHUNK_BYTES", 1 << 16)
    pcap = str(tmp_path / "day.pcap")
    synthetic.generate_to_file(str(tmp_path / "day.itch"), 20_000, seed=2, pcap_path=pcap)
    one, c1, _ = _decoded(monkeypatch, pcap, False)
    two, c2, _ = _decoded(monkeypatch, pcap, True)
    assert two == one and len(one) == 20_000 and C.as_dict(c2) == C.as_dict(c1)

    from xdpfeed.multicast.book.order_book import OrderBook

    books = []
    for ahead in (False, True):
        monkeypatch.setattr(pipeline, "worth_a_thread", lambda ahead=ahead: ahead)
        book = OrderBook(window=1 << 12, hash_orders=1 << 8, levels=1 << 12)
        pipeline.replay_into_book(pcap, book)
        books.append((book.checksum(), book.stat()))
    assert books[0] == books[1] and books[0][1]["adds"] > 0


def test_each_batch_stays_intact_while_the_next_is_read(tmp_path, monkeypatch):
    """The reader fills the next batch while the consumer holds this one: with one buffer it would overwrite it."""
    monkeypatch.setattr(pcapfile, "CHUNK_BYTES", 4096)
    path = _mixed_capture(tmp_path / "mixed.pcap")
    held, batches = [], 0
    for buf, index in index_ahead(path, NOGROUP, Sessions(), C.new(), 1024):
        rows = index.rows
        first = [bytes(buf[index.offset[i] : index.offset[i] + index.nbytes[i]]) for i in range(rows)]
        time.sleep(0.005)  # the reader reads the next chunk meanwhile
        assert [bytes(buf[index.offset[i] : index.offset[i] + index.nbytes[i]]) for i in range(rows)] == first
        held += first
        batches += 1
    assert batches > 20
    one = []
    for buf, index in pipeline.index_batches(path, NOGROUP, Sessions(), C.new(), ahead=False):
        one += [bytes(buf[index.offset[i] : index.offset[i] + index.nbytes[i]]) for i in range(index.rows)]
    assert held == one


def test_counters_hold_only_the_batches_handed_out(tmp_path, monkeypatch):
    monkeypatch.setattr(pcapfile, "CHUNK_BYTES", 4096)
    path = _mixed_capture(tmp_path / "mixed.pcap")
    counters, seen = C.new(), 0
    gen = index_ahead(path, NOGROUP, Sessions(), counters, 1024)
    for _, index in gen:
        seen += int(index.blocks[: index.rows].sum())
        time.sleep(0.002)  # the reader has counted the next batch by now, into that batch's own counters
        assert int(counters[C.MESSAGES]) == seen
        if seen > 3000:
            break
    gen.close()
    assert seen > 3000 and not _reader_threads()


def test_a_damaged_capture_raises_at_the_same_place(tmp_path, monkeypatch):
    """A record about two thirds in claims a length past any snaplen: the batches before it, then CorruptInput
    naming its offset, from either path."""
    monkeypatch.setattr(pcapfile, "CHUNK_BYTES", 4096)
    data = bytearray(open(_mixed_capture(tmp_path / "mixed.pcap"), "rb").read())
    pos = 24  # the first record, after the file header
    while pos < len(data) * 2 // 3:
        pos += 16 + int.from_bytes(data[pos + 8 : pos + 12], "little")
    data[pos + 8 : pos + 12] = (10_000_000).to_bytes(4, "little")
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(bytes(data))
    results = []
    for ahead in (False, True):
        msgs = []
        with pytest.raises(CorruptInput) as e:
            for buf, index in pipeline.index_batches(str(damaged), NOGROUP, Sessions(), C.new(), ahead=ahead):
                msgs += [bytes(buf[index.offset[i] : index.offset[i] + index.nbytes[i]]) for i in range(index.rows)]
        results.append((msgs, str(e.value)))
    assert results[1] == results[0]
    assert f"at byte offset {pos}" in results[0][1] and len(results[0][0]) > 100
    assert not _reader_threads()


def test_a_consumer_that_stops_stops_the_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(pcapfile, "CHUNK_BYTES", 4096)
    path = _mixed_capture(tmp_path / "mixed.pcap")
    gen = index_ahead(path, NOGROUP, Sessions(), C.new(), 1024)
    next(gen)
    assert _reader_threads() == ["capture-index-ahead"]
    gen.close()
    assert not _reader_threads()
    with pytest.raises(RuntimeError):  # an exception in the consumer: the reader is stopped on the way out
        for _ in index_ahead(path, NOGROUP, Sessions(), C.new(), 1024):
            raise RuntimeError("consumer failed")
    assert not _reader_threads()


def test_an_unreadable_capture_raises_before_any_thread(tmp_path):
    gen = index_ahead(str(tmp_path / "missing.pcap"), NOGROUP, Sessions(), C.new(), 1024)
    with pytest.raises(SourceError, match="missing.pcap"):
        next(gen)
    assert not _reader_threads()


def test_a_paced_source_has_one_buffer(tmp_path):
    path = write_pcap(tmp_path / "one.pcap", [frame(mold(b"S1", 1, [D1]))])
    with pytest.raises(ValueError, match="unpaced"):
        pcapfile.PcapSource(path, speed=1.0, double_buffer=True)
