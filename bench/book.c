/* book.c: the C yardstick for multicast/book/apply.py + multicast/book/store.py (OrderBook.apply_stream).
 *
 * The same data structure and algorithm, step for step, so that the numba/C ratio measures the compiler
 * and not the design:
 * - orders: a direct-indexed window of W slots (refs [base, base + W) at slot ref & (W - 1)) that slides
 *   by W/16 (or restarts on a jump of 2W or more), migrating the orders it leaves behind into an
 *   open-addressed hash (home = (ref * 0x9E3779B97F4A7C15) >> 32 & mask, linear probing, backward-shift
 *   deletion, kept at most half full: doubled and rehashed in slot order when an add could pass that);
 * - levels: a slab of level records at handles that stay put (freed handles reused from a stack); each order
 *   keeps its level's handle; per (locate, side) a sorted vector of (price << 32 | handle) entries in one
 *   shared ladder, best price at the end, searched from the best 8 then by bisection; a full side moves to the
 *   end of the ladder with room max(8, 2n); when the ladder is out of room it is reallocated at
 *   max(2 * size, 2 * needed, 1024) and every side is copied into it, packed, in side order; each side's
 *   row of sides[] (start, size, room, best level's handle; a stock's two rows in one cache line) answers
 *   whether a message touched the best level and where the top of the book is, without reading the ladder;
 * - one compiled message loop: [u16 BE length][message] records, the same per-type rules, anomaly
 *   counters and top-of-book events (into a preallocated batch; when it is full the loop stops before the
 *   next message and the driver resets the count, as OrderBook does with on_events=None). A message that
 *   needs room stops the loop, the driver grows the store and the loop resumes at that message.
 * Records have the numpy dtypes' layouts, multicast/book/storage.py (`--layout` prints them for bench_book.py).
 *
 * Usage: book FILE [--repeat R] [--window N] [--hash N] [--levels N] [--events N] [--prefault] [--no-hugepage]
 *          one untimed verification pass (event checksum), then R timed passes, each on a fresh book
 *          allocated outside the timed region the way OrderBook does it (capture.huge_arrays: 2 MiB-aligned
 *          mappings advised MADV_HUGEPAGE for blocks of 2 MiB or more; --no-hugepage: calloc only;
 *          --prefault touches every page first); prints one
 *          JSON object
 *        book --layout
 * Build: cc -O3 -march=native -o book book.c
 */
#define _GNU_SOURCE
#include "bench_common.h"
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------ records (numpy dtypes) */
typedef struct { uint32_t price, shares, level; uint16_t locate; uint8_t side, live; } order_t;  /* S.ORDER */
typedef struct { uint64_t ref; order_t order; } hashed_t;                                  /* S.HASHED */
                                                                                                      /* S.ORDER */
typedef struct { uint64_t shares; uint32_t price, orders; } level_t;                                  /* S.LEVEL */
typedef struct { uint64_t seq, timestamp, bid_shares, ask_shares; uint32_t bid_price, ask_price;
                 uint16_t locate; } event_t;                                                          /* A.EVENT */
typedef struct { uint64_t symbol; uint32_t round_lot; uint8_t trading_state, stale; uint32_t reason; } stock_t;
typedef int64_t side_t[6];  /* S.sides rows: SD_START, SD_SIZE, SD_CAP, SD_BEST (a handle, NO_LEVEL when empty),
                               SD_MAX_REF (the highest reference added), SD_REFS_BACK (adds below it) */
enum { SD_START, SD_SIZE, SD_CAP, SD_BEST, SD_MAX_REF, SD_REFS_BACK };
#define NO_LEVEL (-1)

enum { BID = 0, ASK = 1 };
#define N_SIDES (65536 * 2)
#define HASH_MUL 0x9E3779B97F4A7C15ull
enum { ST_BASE, ST_HASH_N, ST_LIVE, ST_POOL, ST_MIGRATED, ST_SYSTEM, ST_LTOP, ST_LFREE, N_STATE };
enum { OK = 0, NEED_HASH = 1, NEED_POOL = 2, NEED_EVENTS = 3, NEED_LEVELS = 4 };
#define HANDLE_MASK 0xFFFFFFFFull
enum { ADDS, EXECUTIONS, CANCELS, DELETES, REPLACES, TRADES, CROSS_TRADES, BROKEN_TRADES, UNKNOWN_REFS,
       DUPLICATE_ADDS, OVER_EXECUTIONS, OVER_CANCELS, BAD_SIDE, ZERO_REFS, BBO_EVENTS, MESSAGES, UNKNOWN_TYPES,
       BAD_LENGTHS, HASH_GROWS, POOL_GROWS, N_STATS };
static const char *STAT_NAMES[N_STATS] = {
    "adds", "executions", "cancels", "deletes", "replaces", "trades", "cross_trades", "broken_trades",
    "unknown_refs", "duplicate_adds", "over_executions", "over_cancels", "bad_side", "zero_refs", "bbo_events",
    "messages", "unknown_types", "bad_lengths", "hash_grows", "pool_grows"};

/* itch_schema.LENGTHS: expected total length by type byte, -1 unknown (checked by bench_book.py) */
static const char TYPES[] = "SRHYLVWKJhAFECXDUPQBINO";
static const int LEN[] = {12, 39, 25, 20, 26, 35, 12, 28, 35, 21, 36, 40, 31, 36, 23, 19, 35, 44, 40, 19, 50, 20, 48};
static int64_t LENGTHS[256];

