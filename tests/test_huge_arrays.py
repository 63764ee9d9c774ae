"""capture.huge_arrays: zeroed arrays on 2 MiB-aligned memory that the kernel backs with huge pages, and the order
book's storage on them through every kind of growth."""

import gc
import threading

import numpy as np
import pytest

from xdpfeed.capture import huge_arrays
from xdpfeed.capture import populate as populate_module
from xdpfeed.capture.huge_arrays import HUGE_PAGE, huge_bytes, populate, thp_mode, zeros
from xdpfeed.multicast.book import storage
from xdpfeed.multicast.book import store as S
from xdpfeed.multicast.book.order_book import OrderBook, grow
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.itch.decoder import file_records_end


def anon_huge_total() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("AnonHugePages:"))


def test_zeros_is_a_zeroed_aligned_array_on_huge_pages():
    a = zeros((1024, 1024), np.int32)  # 4 MiB
    assert a.shape == (1024, 1024) and a.dtype == np.int32 and a.flags.c_contiguous and a.flags.writeable
    assert not a.any() and a.ctypes.data % HUGE_PAGE == 0
    mode = thp_mode()
    if mode not in ("always", "madvise"):
        pytest.skip(f"this kernel gives no transparent huge pages (mode {mode!r})")
    gc.collect()
    before = anon_huge_total()
    a[:, 0] = np.arange(1024)  # touch every 4 KiB page: two 2 MiB faults
    assert anon_huge_total() - before == a.nbytes
    assert huge_bytes(a) >= a.nbytes
    assert int(a[:, 0].sum()) == 1023 * 1024 // 2 and int(a[:, 1:].sum()) == 0


def rss() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Rss:"))


def test_populate_makes_the_pages_resident_and_changes_no_value():
    a = zeros(8 * HUGE_PAGE // 8, np.int64)  # 16 MiB, untouched
    gc.collect()
    before = rss()
    assert populate(a)  # this kernel (5.14 or later) has MADV_POPULATE_WRITE
    grown = rss() - before
    assert a.nbytes <= grown < a.nbytes + HUGE_PAGE, grown
    assert not a.any()
    a[::1000] = np.arange(a[::1000].size)
    populate(a[1:])  # a view that does not start on a page: its first page is included, no value moves
    assert np.array_equal(a[::1000], np.arange(a[::1000].size)) and int(a.sum()) == int(np.arange(a[::1000].size).sum())
    assert populate(a[:0])


def test_prefaulting_makes_every_page_resident_and_changes_no_value():
    """Prefaulting writes a byte of every page onto itself before anything uses the arrays; whenever handover() comes,
    what was not reached is populated from the thread it returns: every page is the process's, every value as it
    was (a record array, a 2-D one, and a small one that does not start or end on a page)."""
    arrays = [zeros(24 * HUGE_PAGE // 16, storage.LEVEL), zeros((HUGE_PAGE // 8, 4), np.int64),
              np.zeros(3 * 4096 + 100, np.uint8)[50:]]
    for a in arrays:
        a.reshape(-1).view(np.uint8)[[0, -1]] = 7  # written before, as a caller may: each end's page resident
    before = [a.copy() for a in arrays]
    gc.collect()
    rss0 = rss()
    prefaulting = huge_arrays.Prefaulting(arrays)
    rest = prefaulting.handover()
    if rest is not None:
        rest.join(timeout=60)
    big = arrays[0].nbytes + arrays[1].nbytes  # the small one's pages may be the process's already (numpy's heap)
    assert big - 4 * HUGE_PAGE <= rss() - rss0 < big + arrays[2].nbytes + HUGE_PAGE
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before, strict=True))


def test_prefaulting_stopped_before_its_first_page_leaves_every_page_to_populate(monkeypatch):
    """A handover before the thread reached any page: populate() gets each array whole, from the returned thread."""
    got, gate = [], threading.Event()
    touch = huge_arrays.Prefaulting._touch
    monkeypatch.setattr(huge_arrays.Prefaulting, "_touch", lambda self: (gate.wait(), touch(self)))
    monkeypatch.setattr(huge_arrays, "populate", lambda a, write=True: got.append(a.nbytes) or True)
    arrays = [zeros(2 * HUGE_PAGE, np.uint8), np.zeros(5000, np.uint8)]
    prefaulting = huge_arrays.Prefaulting(arrays)
    prefaulting._stop.set()
    gate.set()
    prefaulting.handover().join(timeout=60)
    assert got == [a.nbytes for a in arrays]


