"""MoldUDP64 1.00 downstream packets → an index of data packets whose blocks are known to be sound.

For each frame of a FrameBatch (compiled walk): find the UDP payload (multicast.wire.frames), keep it when
its destination matches a wanted group:port, check the MoldUDP64 header and every block length, then
append one row per data packet (PacketIndex): where its blocks start, how many, the sequence number
of the first (block k has sequence + k), session index and frame timestamp. One row per packet, not
per message, keeps the index small; the decoders and the sequencer walk the blocks themselves. A
packet whose blocks overrun it or leave bytes after the last block is counted malformed and
contributes nothing. Heartbeats (count 0) and End of Session (count 0xFFFF) are counted. Sessions
(10-byte ids) are interned into a small table; sequence ranges are kept per session.
"""

import numpy as np

from xdpfeed.capture.byteorder import be16, be64
from xdpfeed.capture.jit import njit, njit_no_rc
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.frames import OK, udp_payload

HEADER_LEN = 20
SESSION_LEN = 10
HEARTBEAT = 0
END_OF_SESSION = 0xFFFF
MAX_SESSIONS = 256
NO_SESSION = 0xFFFF  # session index of messages that came without one (ITCH binary files)
MAX_BLOCKS_PER_PACKET = (65535 - 8 - HEADER_LEN) // 2  # zero-length blocks filling a maximal datagram
LANES = 4  # packets whose block chains extract walks side by side (_sound is written for 4; 8 ran slower)

# PacketIndex.kind: what a row stands for (control rows only when extract is asked for them)
KIND_DATA = 0
KIND_HEARTBEAT = 1  # no blocks; seq = the next sequence the server will use
KIND_END_OF_SESSION = 2  # no blocks; seq = the next sequence (one past the session's last message)


class Sessions:
    """Interned MoldUDP64 session ids with per-session message sequence range."""

    def __init__(self, capacity: int = MAX_SESSIONS):
        self.ids = np.zeros((capacity, SESSION_LEN), dtype=np.uint8)
        self.count = np.zeros(1, dtype=np.int64)
        self.first_seq = np.zeros(capacity, dtype=np.uint64)  # lowest message sequence seen
        self.end_seq = np.zeros(capacity, dtype=np.uint64)  # highest message sequence seen + 1
        self.messages = np.zeros(capacity, dtype=np.int64)

    def name(self, i: int) -> str:
        if i == NO_SESSION:
            return ""
        return bytes(self.ids[i]).rstrip(b" \x00").decode("ascii", "replace")

    def names(self) -> list[str]:
        return [self.name(i) for i in range(int(self.count[0]))]


class PacketIndex:
    """Preallocated rows, one per MoldUDP64 data packet, filled by `extract`: where its first block's
    length prefix is in the buffer, how many blocks follow (all checked to lie inside the packet),
    the sequence number of the first, the session index and the frame's timestamp. With control
    rows asked for, heartbeats and End of Session get rows too (`kind`, no blocks): the sequencer
    learns the highest sequence from them."""

    def __init__(self, capacity: int = 1 << 12):
        self.capacity = capacity
        self.offset = np.zeros(capacity, dtype=np.int64)
        self.blocks = np.zeros(capacity, dtype=np.int64)
        self.seq = np.zeros(capacity, dtype=np.uint64)
        self.session = np.zeros(capacity, dtype=np.uint16)
        self.timestamp_ns = np.zeros(capacity, dtype=np.int64)
        self.kind = np.zeros(capacity, dtype=np.uint8)
        self.nbytes = np.zeros(capacity, dtype=np.int64)  # bytes of the blocks, length prefixes included
        self.lanes = np.zeros(3 * LANES, dtype=np.int64)  # extract's scratch: the chains it checks side by side
        self.rows = 0

    @property
    def messages(self) -> int:
        return int(self.blocks[: self.rows].sum())

    def message_seqs(self) -> np.ndarray:
        """Sequence number of every message block, in order (for tests and tools)."""
        if not self.rows:
            return np.zeros(0, dtype=np.uint64)
        return np.concatenate([self.seq[i] + np.arange(self.blocks[i], dtype=np.uint64) for i in range(self.rows)])