static inline int64_t be16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }
static inline int64_t be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
static inline uint64_t be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
static inline int64_t be48(const uint8_t *p) { return (be16(p) << 32) | be32(p + 2); }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ------------------------------------------------------------------------------ book state */
typedef struct {
    order_t *w; int64_t w_size;
    hashed_t *h; int64_t h_size;
    int64_t state[N_STATE];
    uint64_t *ladder; int64_t ladder_size;     /* per side: sorted (price << 32 | handle) entries */
    level_t *levels; int64_t levels_size;      /* the level slab, by handle */
    uint64_t *lfree;                           /* freed handles */
    side_t *sides;                             /* per (locate, side): start, size, cap, best handle */
    int64_t (*last)[4];
    stock_t *stocks;
    event_t *ev; int64_t ev_size, ev_n;
    int64_t stats[N_STATS];
} book_t;

/* ------------------------------------------------------------------------------ hash (book/store.py) */
static inline int64_t home(int64_t ref, int64_t hmask) { return (int64_t)(((uint64_t)ref * HASH_MUL) >> 32) & hmask; }

static inline int64_t hash_find(const hashed_t *h, int64_t hsize, int64_t ref) {
    int64_t hmask = hsize - 1, i = home(ref, hmask);
    for (;;) {
        int64_t k = (int64_t)h[i].ref;
        if (k == ref) return i;
        if (k == 0) return -1;
        i = (i + 1) & hmask;
    }
}

/* store._fill */
static inline void fill(order_t *r, int64_t price, int64_t shares, int64_t locate, int64_t side, uint32_t level) {
    r->price = (uint32_t)price;
    r->shares = (uint32_t)shares;
    r->locate = (uint16_t)locate;
    r->side = (uint8_t)side;
    r->level = level;
    r->live = 1;
}

static inline int64_t hash_insert(hashed_t *h, int64_t hsize, int64_t ref, int64_t price, int64_t shares,
                                  int64_t locate, int64_t side, uint32_t level) {
    int64_t hmask = hsize - 1, i = home(ref, hmask);
    while (h[i].ref != 0) i = (i + 1) & hmask;
    h[i].ref = (uint64_t)ref;
    fill(&h[i].order, price, shares, locate, side, level);
    return i;
}

static inline void hash_delete(hashed_t *h, int64_t hsize, int64_t i) {
    int64_t hmask = hsize - 1, j = i;
    for (;;) {
        j = (j + 1) & hmask;
        if (h[j].ref == 0) break;
        int64_t hm = home((int64_t)h[j].ref, hmask);
        if (((j - hm) & hmask) >= ((j - i) & hmask)) {
            h[i] = h[j];
            i = j;
        }
    }
    h[i].ref = 0;
}

static inline int hash_has_room(int64_t hsize, const int64_t *state, int64_t extra) {
    return (state[ST_HASH_N] + extra) * 2 <= hsize * 1;
}

static void rehash(const hashed_t *old, int64_t osize, hashed_t *new, int64_t nsize) {
    for (int64_t i = 0; i < osize; i++) {
        const order_t *r = &old[i].order;
        if (old[i].ref != 0) hash_insert(new, nsize, (int64_t)old[i].ref, r->price, r->shares, r->locate, r->side,
                                         r->level);
    }
}

#define MIGRATE_AHEAD 32
static void slide_window(order_t *w, int64_t size, hashed_t *h, int64_t hsize, int64_t *state, int64_t ref) {
    int64_t base = state[ST_BASE], chunk = size >> 4;
    while (ref >= base + size) {
        int64_t lo, hi, new_base;
        if (ref - base >= 2 * size) {
            lo = base; hi = base + size; new_base = ref - size + 1;
        } else {
            lo = base; hi = base + chunk; new_base = base + chunk;
        }
        for (int64_t r = lo; r < hi; r++) {
            if (w[(r + MIGRATE_AHEAD) & (size - 1)].live)  /* store.MIGRATE_AHEAD: its home asked for */
                __builtin_prefetch(&h[home(r + MIGRATE_AHEAD, hsize - 1)], 1, 3);
            order_t *o = &w[r & (size - 1)];
            if (o->live) {  /* the order with reference r */
                hash_insert(h, hsize, r, o->price, o->shares, o->locate, o->side, o->level);
                o->live = 0;
                state[ST_HASH_N]++;
                state[ST_MIGRATED]++;
            }
        }
        base = new_base;
        state[ST_BASE] = base;
    }
}

/* ------------------------------------------------------------------------------ levels (book/store.py) */
static inline int better(int64_t side, int64_t p, int64_t q) { return side == BID ? p > q : p < q; }
static inline int64_t entry_price(uint64_t e) { return (int64_t)(e >> 32); }

#define NEAR_BEST 8
/* the last position in [start, start + n) whose price is not better than price (start - 1 if none): the
   NEAR_BEST best entries one by one, then a binary search (store.level_search) */
static inline int64_t level_search(const uint64_t *ladder, int64_t start, int64_t n, int64_t side, int64_t price) {
    int64_t j = start + n - 1, lo = max64(start, j - NEAR_BEST + 1);
    for (; j >= lo; j--)
        if (!better(side, entry_price(ladder[j]), price)) return j;
    int64_t a = start, b = lo;
    while (a < b) {
        int64_t m = (a + b) >> 1;
        if (better(side, entry_price(ladder[m]), price)) b = m; else a = m + 1;
    }
    return a - 1;
}

static inline int level_room(int64_t levels_size, const int64_t *state) {
    return state[ST_LFREE] > 0 || state[ST_LTOP] < levels_size;
}

