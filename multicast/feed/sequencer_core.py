"""The sequencer's compiled core: MoldUDP64 packets from any line → messages in sequence order, once.

One call walks rows of a PacketIndex that arrived on one line (A, B, re-request answers or TCP
replay) and, for every message block: delivers it when its sequence is the next expected one
(copying the block, length prefix included, to the `out` stream, which is therefore a NASDAQ binary
ITCH file of exactly what consumers see, and the receive time of the packet that brought it to
`out_ts`); parks it in the hold queue when it is ahead; counts it as a duplicate when it is behind or
already held. After each delivery the hold queue is drained from the next expected sequence.

The hold queue is direct-indexed by sequence: slot `seq & (M - 1)` for sequences in
[expected, expected + M). Blocks up to `slot_bytes` sit in the slot itself; longer ones in a bump
arena that resets whenever no arena block is held. A message that fits neither is dropped and
counted (hold overflow), the feed turns STALE, and recovery must bring it back.

The feed's state is one record (dtype FEED) and each line's statistics one record of LINE: named
fields, written here and read only through multicast.feed.sequencer's typed views.

Everything here allocates nothing and compiles without NRT reference counting (njit_no_rc): the
refcount updates on the arrays handed to inlined helpers cost more per packet than the work.

Everything is resumable: when `out`, `out_ts` or the event ring is full the call returns and the next
call continues inside the same row (row_block / row_pos), so no message is counted twice.
"""

import numpy as np

from xdpfeed.capture.byteorder import be16
from xdpfeed.capture.jit import njit_no_rc
from xdpfeed.multicast.wire.moldudp64 import KIND_DATA, KIND_END_OF_SESSION

_I8 = np.int64
FEED = np.dtype([
    ("expected", _I8),  # next sequence to deliver
    ("highest", _I8),  # next sequence known to exist (data tops, heartbeats, End of Session)
    ("session", _I8),  # session index followed (-1: none yet)
    ("stale", _I8),  # 1 after a hold overflow or when recovery gave up; cleared when caught up
    ("held", _I8),  # messages in the hold queue
    ("arena_used", _I8),  # bytes used in the arena
    ("arena_live", _I8),  # held messages living in the arena
    ("eos", _I8),  # End of Session seen for the current session
    ("delivered", _I8),
    ("duplicates", _I8),
    ("gaps", _I8),  # gaps detected (a new missing range past the highest known sequence)
    ("gap_messages", _I8),  # messages in those gaps when detected
    ("overflow", _I8),  # messages dropped because the hold queue was full (recovered later, or lost)
    ("old_session", _I8),  # packets of a session already left behind
    ("sessions", _I8),  # sessions followed
    ("abandoned", _I8),  # messages of a left session never delivered (a session change cut them off)
    ("out_first", _I8),  # sequence of the first message in `out`
    ("out_len", _I8),  # bytes in `out`
    ("out_count", _I8),  # messages in `out`
    ("start_at_one", _I8),  # 1: a session is followed from sequence 1 (late joiners recover the start)
    ("in_gap", _I8),  # 1 while something is missing
    ("row_block", _I8),  # resume point inside the current row: next block number
    ("row_pos", _I8),  # ... and its byte offset
    ("n_events", _I8),  # events in the ring
    ("wrong_session", _I8),  # recovery answers for another session (dropped)
    ("now_ns", _I8),  # wall-clock time of the call (set by the caller), for latency and STALE time
    ("stale_episodes", _I8),  # times the feed went STALE
    ("stale_since_ns", _I8),  # wall-clock time the current STALE episode began
    ("stale_total_ns", _I8),  # time spent STALE in episodes that ended
    ("stale_longest_ns", _I8),  # the longest episode that ended
    ("await_snapshot", _I8),  # 1: late join from a snapshot: hold everything, deliver nothing until `jump`
    ("snapshots", _I8),  # snapshots the feed continued from
    ("snapshot_covered", _I8),  # held messages a snapshot already contained (dropped, not duplicates)
    ("snapshot_skipped", _I8),  # messages after the last delivered one a resync snapshot stood in for
])
LINE = np.dtype([
    ("packets", _I8),
    ("messages", _I8),  # message blocks received
    ("first", _I8),  # messages whose first copy came on this line (delivered or held)
    ("duplicates", _I8),
    ("gaps", _I8),  # gaps this line shows on its own (its sequence jumped forward)
    ("gap_messages", _I8),
    ("last_ns", _I8),  # timestamp of its last packet
    ("next", _I8),  # the line's own next sequence (0: nothing yet)
    ("heartbeats", _I8),
    ("end_of_session", _I8),
])