def test_a_kernel_without_populate_has_the_book_prefaulted_by_writing_each_page(monkeypatch):
    """Before Linux 5.14 madvise refuses MADV_POPULATE_WRITE (EINVAL): populate says so and prefault() writes each
    page onto itself instead; the background thread, which must not write pages in use, does nothing."""
    monkeypatch.setattr(populate_module, "MADV_POPULATE_WRITE", 9999)  # an advice no kernel has: EINVAL
    a = zeros(HUGE_PAGE // 8, np.int64)
    assert not populate(a)
    book = OrderBook()
    book.sides[3, 0] = 5
    before = rss()
    book.prefault(background=True).join(timeout=60)
    assert rss() - before < HUGE_PAGE  # nothing populated
    book.prefault()
    assert rss() - before >= book.window.nbytes + book.hash.nbytes  # every page written onto itself
    assert book.sides[3, 0] == 5 and not book.window.view(np.uint8).any()


def test_a_files_pages_are_mapped_in_ahead_of_its_reader(tmp_path, monkeypatch):
    """populate_ahead maps a read-only file mapping's pages in from a thread (MADV_POPULATE_READ), changing nothing;
    a kernel without the advice leaves them to fault in as they are read."""
    from xdpfeed.multicast.itch import file as gzip_file
    from xdpfeed.multicast.itch import mapped_file as itch_file

    path = tmp_path / "day.itch"
    data = np.random.default_rng(3).integers(0, 256, 3 * gzip_file.CHUNK + 12345, dtype=np.uint8)
    data.tofile(path)
    for kernel_has_it in (True, False):
        if not kernel_has_it:
            monkeypatch.setattr(populate_module, "MADV_POPULATE_READ", 9999)  # an advice no kernel has: EINVAL
        buf = itch_file.mapped(str(path))
        gc.collect()
        before = rss()
        itch_file.populate_ahead(buf).join(timeout=60)
        grown = rss() - before
        if kernel_has_it:
            assert buf.nbytes <= grown < buf.nbytes + HUGE_PAGE, grown
        else:
            assert grown < gzip_file.CHUNK, grown
        assert np.array_equal(buf, data)
        del buf


def test_small_arrays_and_odd_sizes():
    small = zeros(100, np.int64)  # under one huge page: np.zeros itself
    assert small.base is None and small.shape == (100,) and not small.any()
    odd = zeros(3 * HUGE_PAGE // 8 + 5, storage.LEVEL)  # a record dtype, not a whole number of huge pages
    assert odd.dtype == storage.LEVEL and odd.size == 3 * HUGE_PAGE // 8 + 5 and odd.ctypes.data % HUGE_PAGE == 0
    odd[-1]["shares"] = 7  # the last element is inside the mapping
    assert int(odd["shares"].sum()) == 7


def _storage(book):
    return {n: getattr(book, n) for n in ("window", "hash", "ladder", "levels", "lfree", "sides", "last", "events")}


def _state(book):
    locs = book.locates()
    return sorted(book.live_orders_table().tolist()), book.depths(locs, None), book.stat()  # hash order varies


def test_book_storage_is_aligned_and_growth_keeps_it_so_and_changes_nothing():
    """A book whose every array spans huge pages; midway through a day its hash, ladder pool and level slab are
    grown (what the compiled loop asks for when they fill); it ends the day as a book that never grew."""
    day, _ = synthetic.generate(120_000, seed=11)
    half = file_records_end(day, 0, day.size // 2)[0]  # a whole-record cut near the middle
    kw = dict(window=1 << 17, hash_orders=1 << 17, levels=1 << 18, events=1 << 16)
    grown, plain = OrderBook(**kw), OrderBook(**kw)
    for a in _storage(grown).values():
        assert a.nbytes >= HUGE_PAGE and a.ctypes.data % HUGE_PAGE == 0
    grown.apply_stream(day, 0, half)
    sizes = {n: a.size for n, a in _storage(grown).items()}
    for status in (S.NEED_HASH, S.NEED_POOL, S.NEED_LEVELS):
        grow(grown, status)
    after = _storage(grown)
    assert after["hash"].size == 2 * sizes["hash"] and after["levels"].size == 2 * sizes["levels"]
    assert after["lfree"].size == after["levels"].size and after["ladder"].size >= 2 * sizes["ladder"]
    for a in after.values():
        assert a.ctypes.data % HUGE_PAGE == 0
    grown.apply_stream(day, half)
    plain.apply_stream(day)
    g, p = _state(grown), _state(plain)
    assert g[0] == p[0] and len(g[0]) > 1000
    assert g[1] == p[1] and any(len(bids) > 3 for bids, _ in g[1])
    assert {k for k in g[2] if g[2][k] != p[2][k]} == {"hash_grows", "pool_grows"}
    assert g[2]["hash_grows"] == 1 and g[2]["pool_grows"] == 2 and p[2]["hash_grows"] == p[2]["pool_grows"] == 0