/* store.level_add: the order's level handle (room checked by room_for_add) */
static inline uint64_t level_add(uint64_t *ladder, level_t *levels, uint64_t *lfree, side_t *sides,
                                 int64_t *state, int64_t sidx, int64_t side,
                                 int64_t price, int64_t shares) {
    int64_t start = sides[sidx][SD_START], n = sides[sidx][SD_SIZE], j = level_search(ladder, start, n, side, price);
    if (j >= start && entry_price(ladder[j]) == price) {
        uint64_t lh = ladder[j] & HANDLE_MASK;
        levels[lh].shares += (uint64_t)shares;
        levels[lh].orders += 1;
        return lh;
    }
    uint64_t lh;
    if (state[ST_LFREE] > 0) lh = lfree[--state[ST_LFREE]];
    else lh = (uint64_t)state[ST_LTOP]++;
    levels[lh].price = (uint32_t)price;
    levels[lh].shares = (uint64_t)shares;
    levels[lh].orders = 1;
    if (n == sides[sidx][SD_CAP]) {
        int64_t cap = max64(8, 2 * n), nw = state[ST_POOL];
        for (int64_t k = 0; k < n; k++) ladder[nw + k] = ladder[start + k];
        j += nw - start;
        start = nw;
        sides[sidx][SD_START] = nw;
        sides[sidx][SD_CAP] = cap;
        state[ST_POOL] = nw + cap;
    }
    for (int64_t k = start + n; k > j + 1; k--) ladder[k] = ladder[k - 1];
    ladder[j + 1] = ((uint64_t)price << 32) | lh;
    sides[sidx][SD_SIZE] = n + 1;
    if (j + 1 == start + n) sides[sidx][SD_BEST] = (int64_t)lh;  /* the new best */
    return lh;
}

/* store.level_take: 1 when the level is left without orders */
static inline int level_take(level_t *levels, uint64_t lh, int64_t shares, int whole_order) {
    level_t *lv = &levels[lh];
    lv->shares -= (uint64_t)shares;
    if (whole_order) {
        lv->orders -= 1;
        return lv->orders == 0;
    }
    return 0;
}

/* store.level_drop */
static inline int level_drop(uint64_t *ladder, const level_t *levels, uint64_t *lfree, side_t *sides,
                             int64_t *state, int64_t sidx, int64_t side, uint64_t lh) {
    int64_t start = sides[sidx][SD_START], n = sides[sidx][SD_SIZE];
    int64_t j = level_search(ladder, start, n, side, (int64_t)levels[lh].price);
    if (j < start || (ladder[j] & HANDLE_MASK) != lh) return 0;
    for (int64_t k = j; k < start + n - 1; k++) ladder[k] = ladder[k + 1];
    sides[sidx][SD_SIZE] = n - 1;
    if (j == start + n - 1) sides[sidx][SD_BEST] = n > 1 ? (int64_t)(ladder[j - 1] & HANDLE_MASK) : NO_LEVEL;
    lfree[state[ST_LFREE]++] = lh;
    return 1;
}

static int64_t pool_needed(const side_t *sides) {
    int64_t total = 0;
    for (int64_t s = 0; s < N_SIDES; s++)
        if (sides[s][SD_CAP]) total += max64(8, 2 * sides[s][SD_SIZE]);
    return total;
}

static int64_t compact_pool(const uint64_t *old, uint64_t *new, side_t *sides) {
    int64_t pos = 0;
    for (int64_t s = 0; s < N_SIDES; s++) {
        int64_t n = sides[s][SD_SIZE];
        if (sides[s][SD_CAP] == 0) continue;
        int64_t cap = max64(8, 2 * n);
        for (int64_t k = 0; k < n; k++) new[pos + k] = old[sides[s][SD_START] + k];
        sides[s][SD_START] = pos;
        sides[s][SD_CAP] = cap;
        pos += cap;
    }
    return pos;
}

/* ------------------------------------------------------------------------------ messages (book/apply.py) */
/* The loop's working set, copied into locals so the compiler can keep pointers and sizes in registers. */
#define ARGS order_t *w, int64_t w_size, hashed_t *h, int64_t h_size, int64_t *state, uint64_t *ladder, \
             int64_t ladder_size, level_t *levels, int64_t levels_size, uint64_t *lfree, side_t *sides
#define PASS w, w_size, h, h_size, state, ladder, ladder_size, levels, levels_size, lfree, sides

/* store 0 window, 1 hash, -1 absent; *slot */
static inline int find(const order_t *w, int64_t w_size, const hashed_t *h, int64_t h_size, const int64_t *state,
                       int64_t ref, int64_t *slot) {
    int64_t base = state[ST_BASE];
    *slot = 0;
    if (ref == 0) return -1;  /* never an order (store.order_find) */
    if (base <= ref && ref < base + w_size) {
        int64_t s = ref & (w_size - 1);
        if (w[s].live) { *slot = s; return 0; }
        *slot = 0;
        return -1;
    }
    int64_t i = hash_find(h, h_size, ref);
    *slot = i >= 0 ? i : 0;
    return i >= 0 ? 1 : -1;
}

static inline int room_for_add(ARGS, int64_t ref, int64_t sidx) {
    (void)w; (void)h; (void)ladder; (void)levels; (void)lfree;
    int64_t base = state[ST_BASE], need = 0;
    if (ref < base) {
        need = 1;
    } else if (ref >= base + w_size) {
        int64_t in_window = state[ST_LIVE] - state[ST_HASH_N], chunk = w_size >> 4;
        need = min64(in_window, ((ref - base - w_size) / chunk + 1) * chunk);
    }
    if (need && !hash_has_room(h_size, state, need)) return NEED_HASH;
    int64_t cap = sides[sidx][SD_CAP];
    if (sides[sidx][SD_SIZE] == cap && state[ST_POOL] + max64(8, 2 * cap) > ladder_size) return NEED_POOL;
    if (!level_room(levels_size, state)) return NEED_LEVELS;
    return OK;
}

/* store.is_best: level lh is side sidx's best */
static inline int is_best(const side_t *sides, int64_t sidx, uint64_t lh) {
    return sides[sidx][SD_BEST] == (int64_t)lh;
}

/* apply._add: returns the order's side + 1 when its level is the side's best (that side's top of book may have
   changed), else 0 */