LATENCY_BUCKETS = 48  # lat[k]: packets delivered 2^k .. 2^(k+1) - 1 ns after their receive timestamp

LINE_A, LINE_B, LINE_REREQUEST, LINE_REPLAY = 0, 1, 2, 3
N_LINES = 4

# Events (int64[capacity, 4]: kind, a, b, line)
EV_GAP = 1  # [a, b) found missing
EV_SYNCHRONIZED = 2  # everything up to a delivered; nothing missing
EV_SESSION = 3  # now following session index a (b: previous index or -1, or messages abandoned)
EV_END_OF_SESSION = 4  # a: next sequence of the ended session
EV_OVERFLOW = 5  # hold queue full at sequence a (feed STALE)
EV_WRONG_SESSION = 6  # a recovery answer for session index a was dropped
EV_ROOM = 8  # rows left in the ring before a call returns to have it drained

# Return status
DONE = 0
OUT_FULL = 1
EVENTS_FULL = 2
FLUSH_FIRST = 3  # a new session starts: hand over `out` before its messages begin


@njit_no_rc(cache=True, inline="always")
def _event(ev, s, kind, a, b, line):
    n = s.n_events
    ev[n, 0] = kind
    ev[n, 1] = a
    ev[n, 2] = b
    ev[n, 3] = line
    s.n_events = n + 1


@njit_no_rc(cache=True, inline="always")
def _copy(src, p, dst, q, n):
    """Byte copy with unsigned offsets (no wraparound code, so LLVM can vectorize the loop; a slice
    assignment would check for overlap and may allocate a temporary)."""
    p = np.uint64(p)
    q = np.uint64(q)
    for k in range(np.uint64(n)):
        dst[q + k] = src[p + k]


@njit_no_rc(cache=True, inline="always")
def _stamp(out_ts, k, n, ts):
    """Receive time ts for the n messages delivered from position k of the batch on."""
    k = np.uint64(k)
    for j in range(np.uint64(n)):
        out_ts[k + j] = ts


@njit_no_rc(cache=True)
def _drain(s, slot_seq, slot_len, slot_off, slot_ts, slot_data, arena, slot_bytes, out, out_ts):
    """Deliver held messages from the expected sequence on; False when `out` filled up first."""
    mask = slot_seq.size - 1
    e = s.expected
    while s.held > 0:
        i = e & mask
        if slot_seq[i] != e:
            break
        n = np.int64(slot_len[i])
        q = s.out_len
        if q + n > out.size or s.out_count >= out_ts.size:
            s.expected = e
            return False
        if slot_off[i] < 0:
            _copy(slot_data, i * slot_bytes, out, q, n)
        else:
            _copy(arena, slot_off[i], out, q, n)
            s.arena_live -= 1
            if s.arena_live == 0:
                s.arena_used = 0
        if s.out_count == 0:
            s.out_first = e
        out_ts[s.out_count] = slot_ts[i]
        s.out_len = q + n
        s.out_count += 1
        s.delivered += 1
        slot_seq[i] = 0
        s.held -= 1
        e += 1
    s.expected = e
    return True


@njit_no_rc(cache=True)
def block_bytes(b, p, count):
    """Bytes taken by `count` blocks at b[p:] (length prefixes included)."""
    q = np.uint64(p)
    for _ in range(count):
        q += np.uint64(be16(b, q)) + np.uint64(2)
    return np.int64(q) - p


@njit_no_rc(cache=True, inline="always")
def _latency(lat, now, ts):
    """Count one packet delivered now that was received at ts (both ns; skipped when unknown)."""
    if ts > 0 and now > ts:
        k = np.int64(np.log2(np.float64(now - ts)))
        if k < LATENCY_BUCKETS:
            lat[k] += 1


@njit_no_rc(cache=True, inline="always")
def enter_stale(s, now_ns):
    """The feed turns STALE now (no-op when it already is): a new episode begins."""
    if s.stale == 0:
        s.stale = 1
        s.stale_episodes += 1
        s.stale_since_ns = now_ns


@njit_no_rc(cache=True, inline="always")
def _leave_stale(s, now_ns):
    """The STALE episode (if any) ends now: its length goes to the total and the longest."""
    if s.stale == 1:
        s.stale = 0
        d = now_ns - s.stale_since_ns
        if d < 0:
            d = 0
        s.stale_total_ns += d
        if d > s.stale_longest_ns:
            s.stale_longest_ns = d


