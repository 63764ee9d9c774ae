"""The sequencer's compiled core: MoldUDP64 packets from any line → messages in sequence order, once.

One call walks rows of a PacketIndex that arrived on one line (A, B, re-request answers or TCP
replay) and, for every message block: delivers it when its sequence is the next expected one
(copying the block, length prefix included, to the `out` stream, which is therefore a NASDAQ binary
ITCH file of exactly what consumers see); parks it in the hold queue when it is ahead; counts it as
a duplicate when it is behind or already held. After each delivery the hold queue is drained from
the next expected sequence.

The hold queue is direct-indexed by sequence: slot `seq & (M - 1)` for sequences in
[expected, expected + M). Blocks up to `slot_bytes` sit in the slot itself; longer ones in a bump
arena that resets whenever no arena block is held. A message that fits neither is dropped and
counted (hold overflow), the feed turns STALE, and recovery must bring it back.

Everything here allocates nothing and compiles without NRT reference counting (njit_no_rc): the
refcount updates on the arrays handed to inlined helpers cost more per packet than the work.

Everything is resumable: when `out` or the event ring is full the call returns and the next call
continues inside the same row (ST_ROW_BLOCK / ST_ROW_POS), so no message is counted twice.
"""

import numpy as np

from xdpfeed.capture.byteorder import be16
from xdpfeed.capture.jit import njit_no_rc
from xdpfeed.multicast.wire.moldudp64 import KIND_DATA, KIND_END_OF_SESSION

# Feed state array (int64)
ST_EXPECTED = 0  # next sequence to deliver
ST_HIGHEST = 1  # next sequence known to exist (data tops, heartbeats, End of Session)
ST_SESSION = 2  # session index followed (-1: none yet)
ST_STALE = 3  # 1 after a hold overflow or when recovery gave up; cleared when caught up
ST_HELD = 4  # messages in the hold queue
ST_ARENA_USED = 5  # bytes used in the arena
ST_ARENA_LIVE = 6  # held messages living in the arena
ST_EOS = 7  # End of Session seen for the current session
ST_DELIVERED = 8
ST_DUPLICATES = 9
ST_GAPS = 10  # gaps detected (a new missing range past the highest known sequence)
ST_GAP_MESSAGES = 11  # messages in those gaps when detected
ST_OVERFLOW = 12  # messages dropped because the hold queue was full (recovered later, or lost)
ST_OLD_SESSION = 13  # packets of a session already left behind
ST_SESSIONS = 14  # sessions followed
ST_ABANDONED = 15  # messages of a left session never delivered (a session change cut them off)
ST_OUT_FIRST = 16  # sequence of the first message in `out`
ST_OUT_LEN = 17  # bytes in `out`
ST_OUT_COUNT = 18  # messages in `out`
ST_START_AT_ONE = 19  # 1: a session is followed from sequence 1 (late joiners recover the start)
ST_IN_GAP = 20  # 1 while something is missing
ST_ROW_BLOCK = 21  # resume point inside the current row: next block number
ST_ROW_POS = 22  # ... and its byte offset
ST_N_EVENTS = 23  # events in the ring
ST_WRONG_SESSION = 24  # recovery answers for another session (dropped)
ST_NOW_NS = 25  # wall-clock time of the call (set by the caller), for the delivery latency histogram
ST_STALE_EPISODES = 26  # times the feed went STALE
ST_STALE_SINCE_NS = 27  # wall-clock time the current STALE episode began
ST_STALE_TOTAL_NS = 28  # time spent STALE in episodes that ended
ST_STALE_LONGEST_NS = 29  # the longest episode that ended
N_ST = 30

LATENCY_BUCKETS = 48  # lat[k]: packets delivered 2^k .. 2^(k+1) - 1 ns after their receive timestamp