static inline int add(ARGS, int64_t ref, int64_t locate, int64_t side, int64_t price, int64_t shares) {
    (void)ladder_size; (void)levels_size;
    uint32_t lh = (uint32_t)level_add(ladder, levels, lfree, sides, state, locate * 2 + side, side,
                                      price, shares);
    if (ref >= state[ST_BASE] + w_size) slide_window(w, w_size, h, h_size, state, ref);
    if (ref < state[ST_BASE]) {
        hash_insert(h, h_size, ref, price, shares, locate, side, lh);
        state[ST_HASH_N]++;
    } else {
        fill(&w[ref & (w_size - 1)], price, shares, locate, side, lh);
    }
    state[ST_LIVE]++;
    int64_t *sr = sides[locate * 2 + side];  /* references rise through the day: a level's queue is their order */
    if (ref > sr[SD_MAX_REF]) sr[SD_MAX_REF] = ref;
    else sr[SD_REFS_BACK]++;
    return is_best(sides, locate * 2 + side, lh) ? (int)side + 1 : 0;
}

static inline void drop(order_t *w, hashed_t *h, int64_t h_size, int64_t *state, int store, int64_t slot) {
    if (store == 0) {
        w[slot].live = 0;
    } else {
        hash_delete(h, h_size, slot);
        state[ST_HASH_N]--;
    }
    state[ST_LIVE]--;
}

/* take shares (and, when whole, the order) off order o's level; drop the level when it empties (apply._remove).
   Returns the side + 1 when that level was the side's best (its top of book may have changed), else 0. */
static inline int remove_from_level(ARGS, const order_t *o, int64_t shares, int whole) {
    (void)w; (void)w_size; (void)h; (void)h_size; (void)ladder_size; (void)levels_size;
    int64_t sidx = (int64_t)o->locate * 2 + o->side;
    int best = is_best(sides, sidx, o->level) ? o->side + 1 : 0;
    if (level_take(levels, o->level, shares, whole))
        level_drop(ladder, levels, lfree, sides, state, sidx, o->side, o->level);
    return best;
}

/* E, C, X: take n shares off an order; remove it at zero. Returns its locate, or -1; *best: whether its level was
   the best. */
static inline int64_t reduce(ARGS, int64_t ref, int64_t n, int over_counter, int64_t *stats, int *best) {
    int64_t slot;
    int store = find(w, w_size, h, h_size, state, ref, &slot);
    if (store < 0) {
        stats[UNKNOWN_REFS]++;
        return -1;
    }
    order_t *o = store == 0 ? &w[slot] : &h[slot].order;
    int64_t locate = o->locate, remaining = o->shares;
    if (n >= remaining) {
        if (n > remaining) stats[over_counter]++;
        *best = remove_from_level(PASS, o, remaining, 1);
        drop(w, h, h_size, state, store, slot);
    } else {
        *best = remove_from_level(PASS, o, n, 0);
        o->shares = (uint32_t)(remaining - n);
    }
    return locate;
}