@njit_no_rc(cache=True)
def give_up(st, now_ns):
    """Recovery gave up on what is missing: STALE from now (True when that began an episode)."""
    s = st[0]
    was = s.stale
    enter_stale(s, now_ns)
    return was == 0


@njit_no_rc(cache=True, inline="always")
def _check_synchronized(s, ev, line):
    if s.in_gap == 1 and s.expected >= s.highest:
        s.in_gap = 0
        _leave_stale(s, s.now_ns)
        _event(ev, s, EV_SYNCHRONIZED, s.expected, 0, line)


@njit_no_rc(cache=True)
def _switch_session(s, ls, slot_seq, session, ev, line):
    """Follow session `session` from now on: what the old one still missed is abandoned."""
    old = s.session
    abandoned = 0
    if old >= 0:
        abandoned = s.highest - s.expected
        s.abandoned += abandoned
        slot_seq[:] = 0
    s.session = session
    s.sessions += 1
    s.expected = 0  # set from the first packet
    s.highest = 0
    s.held = 0
    s.arena_used = 0
    s.arena_live = 0
    s.eos = 0
    _leave_stale(s, s.now_ns)
    s.in_gap = 0
    for k in range(ls.size):
        ls[k].next = 0
    _event(ev, s, EV_SESSION, session, abandoned if old >= 0 else -1, line)


@njit_no_rc(cache=True, inline="always")
def _learn(s, ls, ev, line, first, top):
    """Sequences [first, top) exist: open a gap if first is past the highest known one."""
    if s.expected == 0:  # first packet of the session
        e = 1 if s.start_at_one == 1 and s.await_snapshot == 0 else first
        if e < 1:
            e = 1
        s.expected = e
        s.highest = e
    h = s.highest
    if first > h:
        s.gaps += 1
        s.gap_messages += first - h
        s.in_gap = 1
        _event(ev, s, EV_GAP, h, first, line)
    if top > h:
        s.highest = top
    if line <= LINE_B:
        ln = ls[line]
        nxt = ln.next
        if nxt > 0 and first > nxt:
            ln.gaps += 1
            ln.gap_messages += first - nxt
        if top > nxt:
            ln.next = top