# Per-line statistics (int64[N_LINES, N_LS])
LS_PACKETS = 0
LS_MESSAGES = 1  # message blocks received
LS_FIRST = 2  # messages whose first copy came on this line (delivered or held)
LS_DUPLICATES = 3
LS_GAPS = 4  # gaps this line shows on its own (its sequence jumped forward)
LS_GAP_MESSAGES = 5
LS_LAST_NS = 6  # timestamp of its last packet
LS_NEXT = 7  # the line's own next sequence (0: nothing yet)
LS_HEARTBEATS = 8
LS_END_OF_SESSION = 9
N_LS = 10

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
def _event(ev, st, kind, a, b, line):
    n = st[ST_N_EVENTS]
    ev[n, 0] = kind
    ev[n, 1] = a
    ev[n, 2] = b
    ev[n, 3] = line
    st[ST_N_EVENTS] = n + 1


@njit_no_rc(cache=True, inline="always")
def _copy(src, p, dst, q, n):
    """Byte copy with unsigned offsets (no wraparound code, so LLVM can vectorize the loop; a slice
    assignment would check for overlap and may allocate a temporary)."""
    p = np.uint64(p)
    q = np.uint64(q)
    for k in range(np.uint64(n)):
        dst[q + k] = src[p + k]


@njit_no_rc(cache=True)
def _drain(st, slot_seq, slot_len, slot_off, slot_data, arena, slot_bytes, out):
    """Deliver held messages from the expected sequence on; False when `out` filled up first."""
    mask = slot_seq.size - 1
    e = st[ST_EXPECTED]
    while st[ST_HELD] > 0:
        i = e & mask
        if slot_seq[i] != e:
            break
        n = np.int64(slot_len[i])
        q = st[ST_OUT_LEN]
        if q + n > out.size:
            st[ST_EXPECTED] = e
            return False
        if slot_off[i] < 0:
            _copy(slot_data, i * slot_bytes, out, q, n)
        else:
            _copy(arena, slot_off[i], out, q, n)
            st[ST_ARENA_LIVE] -= 1
            if st[ST_ARENA_LIVE] == 0:
                st[ST_ARENA_USED] = 0
        if st[ST_OUT_COUNT] == 0:
            st[ST_OUT_FIRST] = e
        st[ST_OUT_LEN] = q + n
        st[ST_OUT_COUNT] += 1
        st[ST_DELIVERED] += 1
        slot_seq[i] = 0
        st[ST_HELD] -= 1
        e += 1
    st[ST_EXPECTED] = e
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
def enter_stale(st, now_ns):
    """The feed turns STALE now (no-op when it already is): a new episode begins."""
    if st[ST_STALE] == 0:
        st[ST_STALE] = 1
        st[ST_STALE_EPISODES] += 1
        st[ST_STALE_SINCE_NS] = now_ns


@njit_no_rc(cache=True, inline="always")
def _leave_stale(st, now_ns):
    """The STALE episode (if any) ends now: its length goes to the total and the longest."""
    if st[ST_STALE] == 1:
        st[ST_STALE] = 0
        d = now_ns - st[ST_STALE_SINCE_NS]
        if d < 0:
            d = 0
        st[ST_STALE_TOTAL_NS] += d
        if d > st[ST_STALE_LONGEST_NS]:
            st[ST_STALE_LONGEST_NS] = d


@njit_no_rc(cache=True, inline="always")
def _check_synchronized(st, ev, line):
    if st[ST_IN_GAP] == 1 and st[ST_EXPECTED] >= st[ST_HIGHEST]:
        st[ST_IN_GAP] = 0
        _leave_stale(st, st[ST_NOW_NS])
        _event(ev, st, EV_SYNCHRONIZED, st[ST_EXPECTED], 0, line)


@njit_no_rc(cache=True)
def _switch_session(st, ls, slot_seq, s, ev, line):
    """Follow session s from now on: what the old one still missed is abandoned."""
    old = st[ST_SESSION]
    abandoned = 0
    if old >= 0:
        abandoned = st[ST_HIGHEST] - st[ST_EXPECTED]
        st[ST_ABANDONED] += abandoned
        slot_seq[:] = 0
    st[ST_SESSION] = s
    st[ST_SESSIONS] += 1
    st[ST_EXPECTED] = 0  # set from the first packet
    st[ST_HIGHEST] = 0
    st[ST_HELD] = 0
    st[ST_ARENA_USED] = 0
    st[ST_ARENA_LIVE] = 0
    st[ST_EOS] = 0
    _leave_stale(st, st[ST_NOW_NS])
    st[ST_IN_GAP] = 0
    ls[:, LS_NEXT] = 0
    _event(ev, st, EV_SESSION, s, abandoned if old >= 0 else -1, line)