/* Apply one message; a non-OK status means nothing was changed. */
static inline int apply_one(const uint8_t *b, int64_t o, int64_t ln, uint64_t seq, ARGS, int64_t (*last)[4],
                            stock_t *stocks, event_t *ev, int64_t *ev_n_io, int64_t *stats) {
    if (ln == 0 || LENGTHS[b[o]] < 0) {
        stats[ln ? UNKNOWN_TYPES : BAD_LENGTHS]++;
        stats[MESSAGES]++;
        return OK;
    }
    int t = b[o];
    if (ln != LENGTHS[t]) {
        stats[BAD_LENGTHS]++;
        stats[MESSAGES]++;
        return OK;
    }
    const uint8_t *m = b + o;
    int64_t locate = -1, slot;
    int best = 0;  /* side + 1 when the message touched that side's best level: only then can its top change */
    switch (t) {
    case 'A': case 'F': {
        stats[ADDS]++;
        int sd = m[19];
        int64_t side = sd == 'B' ? 0 : sd == 'S' ? 1 : -1;
        int64_t ref = (int64_t)be64(m + 11);
        if (side < 0) {
            stats[BAD_SIDE]++;
        } else if (ref == 0) {
            stats[ZERO_REFS]++;
        } else if (find(w, w_size, h, h_size, state, ref, &slot) >= 0) {
            stats[DUPLICATE_ADDS]++;
        } else {
            int64_t loc = be16(m + 1);
            int st = room_for_add(PASS, ref, loc * 2 + side);
            if (st != OK) {
                stats[ADDS]--;
                return st;
            }
            int fresh = sides[loc * 2 + side][SD_CAP] == 0;  /* the side's first level ever */
            best = add(PASS, ref, loc, side, be32(m + 32), be32(m + 20));
            locate = loc;
            if (fresh && stocks[loc].symbol == 0) stocks[loc].symbol = be64(m + 24);  /* joined mid-day: it names it */
        }
        break;
    }
    case 'D': {
        int64_t ref = (int64_t)be64(m + 11);
        int store = find(w, w_size, h, h_size, state, ref, &slot);
        if (store < 0) {
            stats[UNKNOWN_REFS]++;
        } else {
            order_t *r = store == 0 ? &w[slot] : &h[slot].order;
            locate = r->locate;
            best = remove_from_level(PASS, r, r->shares, 1);
            drop(w, h, h_size, state, store, slot);
            stats[DELETES]++;
        }
        break;
    }
    case 'U': {
        int64_t old = (int64_t)be64(m + 11), nw = (int64_t)be64(m + 19), slot2;
        int store = find(w, w_size, h, h_size, state, old, &slot);
        if (store < 0) {
            stats[UNKNOWN_REFS]++;
        } else {
            order_t *r = store == 0 ? &w[slot] : &h[slot].order;
            int64_t loc = r->locate, side = r->side;
            int addable = nw != 0 && (nw == old || find(w, w_size, h, h_size, state, nw, &slot2) < 0);
            if (addable) {
                int st = room_for_add(PASS, nw, loc * 2 + side);
                if (st != OK) return st;
            } else if (nw == 0) {
                stats[ZERO_REFS]++;
            } else {
                stats[DUPLICATE_ADDS]++;
            }
            best = remove_from_level(PASS, r, r->shares, 1);
            drop(w, h, h_size, state, store, slot);
            if (addable) best |= add(PASS, nw, loc, side, be32(m + 31), be32(m + 27));
            stats[REPLACES]++;
            locate = loc;
        }
        break;
    }
    case 'E': case 'C':
        locate = reduce(PASS, (int64_t)be64(m + 11), be32(m + 19), OVER_EXECUTIONS, stats, &best);
        if (locate >= 0) stats[EXECUTIONS]++;
        break;
    case 'X':
        locate = reduce(PASS, (int64_t)be64(m + 11), be32(m + 19), OVER_CANCELS, stats, &best);
        if (locate >= 0) stats[CANCELS]++;
        break;
    case 'P': stats[TRADES]++; break;
    case 'Q': stats[CROSS_TRADES]++; break;
    case 'B': stats[BROKEN_TRADES]++; break;
    case 'R': {
        stock_t *s = &stocks[be16(m + 1)];
        s->symbol = be64(m + 11);
        s->round_lot = (uint32_t)be32(m + 21);
        break;
    }
    case 'H': {
        stock_t *s = &stocks[be16(m + 1)];
        s->trading_state = m[19];
        s->reason = (uint32_t)be32(m + 21);
        break;
    }
    case 'S': state[ST_SYSTEM] = m[11]; break;
    default: break;
    }
    stats[MESSAGES]++;
    if (locate >= 0 && best) {
        /* only the touched side's top can have moved: last[] holds the other's, as published */
        int64_t sd = best - 1, lh = sides[locate * 2 + sd][SD_BEST];
        int64_t p = lh != NO_LEVEL ? (int64_t)levels[lh].price : 0, q = lh != NO_LEVEL ? (int64_t)levels[lh].shares : 0;
        int64_t *l = last[locate];
        if (l[2 * sd] != p || l[2 * sd + 1] != q) {
            l[2 * sd] = p; l[2 * sd + 1] = q;
            event_t *e = &ev[*ev_n_io];
            e->seq = seq;
            e->timestamp = (uint64_t)be48(m + 5);
            e->locate = (uint16_t)locate;
            e->bid_price = (uint32_t)l[0];
            e->bid_shares = (uint64_t)l[1];
            e->ask_price = (uint32_t)l[2];
            e->ask_shares = (uint64_t)l[3];
            (*ev_n_io)++;
            stats[BBO_EVENTS]++;
        }
    }
    return OK;
}

#define PREFETCH_AHEAD 8
/* GCC drops a call to a function whose only effect is a prefetch (it counts as none) unless it is inlined first */
#define HINT static inline __attribute__((always_inline))

static inline int is_removal(int t) { return t == 'D' || t == 'E' || t == 'C' || t == 'X' || t == 'U'; }

/* apply._prefetch_far: the slot (or hash home) of the order a D, E, C, X or U acts on; an add's side row. Returns
   what stage two is to look at: (window slot << 1), (side row << 1) | 1 for an add, or -1 */
HINT int64_t prefetch_far(const uint8_t *m, int64_t ln, const order_t *w, int64_t w_size, const hashed_t *h,
                          int64_t h_size, const int64_t *state, side_t *sides) {
    if (ln < 19) return -1;
    if (is_removal(m[0])) {
        int64_t ref = (int64_t)be64(m + 11), base = state[ST_BASE];
        if (base <= ref && ref < base + w_size) {
            int64_t slot = ref & (w_size - 1);
            __builtin_prefetch(&w[slot], 1, 3);
            return slot << 1;
        }
        __builtin_prefetch(&h[home(ref, h_size - 1)], 1, 3);
    } else if ((m[0] == 'A' || m[0] == 'F') && ln > 19) {
        int64_t sidx = be16(m + 1) * 2 + (m[19] == 'S');
        __builtin_prefetch(&sides[sidx], 1, 3);
        return (sidx << 1) | 1;
    }
    return -1;
}

/* apply._prefetch_near: the level and side row of the order in a window slot; an add's side's best ladder entries */
HINT void prefetch_near(int64_t code, const order_t *w, const uint64_t *ladder, const level_t *levels,
                        side_t *sides) {
    if (code < 0) return;
    int64_t x = code >> 1;
    if (code & 1) {
        int64_t e = sides[x][SD_START] + sides[x][SD_SIZE] - 1;
        if (e >= 0) {
            __builtin_prefetch(&ladder[e], 1, 3);
            __builtin_prefetch(&ladder[max64(e - 4, 0)], 1, 3);
        }
    } else {
        __builtin_prefetch(&levels[w[x].level], 1, 3);
        __builtin_prefetch(&sides[w[x].locate * 2 + w[x].side], 1, 3);
    }
}

/* apply._stream_step: where the message after the one at q starts (end when none follows whole) */
static inline int64_t stream_step(const uint8_t *b, int64_t q, int64_t end) {
    if (q + 2 <= end) {
        int64_t nq = q + 2 + be16(b + q);
        if (nq <= end) return nq;
    }
    return end;
}

/* Length-prefixed messages in b[pos:end]; stops before a message when the store needs room or the event
 * batch is full. Returns the position; *status says why it stopped. */