@njit(cache=True, inline="always")
def _same(ids, s, b, p):
    for k in range(SESSION_LEN):
        if ids[s, k] != b[p + k]:
            return False
    return True


@njit(cache=True, inline="always")
def _intern(b, p, ids, count, last):
    """Index of the 10-byte session at b[p:p+10] in ids (added if new); -1 when the table is full."""
    if last >= 0 and _same(ids, last, b, p):
        return last
    n = count[0]
    for s in range(n):
        if _same(ids, s, b, p):
            return s
    if n >= ids.shape[0]:
        return -1
    for k in range(SESSION_LEN):
        ids[n, k] = b[p + k]
    count[0] = n + 1
    return n


@njit(cache=True, inline="always")
def _chain(b, i, f_off, f_len, f_lt, nframes):
    """(first block, packet end, blocks) of frame i's block chain when it is a data packet's, else (0, 0, 0)."""
    if i >= nframes:
        return 0, 0, 0
    st, p, plen, _, _ = udp_payload(b, f_off[i], f_len[i], f_lt[i])
    if st != OK or plen < HEADER_LEN:
        return 0, 0, 0
    count = be16(b, p + 18)
    if count == HEARTBEAT or count == END_OF_SESSION:
        return 0, 0, 0
    return p + HEADER_LEN, p + plen, count


@njit(cache=True, inline="always")
def _step(b, q, end):
    """The block after the one whose length prefix is at q; past `end` for good once a block overruns it."""
    if q + 2 > end:
        return end + 1
    return q + 2 + be16(b, q)


@njit_no_rc(cache=True)
def _sound(b, i, f_off, f_len, f_lt, nframes, lanes):
    """Bit j set when frame i + j's blocks exactly fill its packet (or it has no blocks to check), for the LANES
    frames from i. A chain is a walk of dependent loads (each length says where the next is); walked in step,
    four chains' loads overlap: the check took 19-21 ms instead of 30 ms on a 10M-message capture."""
    for j in range(LANES):
        lanes[j], lanes[LANES + j], lanes[2 * LANES + j] = _chain(b, i + j, f_off, f_len, f_lt, nframes)
    q0, q1, q2, q3 = lanes[0], lanes[1], lanes[2], lanes[3]
    e0, e1, e2, e3 = lanes[4], lanes[5], lanes[6], lanes[7]
    c0, c1, c2, c3 = lanes[8], lanes[9], lanes[10], lanes[11]
    m = min(c0, c1, c2, c3)
    for _ in range(m):
        q0 = _step(b, q0, e0)
        q1 = _step(b, q1, e1)
        q2 = _step(b, q2, e2)
        q3 = _step(b, q3, e3)
    for _ in range(c0 - m):
        q0 = _step(b, q0, e0)
    for _ in range(c1 - m):
        q1 = _step(b, q1, e1)
    for _ in range(c2 - m):
        q2 = _step(b, q2, e2)
    for _ in range(c3 - m):
        q3 = _step(b, q3, e3)
    return (q0 == e0) | (q1 == e1) << 1 | (q2 == e2) << 2 | (q3 == e3) << 3