@njit_no_rc(cache=True)
def process(
    b, m_off, m_blocks, m_seq, m_sess, m_ts, m_kind, m_bytes, row, rows, line, retired,
    st, ls, slot_seq, slot_len, slot_off, slot_ts, slot_data, arena, slot_bytes, out, out_ts, ev, lat,
):
    """Sequence rows [row, rows) of one line's PacketIndex; returns (next row, status)."""
    s = st[0]
    me = ls[line]
    mask = slot_seq.size - 1
    ev_cap = ev.shape[0]
    if s.held > 0 and s.await_snapshot == 0 and not _drain(s, slot_seq, slot_len, slot_off, slot_ts, slot_data,
                                                           arena, slot_bytes, out, out_ts):
        return row, OUT_FULL  # finish the drain an earlier call left when `out` filled up
    while row < rows:
        if s.n_events + EV_ROOM > ev_cap:
            return row, EVENTS_FULL
        sess = np.int64(m_sess[row])
        if sess != s.session:
            if line >= LINE_REREQUEST:  # recovery answers never change the session
                s.wrong_session += 1
                _event(ev, s, EV_WRONG_SESSION, sess, m_seq[row], line)
                row += 1
                continue
            if retired[sess]:
                s.old_session += 1
                row += 1
                continue
            if s.out_count > 0:
                return row, FLUSH_FIRST
            if s.session >= 0:
                retired[s.session] = 1
            _switch_session(s, ls, slot_seq, sess, ev, line)
        seq = np.int64(m_seq[row])
        nb = m_blocks[row]
        ts = m_ts[row]
        k = s.row_block
        if k == 0:  # the row's bookkeeping, once
            me.packets += 1
            me.last_ns = ts
            if m_kind[row] != KIND_DATA:
                if m_kind[row] == KIND_END_OF_SESSION:
                    me.end_of_session += 1
                    if s.eos == 0:
                        s.eos = 1
                        _event(ev, s, EV_END_OF_SESSION, seq, 0, line)
                else:
                    me.heartbeats += 1
                _learn(s, ls, ev, line, seq, seq)
                row += 1
                continue
            me.messages += nb
            _learn(s, ls, ev, line, seq, seq + nb)
            p = np.uint64(m_off[row])
            if seq == s.expected and s.held == 0 and s.await_snapshot == 0:  # the common case: the next packet
                q = s.out_len
                n = m_bytes[row]
                c = s.out_count
                if q + n <= out.size and c + nb <= out_ts.size:
                    _copy(b, p, out, np.uint64(q), n)
                    _stamp(out_ts, c, nb, ts)
                    if c == 0:
                        s.out_first = seq
                    s.out_len = q + n
                    s.out_count = c + nb
                    s.delivered += nb
                    s.expected = seq + nb
                    me.first += nb
                    _latency(lat, s.now_ns, ts)
                    row += 1
                    _check_synchronized(s, ev, line)
                    continue
        else:
            p = np.uint64(s.row_pos)
        timed = False
        while k < nb:
            ln = np.int64(be16(b, p)) + 2
            sq = seq + k
            e = s.expected
            if sq == e and s.await_snapshot == 0:
                if not timed:  # the packet's first message delivered right away: its latency, once
                    _latency(lat, s.now_ns, ts)
                    timed = True
                q = s.out_len
                if q + ln > out.size or s.out_count >= out_ts.size:
                    s.row_block = k
                    s.row_pos = np.int64(p)
                    return row, OUT_FULL
                _copy(b, p, out, q, ln)
                if s.out_count == 0:
                    s.out_first = sq
                out_ts[s.out_count] = ts
                s.out_len = q + ln
                s.out_count += 1
                s.delivered += 1
                s.expected = e + 1
                me.first += 1
                if s.held > 0 and not _drain(s, slot_seq, slot_len, slot_off, slot_ts, slot_data, arena, slot_bytes,
                                             out, out_ts):
                    s.row_block = k + 1
                    s.row_pos = np.int64(p) + ln
                    return row, OUT_FULL
            elif sq < e or slot_seq[sq & mask] == sq:
                s.duplicates += 1
                me.duplicates += 1
            elif sq - e > mask or (ln > slot_bytes and s.arena_used + ln > arena.size):
                s.overflow += 1
                if s.stale == 0:
                    enter_stale(s, s.now_ns)
                    _event(ev, s, EV_OVERFLOW, sq, 0, line)
            else:
                i = sq & mask
                if ln <= slot_bytes:
                    _copy(b, p, slot_data, i * slot_bytes, ln)
                    slot_off[i] = -1
                else:
                    _copy(b, p, arena, s.arena_used, ln)
                    slot_off[i] = s.arena_used
                    s.arena_used += ln
                    s.arena_live += 1
                slot_seq[i] = sq
                slot_len[i] = ln
                slot_ts[i] = ts
                s.held += 1
                me.first += 1
            p += np.uint64(ln)
            k += 1
        s.row_block = 0
        row += 1
        _check_synchronized(s, ev, line)
    if s.n_events < ev_cap:
        _check_synchronized(s, ev, line)
    return row, DONE


@njit_no_rc(cache=True)
def jump(st, slot_seq, slot_off, nxt):
    """A snapshot holds everything before sequence `nxt`: continue from there. Held messages before it
    are dropped (covered), held ones past the new window too (counted as overflow: recovery fetches them
    again); messages after the last delivered one up to nxt are counted as skipped (a resync). The next
    process() call drains what is held from nxt on and reports "synchronized" once nothing is missing."""
    s = st[0]
    covered = 0
    if s.held > 0:
        for i in range(slot_seq.size):
            q = slot_seq[i]
            if q == 0 or (nxt <= q < nxt + slot_seq.size):
                continue
            if slot_off[i] >= 0:
                s.arena_live -= 1
            slot_seq[i] = 0
            s.held -= 1
            if q < nxt:
                covered += 1
            else:
                s.overflow += 1
        if s.arena_live == 0:
            s.arena_used = 0
    if s.delivered > 0 and nxt > s.expected:
        s.snapshot_skipped += nxt - s.expected
    s.snapshot_covered += covered
    s.snapshots += 1
    s.expected = nxt
    if nxt > s.highest:
        s.highest = nxt
    s.await_snapshot = 0
    s.in_gap = 1
    return covered


@njit_no_rc(cache=True)
def missing(st, slot_seq, ranges):
    """The missing sequence ranges [first, end), coalesced, at most ranges.shape[0]; returns how many."""
    s = st[0]
    mask = slot_seq.size - 1
    e = s.expected
    h = s.highest
    n = 0
    q = e
    while q < h and n < ranges.shape[0]:
        if q - e <= mask and slot_seq[q & mask] == q:
            q += 1
            continue
        first = q
        while q < h and (q - e > mask or slot_seq[q & mask] != q):
            if q - e > mask:  # nothing is held this far ahead: missing up to the highest
                q = h
                break
            q += 1
        ranges[n, 0] = first
        ranges[n, 1] = q
        n += 1
    return n