static int64_t apply_stream(const uint8_t *b, int64_t pos, int64_t end, book_t *bk, int *status) {
    order_t *w = bk->w;
    hashed_t *h = bk->h;
    int64_t w_size = bk->w_size, h_size = bk->h_size, ev_size = bk->ev_size;
    int64_t ladder_size = bk->ladder_size, levels_size = bk->levels_size;
    int64_t *state = bk->state;
    side_t *sides = bk->sides;
    int64_t *stats = bk->stats;
    uint64_t *ladder = bk->ladder, *lfree = bk->lfree;
    level_t *levels = bk->levels;
    int64_t ev_n = bk->ev_n;
    int st = OK;
    int64_t far = pos;  /* PREFETCH_AHEAD messages on (apply.py) */
    for (int k = 0; k < PREFETCH_AHEAD; k++) far = stream_step(b, far, end);
    int64_t c1 = -1, c2 = -1, c3 = -1, c4 = -1;  /* stage one's findings, for stage two 4 messages later */
    while (pos + 2 <= end) {
        if (ev_n == ev_size) { st = NEED_EVENTS; break; }
        int64_t ln = be16(b + pos);
        if (pos + 2 + ln > end) break;
        prefetch_near(c4, w, ladder, levels, sides);
        int64_t code = -1;
        if (far < end) {
            int64_t nf = stream_step(b, far, end);
            code = prefetch_far(b + far + 2, nf - far - 2, w, w_size, h, h_size, state, sides);
            far = nf;
        }
        c4 = c3; c3 = c2; c2 = c1; c1 = code;
        st = apply_one(b, pos + 2, ln, 0, PASS, bk->last, bk->stocks, bk->ev, &ev_n, stats);
        if (st != OK) break;
        pos += 2 + ln;
    }
    bk->ev_n = ev_n;
    *status = st;
    return pos;
}

/* ------------------------------------------------------------------------------ driver (OrderBook) */
static int64_t pow2(int64_t n) { int64_t p = 16; while (p < n) p <<= 1; return p; } /* book._pow2 */

static int hugepage = 1;

/* capture.huge_arrays.zeros: blocks of 2 MiB or more get a private anonymous mapping that starts on a 2 MiB
 * boundary, advised MADV_HUGEPAGE (with THP in "madvise" mode every page of it can be huge; numpy's own advice
 * leaves each end on small pages); smaller blocks, or --no-hugepage, calloc. */
#define HUGE_PAGE ((size_t)2 << 20)

static int huge_block(size_t bytes) { return hugepage && bytes >= HUGE_PAGE; }

static void *zalloc(size_t n, size_t size, int prefault) {
    size_t bytes = n * size;
    void *p;
    if (huge_block(bytes)) {
        size_t len = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        char *m = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) { perror("mmap"); exit(2); }
        size_t head = -(uintptr_t)m & (HUGE_PAGE - 1);
        if (head) munmap(m, head); /* keep exactly [p, p + len): zfree unmaps that */
        munmap(m + head + len, HUGE_PAGE - head);
        p = m + head;
        madvise(p, len, MADV_HUGEPAGE);
    } else {
        p = calloc(n, size);
        if (!p) { perror("calloc"); exit(2); }
    }
    if (prefault) memset(p, 0, bytes);
    return p;
}