@njit_no_rc(cache=True, nogil=True)  # allocates nothing (refcounting the inlined helpers' arrays cost ~100 ns a
# frame); no GIL: index_ahead extracts on a thread of its own
def extract(
    b, f_off, f_len, f_lt, f_ts, start, nframes, groups,
    ids, nsess, first_seq, end_seq, sess_msgs,
    m_off, m_blocks, m_seq, m_sess, m_ts, m_kind, m_bytes, cap, cnt, lanes, control=False,
):
    """Index the data packets of frames [start, nframes), counting every frame; returns (next frame,
    rows written). Stops before a frame when the `cap` rows are used. `groups` is int64[k, 2] of
    (ipv4, port) with 0 as a wildcard; an empty array keeps all UDP. `control` adds rows for
    heartbeats and End of Session (blocks 0, seq = next sequence). `lanes`: int64[3 * LANES] of scratch."""
    n = 0
    i = start
    last = -1
    base = -LANES  # frames base .. base + LANES - 1 have their block chains checked: bits of `sound`
    sound = 0
    while i < nframes and n < cap:
        st, p, plen, dip, dport = udp_payload(b, f_off[i], f_len[i], f_lt[i])
        if st == OK and groups.shape[0] > 0:
            keep = False
            for g in range(groups.shape[0]):
                if (groups[g, 0] == 0 or groups[g, 0] == dip) and (groups[g, 1] == 0 or groups[g, 1] == dport):
                    keep = True
                    break
            if not keep:
                st = C.FILTERED
        cnt[C.FRAMES] += 1
        cnt[C.FRAME_BYTES] += f_len[i]
        i += 1
        if st != OK:
            cnt[st] += 1
            continue
        count = be16(b, p + 18) if plen >= HEADER_LEN else 0
        bad = plen < HEADER_LEN
        if not bad and count != HEARTBEAT and count != END_OF_SESSION:
            if i - 1 >= base + LANES:
                base = i - 1
                sound = _sound(b, base, f_off, f_len, f_lt, nframes, lanes)
            bad = (sound >> (i - 1 - base)) & 1 == 0
        elif plen != HEADER_LEN:  # heartbeat or End of Session: nothing may follow the header
            bad = True
        if bad:
            cnt[C.MALFORMED_PACKETS] += 1
            continue
        s = _intern(b, p, ids, nsess, last)
        if s < 0:
            cnt[C.SESSIONS_OVERFLOW] += 1
            continue
        last = s
        cnt[C.PACKETS] += 1
        seq = be64(b, p + SESSION_LEN)
        if count == HEARTBEAT or count == END_OF_SESSION:
            if count == HEARTBEAT:
                cnt[C.HEARTBEATS] += 1
            else:
                cnt[C.END_OF_SESSION] += 1
            if control:
                m_off[n] = p + HEADER_LEN
                m_blocks[n] = 0
                m_seq[n] = seq
                m_sess[n] = s
                m_ts[n] = f_ts[i - 1]
                m_kind[n] = KIND_HEARTBEAT if count == HEARTBEAT else KIND_END_OF_SESSION
                m_bytes[n] = 0
                n += 1
            continue
        if sess_msgs[s] == 0 or seq < first_seq[s]:
            first_seq[s] = seq
        top = seq + np.uint64(count)
        if top > end_seq[s]:
            end_seq[s] = top
        sess_msgs[s] += count
        cnt[C.MESSAGES] += count
        m_off[n] = p + HEADER_LEN
        m_blocks[n] = count
        m_seq[n] = seq
        m_sess[n] = s
        m_ts[n] = f_ts[i - 1]
        m_kind[n] = KIND_DATA
        m_bytes[n] = plen - HEADER_LEN
        n += 1
    return i, n


def extract_batch(batch, start, groups, sessions: Sessions, index: PacketIndex, cnt, control: bool = False) -> int:
    """Python face of `extract` for one FrameBatch; fills `index`, returns the next frame to do."""
    nxt, n = extract(
        batch.data, batch.offset, batch.length, batch.linktype, batch.timestamp_ns, start, batch.count, groups,
        sessions.ids, sessions.count, sessions.first_seq, sessions.end_seq, sessions.messages,
        index.offset, index.blocks, index.seq, index.session, index.timestamp_ns, index.kind, index.nbytes,
        index.capacity, cnt, index.lanes,
        control,
    )
    index.rows = n
    return nxt