@njit_no_rc(cache=True, inline="always")
def _learn(st, ls, ev, line, first, top):
    """Sequences [first, top) exist: open a gap if first is past the highest known one."""
    if st[ST_EXPECTED] == 0:  # first packet of the session
        e = 1 if st[ST_START_AT_ONE] == 1 else first
        if e < 1:
            e = 1
        st[ST_EXPECTED] = e
        st[ST_HIGHEST] = e
    h = st[ST_HIGHEST]
    if first > h:
        st[ST_GAPS] += 1
        st[ST_GAP_MESSAGES] += first - h
        st[ST_IN_GAP] = 1
        _event(ev, st, EV_GAP, h, first, line)
    if top > h:
        st[ST_HIGHEST] = top
    if line <= LINE_B:
        nxt = ls[line, LS_NEXT]
        if nxt > 0 and first > nxt:
            ls[line, LS_GAPS] += 1
            ls[line, LS_GAP_MESSAGES] += first - nxt
        if top > nxt:
            ls[line, LS_NEXT] = top


@njit_no_rc(cache=True)
def process(
    b, m_off, m_blocks, m_seq, m_sess, m_ts, m_kind, m_bytes, row, rows, line, retired,
    st, ls, slot_seq, slot_len, slot_off, slot_data, arena, slot_bytes, out, ev, lat,
):
    """Sequence rows [row, rows) of one line's PacketIndex; returns (next row, status)."""
    mask = slot_seq.size - 1
    ev_cap = ev.shape[0]
    if st[ST_HELD] > 0 and not _drain(st, slot_seq, slot_len, slot_off, slot_data, arena, slot_bytes, out):
        return row, OUT_FULL  # finish the drain an earlier call left when `out` filled up
    while row < rows:
        if st[ST_N_EVENTS] + EV_ROOM > ev_cap:
            return row, EVENTS_FULL
        s = np.int64(m_sess[row])
        if s != st[ST_SESSION]:
            if line >= LINE_REREQUEST:  # recovery answers never change the session
                st[ST_WRONG_SESSION] += 1
                _event(ev, st, EV_WRONG_SESSION, s, m_seq[row], line)
                row += 1
                continue
            if retired[s]:
                st[ST_OLD_SESSION] += 1
                row += 1
                continue
            if st[ST_OUT_COUNT] > 0:
                return row, FLUSH_FIRST
            if st[ST_SESSION] >= 0:
                retired[st[ST_SESSION]] = 1
            _switch_session(st, ls, slot_seq, s, ev, line)
        seq = np.int64(m_seq[row])
        nb = m_blocks[row]
        k = st[ST_ROW_BLOCK]
        if k == 0:  # the row's bookkeeping, once
            ls[line, LS_PACKETS] += 1
            ls[line, LS_LAST_NS] = m_ts[row]
            if m_kind[row] != KIND_DATA:
                if m_kind[row] == KIND_END_OF_SESSION:
                    ls[line, LS_END_OF_SESSION] += 1
                    if st[ST_EOS] == 0:
                        st[ST_EOS] = 1
                        _event(ev, st, EV_END_OF_SESSION, seq, 0, line)
                else:
                    ls[line, LS_HEARTBEATS] += 1
                _learn(st, ls, ev, line, seq, seq)
                row += 1
                continue
            ls[line, LS_MESSAGES] += nb
            _learn(st, ls, ev, line, seq, seq + nb)
            p = np.uint64(m_off[row])
            if seq == st[ST_EXPECTED] and st[ST_HELD] == 0:  # the common case: the next packet, whole
                q = st[ST_OUT_LEN]
                n = m_bytes[row]
                if q + n <= out.size:
                    _copy(b, p, out, np.uint64(q), n)
                    if st[ST_OUT_COUNT] == 0:
                        st[ST_OUT_FIRST] = seq
                    st[ST_OUT_LEN] = q + n
                    st[ST_OUT_COUNT] += nb
                    st[ST_DELIVERED] += nb
                    st[ST_EXPECTED] = seq + nb
                    ls[line, LS_FIRST] += nb
                    _latency(lat, st[ST_NOW_NS], m_ts[row])
                    row += 1
                    _check_synchronized(st, ev, line)
                    continue
        else:
            p = np.uint64(st[ST_ROW_POS])
        timed = False
        while k < nb:
            ln = np.int64(be16(b, p)) + 2
            sq = seq + k
            e = st[ST_EXPECTED]
            if sq == e:
                if not timed:  # the packet's first message delivered right away: its latency, once
                    _latency(lat, st[ST_NOW_NS], m_ts[row])
                    timed = True
                q = st[ST_OUT_LEN]
                if q + ln > out.size:
                    st[ST_ROW_BLOCK] = k
                    st[ST_ROW_POS] = np.int64(p)
                    return row, OUT_FULL
                _copy(b, p, out, q, ln)
                if st[ST_OUT_COUNT] == 0:
                    st[ST_OUT_FIRST] = sq
                st[ST_OUT_LEN] = q + ln
                st[ST_OUT_COUNT] += 1
                st[ST_DELIVERED] += 1
                st[ST_EXPECTED] = e + 1
                ls[line, LS_FIRST] += 1
                if st[ST_HELD] > 0 and not _drain(st, slot_seq, slot_len, slot_off, slot_data, arena, slot_bytes, out):
                    st[ST_ROW_BLOCK] = k + 1
                    st[ST_ROW_POS] = np.int64(p) + ln
                    return row, OUT_FULL
            elif sq < e or slot_seq[sq & mask] == sq:
                st[ST_DUPLICATES] += 1
                ls[line, LS_DUPLICATES] += 1
            elif sq - e > mask or (ln > slot_bytes and st[ST_ARENA_USED] + ln > arena.size):
                st[ST_OVERFLOW] += 1
                if st[ST_STALE] == 0:
                    enter_stale(st, st[ST_NOW_NS])
                    _event(ev, st, EV_OVERFLOW, sq, 0, line)
            else:
                i = sq & mask
                if ln <= slot_bytes:
                    _copy(b, p, slot_data, i * slot_bytes, ln)
                    slot_off[i] = -1
                else:
                    _copy(b, p, arena, st[ST_ARENA_USED], ln)
                    slot_off[i] = st[ST_ARENA_USED]
                    st[ST_ARENA_USED] += ln
                    st[ST_ARENA_LIVE] += 1
                slot_seq[i] = sq
                slot_len[i] = ln
                st[ST_HELD] += 1
                ls[line, LS_FIRST] += 1
            p += np.uint64(ln)
            k += 1
        st[ST_ROW_BLOCK] = 0
        row += 1
        _check_synchronized(st, ev, line)
    if st[ST_N_EVENTS] < ev_cap:
        _check_synchronized(st, ev, line)
    return row, DONE


@njit_no_rc(cache=True)
def missing(st, slot_seq, ranges):
    """The missing sequence ranges [first, end), coalesced, at most ranges.shape[0]; returns how many."""
    mask = slot_seq.size - 1
    e = st[ST_EXPECTED]
    h = st[ST_HIGHEST]
    n = 0
    s = e
    while s < h and n < ranges.shape[0]:
        if s - e <= mask and slot_seq[s & mask] == s:
            s += 1
            continue
        first = s
        while s < h and (s - e > mask or slot_seq[s & mask] != s):
            if s - e > mask:  # nothing is held this far ahead: missing up to the highest
                s = h
                break
            s += 1
        ranges[n, 0] = first
        ranges[n, 1] = s
        n += 1
    return n