static void zfree(void *p, size_t n, size_t size) {
    size_t bytes = n * size;
    if (huge_block(bytes)) munmap(p, (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
    else free(p);
}

static void book_init(book_t *bk, int64_t window, int64_t hash, int64_t levels, int64_t events, int prefault) {
    memset(bk, 0, sizeof *bk);
    bk->w_size = pow2(window);
    bk->h_size = pow2(hash);
    bk->ladder_size = levels;
    bk->levels_size = levels;
    bk->ev_size = events;
    bk->w = zalloc((size_t)bk->w_size, sizeof(order_t), prefault);
    bk->h = zalloc((size_t)bk->h_size, sizeof(hashed_t), prefault);
    bk->ladder = zalloc((size_t)levels, sizeof(uint64_t), prefault);
    bk->levels = zalloc((size_t)levels, sizeof(level_t), prefault);
    bk->lfree = zalloc((size_t)levels, sizeof(uint64_t), prefault);
    bk->sides = zalloc(N_SIDES, sizeof(side_t), prefault);
    for (int64_t s = 0; s < N_SIDES; s++) bk->sides[s][SD_BEST] = NO_LEVEL;
    bk->last = zalloc(65536, sizeof *bk->last, prefault);
    bk->stocks = zalloc(65536, sizeof(stock_t), prefault);
    bk->ev = zalloc((size_t)events, sizeof(event_t), prefault);
}

static void book_free(book_t *bk) {
    zfree(bk->w, (size_t)bk->w_size, sizeof(order_t));
    zfree(bk->h, (size_t)bk->h_size, sizeof(hashed_t));
    zfree(bk->ladder, (size_t)bk->ladder_size, sizeof(uint64_t));
    zfree(bk->levels, (size_t)bk->levels_size, sizeof(level_t));
    zfree(bk->lfree, (size_t)bk->levels_size, sizeof(uint64_t));
    zfree(bk->sides, N_SIDES, sizeof(side_t));
    zfree(bk->last, 65536, sizeof *bk->last);
    zfree(bk->stocks, 65536, sizeof(stock_t));
    zfree(bk->ev, (size_t)bk->ev_size, sizeof(event_t));
}

/* Event checksum: sum over events i (1-based, across batches) of i * (ts*3 + bid_shares*5 + ask_shares*7 +
 * bid_price*11 + ask_price*13 + locate*17), mod 2^64. */
typedef struct { uint64_t sum, n; } evsum_t;

static void drain(book_t *bk, evsum_t *es) {
    if (es)
        for (int64_t i = 0; i < bk->ev_n; i++) {
            const event_t *e = &bk->ev[i];
            es->n++;
            es->sum += es->n * (e->timestamp * 3 + e->bid_shares * 5 + e->ask_shares * 7 + (uint64_t)e->bid_price * 11
                                + (uint64_t)e->ask_price * 13 + (uint64_t)e->locate * 17);
        }
    bk->ev_n = 0;
}

/* OrderBook.apply_stream + _handle */
static int64_t book_apply(book_t *bk, const uint8_t *b, int64_t end, evsum_t *es) {
    int64_t pos = 0;
    for (;;) {
        int st;
        pos = apply_stream(b, pos, end, bk, &st);
        if (st == OK) return pos;
        if (st == NEED_HASH) {
            hashed_t *nh = zalloc((size_t)bk->h_size * 2, sizeof(hashed_t), 0);
            rehash(bk->h, bk->h_size, nh, bk->h_size * 2);
            zfree(bk->h, (size_t)bk->h_size, sizeof(hashed_t));
            bk->h = nh;
            bk->h_size *= 2;
            bk->stats[HASH_GROWS]++;
        } else if (st == NEED_POOL) {
            int64_t need = pool_needed(bk->sides);
            int64_t size = max64(max64(bk->ladder_size * 2, 2 * need), 1024);
            uint64_t *np = zalloc((size_t)size, sizeof(uint64_t), 0);
            bk->state[ST_POOL] = compact_pool(bk->ladder, np, bk->sides);
            zfree(bk->ladder, (size_t)bk->ladder_size, sizeof(uint64_t));
            bk->ladder = np;
            bk->ladder_size = size;
            bk->stats[POOL_GROWS]++;
        } else if (st == NEED_LEVELS) {
            int64_t size = max64(bk->levels_size * 2, 1024);
            level_t *nl = zalloc((size_t)size, sizeof(level_t), 0);
            uint64_t *nf = zalloc((size_t)size, sizeof(uint64_t), 0);
            memcpy(nl, bk->levels, (size_t)bk->levels_size * sizeof(level_t));
            memcpy(nf, bk->lfree, (size_t)bk->levels_size * sizeof(uint64_t));
            zfree(bk->levels, (size_t)bk->levels_size, sizeof(level_t));
            zfree(bk->lfree, (size_t)bk->levels_size, sizeof(uint64_t));
            bk->levels = nl;
            bk->lfree = nf;
            bk->levels_size = size;
            bk->stats[POOL_GROWS]++;
        } else {
            drain(bk, es);
        }
    }
}

/* ------------------------------------------------------------------------------ checksums of the final book */
/* levels: sum over sides s and levels k (0 = worst .. n-1 = best, as stored) of
 * (price*31 + shares*7 + orders) * ((s << 16) + k + 1), mod 2^64. */
static uint64_t level_checksum(const book_t *bk, int64_t *n_levels) {
    uint64_t sum = 0;
    int64_t n = 0;
    for (int64_t s = 0; s < N_SIDES; s++)
        for (int64_t k = 0; k < bk->sides[s][SD_SIZE]; k++) {
            const level_t *lv = &bk->levels[bk->ladder[bk->sides[s][SD_START] + k] & HANDLE_MASK];
            sum += ((uint64_t)lv->price * 31 + lv->shares * 7 + lv->orders) * (((uint64_t)s << 16) + (uint64_t)k + 1);
            n++;
        }
    *n_levels = n;
    return sum;
}

static uint64_t order_term(uint64_t ref, const order_t *o) {
    return ref * 3 + (uint64_t)o->price * 5 + (uint64_t)o->shares * 7 + (uint64_t)o->locate * 11
           + (uint64_t)o->side * 13;
}

/* live orders wherever they are stored: sum of ref*3 + price*5 + shares*7 + locate*11 + side*13, mod 2^64 (a window
   slot's reference is the one in [base, base + W) it holds: store.live_orders) */
static uint64_t order_checksum(const book_t *bk, int64_t *count) {
    uint64_t sum = 0;
    int64_t base = bk->state[ST_BASE];
    for (int64_t i = 0; i < bk->w_size; i++)
        if (bk->w[i].live) {
            sum += order_term((uint64_t)(base + ((i - base) & (bk->w_size - 1))), &bk->w[i]);
            (*count)++;
        }
    for (int64_t i = 0; i < bk->h_size; i++)
        if (bk->h[i].ref) {
            sum += order_term(bk->h[i].ref, &bk->h[i].order);
            (*count)++;
        }
    return sum;
}

/* stocks: sum of symbol*3 + round_lot*5 + trading_state*7 + reason*11; last: sum of last[l][j] * (4l + j + 1) */
static uint64_t stock_checksum(const book_t *bk) {
    uint64_t sum = 0;
    for (int64_t l = 0; l < 65536; l++) {
        const stock_t *s = &bk->stocks[l];
        sum += s->symbol * 3 + (uint64_t)s->round_lot * 5 + (uint64_t)s->trading_state * 7 + (uint64_t)s->reason * 11;
        for (int j = 0; j < 4; j++) sum += (uint64_t)bk->last[l][j] * (uint64_t)(4 * l + j + 1);
    }
    return sum;
}

static void print_book(const book_t *bk) {
    int64_t n_levels, n_orders = 0;
    uint64_t lsum = level_checksum(bk, &n_levels);
    uint64_t osum = order_checksum(bk, &n_orders);
    printf("\"live_orders\": %lld, \"stored_orders\": %lld, \"levels\": %lld, \"level_checksum\": %llu, "
           "\"order_checksum\": %llu, \"stock_checksum\": %llu, \"hash_slots\": %lld, \"pool_slots\": %lld, "
           "\"state\": [", (long long)bk->state[ST_LIVE], (long long)n_orders, (long long)n_levels,
           (unsigned long long)lsum, (unsigned long long)osum, (unsigned long long)stock_checksum(bk),
           (long long)bk->h_size, (long long)bk->ladder_size);
    for (int i = 0; i < N_STATE; i++) printf("%s%lld", i ? ", " : "", (long long)bk->state[i]);
    printf("], \"stats\": {");
    for (int i = 0; i < N_STATS; i++) printf("%s\"%s\": %lld", i ? ", " : "", STAT_NAMES[i], (long long)bk->stats[i]);
    printf("}");
}

/* ------------------------------------------------------------------------------ main */
#define FIELD(T, f) printf("%s\"%s\": [%zu, %zu]", first ? "" : ", ", #f, offsetof(T, f), sizeof(((T *)0)->f)), first = 0
static void layout(void) {
    int first;
    printf("{\"ORDER\": {\"size\": %zu, \"fields\": {", sizeof(order_t));
    first = 1; FIELD(order_t, price); FIELD(order_t, shares); FIELD(order_t, level); FIELD(order_t, locate);
    FIELD(order_t, side); FIELD(order_t, live);
    printf("}}, \"HASHED\": {\"size\": %zu, \"fields\": {", sizeof(hashed_t));
    first = 1; FIELD(hashed_t, ref); FIELD(hashed_t, order);
    printf("}}, \"LEVEL\": {\"size\": %zu, \"fields\": {", sizeof(level_t));
    first = 1; FIELD(level_t, shares); FIELD(level_t, price); FIELD(level_t, orders);
    printf("}}, \"EVENT\": {\"size\": %zu, \"fields\": {", sizeof(event_t));
    first = 1; FIELD(event_t, seq); FIELD(event_t, timestamp); FIELD(event_t, bid_shares); FIELD(event_t, ask_shares);
    FIELD(event_t, bid_price); FIELD(event_t, ask_price); FIELD(event_t, locate);
    printf("}}, \"STOCK\": {\"size\": %zu, \"fields\": {", sizeof(stock_t));
    first = 1; FIELD(stock_t, symbol); FIELD(stock_t, round_lot); FIELD(stock_t, trading_state); FIELD(stock_t, stale);
    FIELD(stock_t, reason);
    printf("}}, \"LENGTHS\": [");
    for (int i = 0; i < 256; i++) printf("%s%lld", i ? ", " : "", (long long)LENGTHS[i]);
    printf("], \"STAT_NAMES\": [");
    for (int i = 0; i < N_STATS; i++) printf("%s\"%s\"", i ? ", " : "", STAT_NAMES[i]);
    printf("]}\n");
}


int main(int argc, char **argv) {
    const char *path = NULL;
    int repeat = 5, prefault = 0;
    int64_t window = 1 << 22, hash = 1 << 21, levels = 1 << 20, events = 1 << 16; /* OrderBook() defaults */
    for (int i = 0; i < 256; i++) LENGTHS[i] = -1;
    for (int c = 0; TYPES[c]; c++) LENGTHS[(uint8_t)TYPES[c]] = LEN[c];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layout")) { layout(); return 0; }
        else if (!strcmp(argv[i], "--prefault")) prefault = 1;
        else if (!strcmp(argv[i], "--no-hugepage")) hugepage = 0;
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--window") && i + 1 < argc) window = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--hash") && i + 1 < argc) hash = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--levels") && i + 1 < argc) levels = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--events") && i + 1 < argc) events = atoll(argv[++i]);
        else path = argv[i];
    }
    if (!path || repeat < 1 || window < 16 || hash < 16 || levels < 1 || events < 1) {
        fprintf(stderr, "usage: book FILE [--repeat R] [--window N] [--hash N] [--levels N] [--events N] "
                        "[--prefault] [--no-hugepage] | --layout\n");
        return 2;
    }
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) { perror(path); return 2; }
    int64_t size = (int64_t)st.st_size;
    const uint8_t *b = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (b == MAP_FAILED) { perror("mmap"); return 2; }

    book_t bk;
    printf("{\"bytes\": %lld, \"prefault\": %s, \"madvise_hugepage\": %s, \"verify\": {", (long long)size,
           prefault ? "true" : "false", hugepage ? "true" : "false");
    book_init(&bk, window, hash, levels, events, prefault);
    evsum_t es = {0, 0};
    int64_t pos = book_apply(&bk, b, size, &es);
    drain(&bk, &es);
    print_book(&bk);
    printf(", \"consumed\": %lld, \"event_checksum\": %llu, \"events_drained\": %llu}", (long long)pos,
           (unsigned long long)es.sum, (unsigned long long)es.n);
    book_free(&bk);

    int64_t *runs = calloc((size_t)repeat, sizeof *runs);
    int64_t msgs = 0;
    for (int r = 0; r < repeat; r++) {
        book_init(&bk, window, hash, levels, events, prefault);
        int64_t t0 = now_ns();
        book_apply(&bk, b, size, NULL);
        runs[r] = now_ns() - t0;
        msgs = bk.stats[MESSAGES];
        if (r == repeat - 1) {
            printf(", \"last_run\": {");
            print_book(&bk);
            printf("}");
        }
        book_free(&bk);
    }
    printf(", \"messages\": %lld, \"runs_ns\": [", (long long)msgs);
    for (int r = 0; r < repeat; r++) printf("%s%lld", r ? ", " : "", (long long)runs[r]);
    qsort(runs, (size_t)repeat, sizeof *runs, cmp_i64);
    int64_t med = repeat % 2 ? runs[repeat / 2] : (runs[repeat / 2 - 1] + runs[repeat / 2]) / 2;
    printf("], \"median_ns\": %lld, \"ns_per_msg\": %.3f, \"msgs_per_s\": %.0f}\n", (long long)med,
           (double)med / (double)msgs, (double)msgs * 1e9 / (double)med);
    return 0;
}
