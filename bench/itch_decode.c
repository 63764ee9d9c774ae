/* itch_decode.c: the C yardstick for multicast/itch.py's compiled decode_stream.
 *
 * Same work as the numba decoder: walk [uint16 BE length][message] records, dispatch on the type
 * byte, check the length against the type, and write the fields into one table of structs per type.
 * The structs mirror the numpy record dtypes of multicast/itch_schema.py (align=True is C layout:
 * same field order, widths and offsets; `--layout` prints them so bench_decode.py can compare),
 * plus the arrival order arrays (type code, row). Tables hold `capacity` rows; when they are full
 * the caller clears the row counts and goes on, as the Python benchmark does with ItchTables.
 *
 * Usage: itch_decode FILE [--repeat R] [--capacity N]   time R full passes, print JSON (median ns)
 *        itch_decode FILE --verify [--capacity N]        one pass: per-type counts and checksum
 *        itch_decode --layout                            struct sizes and field offsets as JSON
 * Build: cc -O3 -march=native -o itch_decode itch_decode.c
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

#define N_TYPES 23
static const char TYPES[] = "SRHYLVWKJhAFECXDUPQBINO"; /* index = type code, as in itch_schema.TYPES */
enum { T_S, T_R, T_H, T_Y, T_L, T_V, T_W, T_K, T_J, T_h, T_A, T_F, T_E, T_C, T_X, T_D, T_U, T_P, T_Q, T_B,
       T_I, T_N, T_O };
static const int LEN[N_TYPES] = {12, 39, 25, 20, 26, 35, 12, 28, 35, 21, 36, 40, 31, 36, 23, 19, 35, 44, 40,
                                 19, 50, 20, 48};

/* multicast/counters.py indices used by the decoder */
enum { CNT_MESSAGES = 14, CNT_UNKNOWN_TYPES = 15, CNT_BAD_LENGTH = 16, CNT_DECODED = 17, N_COUNTERS = 19 };

#define HEADER uint16_t session; uint64_t seq; uint16_t stock_locate; uint16_t tracking_number; uint64_t timestamp;
typedef struct { HEADER uint8_t event_code; } m_S;
typedef struct { HEADER uint64_t stock; uint8_t market_category, financial_status_indicator; uint32_t round_lot_size;
                 uint8_t round_lots_only, issue_classification; uint16_t issue_sub_type; uint8_t authenticity,
                 short_sale_threshold_indicator, ipo_flag, luld_reference_price_tier, etp_flag;
                 uint32_t etp_leverage_factor; uint8_t inverse_indicator; } m_R;
typedef struct { HEADER uint64_t stock; uint8_t trading_state, reserved; uint32_t reason; } m_H;
typedef struct { HEADER uint64_t stock; uint8_t reg_sho_action; } m_Y;
typedef struct { HEADER uint32_t mpid; uint64_t stock; uint8_t primary_market_maker, market_maker_mode,
                 market_participant_state; } m_L;
typedef struct { HEADER uint64_t level_1, level_2, level_3; } m_V;
typedef struct { HEADER uint8_t breached_level; } m_W;
typedef struct { HEADER uint64_t stock; uint32_t ipo_quotation_release_time; uint8_t ipo_quotation_release_qualifier;
                 uint32_t ipo_price; } m_K;
typedef struct { HEADER uint64_t stock; uint32_t auction_collar_reference_price, upper_auction_collar_price,
                 lower_auction_collar_price, auction_collar_extension; } m_J;
typedef struct { HEADER uint64_t stock; uint8_t market_code, operational_halt_action; } m_h;
typedef struct { HEADER uint64_t order_reference_number; uint8_t buy_sell_indicator; uint32_t shares; uint64_t stock;
                 uint32_t price; } m_A;
typedef struct { HEADER uint64_t order_reference_number; uint8_t buy_sell_indicator; uint32_t shares; uint64_t stock;
                 uint32_t price, attribution; } m_F;
typedef struct { HEADER uint64_t order_reference_number; uint32_t executed_shares; uint64_t match_number; } m_E;
typedef struct { HEADER uint64_t order_reference_number; uint32_t executed_shares; uint64_t match_number;
                 uint8_t printable; uint32_t execution_price; } m_C;
typedef struct { HEADER uint64_t order_reference_number; uint32_t canceled_shares; } m_X;
typedef struct { HEADER uint64_t order_reference_number; } m_D;
typedef struct { HEADER uint64_t original_order_reference_number, new_order_reference_number; uint32_t shares,
                 price; } m_U;
typedef struct { HEADER uint64_t order_reference_number; uint8_t buy_sell_indicator; uint32_t shares; uint64_t stock;
                 uint32_t price; uint64_t match_number; } m_P;
typedef struct { HEADER uint64_t shares, stock; uint32_t cross_price; uint64_t match_number; uint8_t cross_type; } m_Q;
typedef struct { HEADER uint64_t match_number; } m_B;
typedef struct { HEADER uint64_t paired_shares, imbalance_shares; uint8_t imbalance_direction; uint64_t stock;
                 uint32_t far_price, near_price, current_reference_price; uint8_t cross_type,
                 price_variation_indicator; } m_I;
typedef struct { HEADER uint64_t stock; uint8_t interest_flag; } m_N;
typedef struct { HEADER uint64_t stock; uint8_t open_eligibility_status; uint32_t minimum_allowable_price,
                 maximum_allowable_price, near_execution_price; uint64_t near_execution_time;
                 uint32_t lower_price_range_collar, upper_price_range_collar; } m_O;

/* ------------------------------------------------------------------------------ layout table */
typedef struct { const char *name; size_t offset, size; } field_t;
#define F(T, f) {#f, offsetof(T, f), sizeof(((T *)0)->f)}
#define HF(T) F(T, session), F(T, seq), F(T, stock_locate), F(T, tracking_number), F(T, timestamp)
static const field_t f_S[] = {HF(m_S), F(m_S, event_code), {0}};
static const field_t f_R[] = {HF(m_R), F(m_R, stock), F(m_R, market_category), F(m_R, financial_status_indicator),
    F(m_R, round_lot_size), F(m_R, round_lots_only), F(m_R, issue_classification), F(m_R, issue_sub_type),
    F(m_R, authenticity), F(m_R, short_sale_threshold_indicator), F(m_R, ipo_flag), F(m_R, luld_reference_price_tier),
    F(m_R, etp_flag), F(m_R, etp_leverage_factor), F(m_R, inverse_indicator), {0}};
static const field_t f_H[] = {HF(m_H), F(m_H, stock), F(m_H, trading_state), F(m_H, reserved), F(m_H, reason), {0}};
static const field_t f_Y[] = {HF(m_Y), F(m_Y, stock), F(m_Y, reg_sho_action), {0}};
static const field_t f_L[] = {HF(m_L), F(m_L, mpid), F(m_L, stock), F(m_L, primary_market_maker),
    F(m_L, market_maker_mode), F(m_L, market_participant_state), {0}};
static const field_t f_V[] = {HF(m_V), F(m_V, level_1), F(m_V, level_2), F(m_V, level_3), {0}};
static const field_t f_W[] = {HF(m_W), F(m_W, breached_level), {0}};
static const field_t f_K[] = {HF(m_K), F(m_K, stock), F(m_K, ipo_quotation_release_time),
    F(m_K, ipo_quotation_release_qualifier), F(m_K, ipo_price), {0}};
static const field_t f_J[] = {HF(m_J), F(m_J, stock), F(m_J, auction_collar_reference_price),
    F(m_J, upper_auction_collar_price), F(m_J, lower_auction_collar_price), F(m_J, auction_collar_extension), {0}};
static const field_t f_h[] = {HF(m_h), F(m_h, stock), F(m_h, market_code), F(m_h, operational_halt_action), {0}};
static const field_t f_A[] = {HF(m_A), F(m_A, order_reference_number), F(m_A, buy_sell_indicator), F(m_A, shares),
    F(m_A, stock), F(m_A, price), {0}};
static const field_t f_F[] = {HF(m_F), F(m_F, order_reference_number), F(m_F, buy_sell_indicator), F(m_F, shares),
    F(m_F, stock), F(m_F, price), F(m_F, attribution), {0}};
static const field_t f_E[] = {HF(m_E), F(m_E, order_reference_number), F(m_E, executed_shares),
    F(m_E, match_number), {0}};
static const field_t f_C[] = {HF(m_C), F(m_C, order_reference_number), F(m_C, executed_shares),
    F(m_C, match_number), F(m_C, printable), F(m_C, execution_price), {0}};
static const field_t f_X[] = {HF(m_X), F(m_X, order_reference_number), F(m_X, canceled_shares), {0}};
static const field_t f_D[] = {HF(m_D), F(m_D, order_reference_number), {0}};
static const field_t f_U[] = {HF(m_U), F(m_U, original_order_reference_number), F(m_U, new_order_reference_number),
    F(m_U, shares), F(m_U, price), {0}};
static const field_t f_P[] = {HF(m_P), F(m_P, order_reference_number), F(m_P, buy_sell_indicator), F(m_P, shares),
    F(m_P, stock), F(m_P, price), F(m_P, match_number), {0}};
static const field_t f_Q[] = {HF(m_Q), F(m_Q, shares), F(m_Q, stock), F(m_Q, cross_price), F(m_Q, match_number),
    F(m_Q, cross_type), {0}};
static const field_t f_B[] = {HF(m_B), F(m_B, match_number), {0}};
static const field_t f_I[] = {HF(m_I), F(m_I, paired_shares), F(m_I, imbalance_shares), F(m_I, imbalance_direction),
    F(m_I, stock), F(m_I, far_price), F(m_I, near_price), F(m_I, current_reference_price), F(m_I, cross_type),
    F(m_I, price_variation_indicator), {0}};
static const field_t f_N[] = {HF(m_N), F(m_N, stock), F(m_N, interest_flag), {0}};
static const field_t f_O[] = {HF(m_O), F(m_O, stock), F(m_O, open_eligibility_status), F(m_O, minimum_allowable_price),
    F(m_O, maximum_allowable_price), F(m_O, near_execution_price), F(m_O, near_execution_time),
    F(m_O, lower_price_range_collar), F(m_O, upper_price_range_collar), {0}};
static const field_t *FIELDS[N_TYPES] = {f_S, f_R, f_H, f_Y, f_L, f_V, f_W, f_K, f_J, f_h, f_A, f_F, f_E, f_C, f_X,
                                         f_D, f_U, f_P, f_Q, f_B, f_I, f_N, f_O};
static const size_t SIZES[N_TYPES] = {sizeof(m_S), sizeof(m_R), sizeof(m_H), sizeof(m_Y), sizeof(m_L), sizeof(m_V),
    sizeof(m_W), sizeof(m_K), sizeof(m_J), sizeof(m_h), sizeof(m_A), sizeof(m_F), sizeof(m_E), sizeof(m_C),
    sizeof(m_X), sizeof(m_D), sizeof(m_U), sizeof(m_P), sizeof(m_Q), sizeof(m_B), sizeof(m_I), sizeof(m_N),
    sizeof(m_O)};

/* ------------------------------------------------------------------------------ decoder */
typedef struct {
    void *tab[N_TYPES];
    int64_t rows[N_TYPES];
    uint8_t *o_type;
    uint32_t *o_row;
    int64_t cap;
    int64_t cnt[N_COUNTERS];
} tables_t;

static signed char CODE[256];

#define STREAM_AHEAD 4096
static inline uint16_t be16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }
static inline uint32_t be32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
static inline uint64_t be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
static inline uint64_t be48(const uint8_t *p) { return ((uint64_t)be16(p) << 32) | be32(p + 2); }

#define HDR(r) do { (r)->session = sess; (r)->seq = 0; (r)->stock_locate = be16(m + 1); \
                    (r)->tracking_number = be16(m + 3); (r)->timestamp = be48(m + 5); } while (0)
#define ROW(T, c) T *r = (T *)t->tab[c] + k; HDR(r)

/* Decode records in b[pos:end] while the tables have room; *n is the order count. Returns the next
 * position; *cut = 1 when the bytes left cannot hold the next record. */
static size_t decode_stream(const uint8_t *b, size_t pos, size_t end, uint16_t sess, tables_t *t, int64_t *n_io,
                            int *cut) {
    int64_t n = *n_io, cap = t->cap;
    *cut = 0;
    while (n < cap) {
        if (pos + 2 > end) { *cut = pos < end; break; }
        size_t ln = be16(b + pos);
        if (pos + 2 + ln > end) { *cut = 1; break; }
        t->cnt[CNT_MESSAGES]++;
        /* as the numba walk: the stream's bytes asked for 4 KiB on (the CPU's stream prefetcher stops at pages) */
        __builtin_prefetch(b + (pos + STREAM_AHEAD < end ? pos + STREAM_AHEAD : end - 1), 0, 3);
        const uint8_t *m = b + pos + 2;
        pos += 2 + ln;
        if (ln == 0) { t->cnt[CNT_BAD_LENGTH]++; continue; }
        int c = CODE[m[0]];
        if (c < 0) { t->cnt[CNT_UNKNOWN_TYPES]++; continue; }
        if ((int)ln != LEN[c]) { t->cnt[CNT_BAD_LENGTH]++; continue; }
        int64_t k = t->rows[c]++;
        t->o_type[n] = (uint8_t)c;
        t->o_row[n] = (uint32_t)k;
        t->cnt[CNT_DECODED]++;
        n++;
        switch (c) {
        case T_A: { ROW(m_A, T_A); r->order_reference_number = be64(m + 11); r->buy_sell_indicator = m[19];
            r->shares = be32(m + 20); r->stock = be64(m + 24); r->price = be32(m + 32); break; }
        case T_D: { ROW(m_D, T_D); r->order_reference_number = be64(m + 11); break; }
        case T_U: { ROW(m_U, T_U); r->original_order_reference_number = be64(m + 11);
            r->new_order_reference_number = be64(m + 19); r->shares = be32(m + 27); r->price = be32(m + 31); break; }
        case T_E: { ROW(m_E, T_E); r->order_reference_number = be64(m + 11); r->executed_shares = be32(m + 19);
            r->match_number = be64(m + 23); break; }
        case T_X: { ROW(m_X, T_X); r->order_reference_number = be64(m + 11); r->canceled_shares = be32(m + 19);
            break; }
        case T_F: { ROW(m_F, T_F); r->order_reference_number = be64(m + 11); r->buy_sell_indicator = m[19];
            r->shares = be32(m + 20); r->stock = be64(m + 24); r->price = be32(m + 32);
            r->attribution = be32(m + 36); break; }
        case T_C: { ROW(m_C, T_C); r->order_reference_number = be64(m + 11); r->executed_shares = be32(m + 19);
            r->match_number = be64(m + 23); r->printable = m[31]; r->execution_price = be32(m + 32); break; }
        case T_P: { ROW(m_P, T_P); r->order_reference_number = be64(m + 11); r->buy_sell_indicator = m[19];
            r->shares = be32(m + 20); r->stock = be64(m + 24); r->price = be32(m + 32);
            r->match_number = be64(m + 36); break; }
        case T_Q: { ROW(m_Q, T_Q); r->shares = be64(m + 11); r->stock = be64(m + 19); r->cross_price = be32(m + 27);
            r->match_number = be64(m + 31); r->cross_type = m[39]; break; }
        case T_B: { ROW(m_B, T_B); r->match_number = be64(m + 11); break; }
        case T_I: { ROW(m_I, T_I); r->paired_shares = be64(m + 11); r->imbalance_shares = be64(m + 19);
            r->imbalance_direction = m[27]; r->stock = be64(m + 28); r->far_price = be32(m + 36);
            r->near_price = be32(m + 40); r->current_reference_price = be32(m + 44); r->cross_type = m[48];
            r->price_variation_indicator = m[49]; break; }
        case T_S: { ROW(m_S, T_S); r->event_code = m[11]; break; }
        case T_R: { ROW(m_R, T_R); r->stock = be64(m + 11); r->market_category = m[19];
            r->financial_status_indicator = m[20]; r->round_lot_size = be32(m + 21); r->round_lots_only = m[25];
            r->issue_classification = m[26]; r->issue_sub_type = be16(m + 27); r->authenticity = m[29];
            r->short_sale_threshold_indicator = m[30]; r->ipo_flag = m[31]; r->luld_reference_price_tier = m[32];
            r->etp_flag = m[33]; r->etp_leverage_factor = be32(m + 34); r->inverse_indicator = m[38]; break; }
        case T_H: { ROW(m_H, T_H); r->stock = be64(m + 11); r->trading_state = m[19]; r->reserved = m[20];
            r->reason = be32(m + 21); break; }
        case T_Y: { ROW(m_Y, T_Y); r->stock = be64(m + 11); r->reg_sho_action = m[19]; break; }
        case T_L: { ROW(m_L, T_L); r->mpid = be32(m + 11); r->stock = be64(m + 15); r->primary_market_maker = m[23];
            r->market_maker_mode = m[24]; r->market_participant_state = m[25]; break; }
        case T_V: { ROW(m_V, T_V); r->level_1 = be64(m + 11); r->level_2 = be64(m + 19); r->level_3 = be64(m + 27);
            break; }
        case T_W: { ROW(m_W, T_W); r->breached_level = m[11]; break; }
        case T_K: { ROW(m_K, T_K); r->stock = be64(m + 11); r->ipo_quotation_release_time = be32(m + 19);
            r->ipo_quotation_release_qualifier = m[23]; r->ipo_price = be32(m + 24); break; }
        case T_J: { ROW(m_J, T_J); r->stock = be64(m + 11); r->auction_collar_reference_price = be32(m + 19);
            r->upper_auction_collar_price = be32(m + 23); r->lower_auction_collar_price = be32(m + 27);
            r->auction_collar_extension = be32(m + 31); break; }
        case T_h: { ROW(m_h, T_h); r->stock = be64(m + 11); r->market_code = m[19];
            r->operational_halt_action = m[20]; break; }
        case T_N: { ROW(m_N, T_N); r->stock = be64(m + 11); r->interest_flag = m[19]; break; }
        default: { ROW(m_O, T_O); r->stock = be64(m + 11); r->open_eligibility_status = m[19];
            r->minimum_allowable_price = be32(m + 20); r->maximum_allowable_price = be32(m + 24);
            r->near_execution_price = be32(m + 28); r->near_execution_time = be64(m + 32);
            r->lower_price_range_collar = be32(m + 40); r->upper_price_range_collar = be32(m + 44); break; }
        }
    }
    *n_io = n;
    return pos;
}

/* ------------------------------------------------------------------------------ checksum */
/* Field-wise, so padding never counts: sum over fields i of (i + 1) * (sum of the field's values), mod
 * 2^64; bench_decode.py computes the same over the numpy tables. */
static uint64_t checksum(const tables_t *t, uint64_t *per_type, int64_t n) {
    uint64_t total = 0;
    for (int c = 0; c < N_TYPES; c++) {
        uint64_t h = 0;
        const uint8_t *base = t->tab[c];
        for (int f = 0; FIELDS[c][f].name; f++) {
            uint64_t s = 0;
            size_t off = FIELDS[c][f].offset, sz = FIELDS[c][f].size;
            for (int64_t i = 0; i < t->rows[c]; i++) {
                const uint8_t *p = base + i * SIZES[c] + off;
                uint64_t v = sz == 1 ? *p : sz == 2 ? *(const uint16_t *)p : sz == 4 ? *(const uint32_t *)p
                                                                                   : *(const uint64_t *)p;
                s += v;
            }
            h += (uint64_t)(f + 1) * s;
        }
        per_type[c] += h;
        total += h;
    }
    for (int64_t i = 0; i < n; i++) total += (uint64_t)t->o_type[i] * 1000003u + t->o_row[i];
    return total;
}

/* ------------------------------------------------------------------------------ driver */
static void layout(void) {
    printf("{");
    for (int c = 0; c < N_TYPES; c++) {
        printf("%s\"%c\": {\"size\": %zu, \"fields\": {", c ? ", " : "", TYPES[c], SIZES[c]);
        for (int f = 0; FIELDS[c][f].name; f++)
            printf("%s\"%s\": [%zu, %zu]", f ? ", " : "", FIELDS[c][f].name, FIELDS[c][f].offset, FIELDS[c][f].size);
        printf("}}");
    }
    printf("}\n");
}


/* One pass over the whole file, clearing the tables whenever they are full. */
static void pass(const uint8_t *b, size_t size, tables_t *t, uint64_t *sum, uint64_t *per_type, int64_t *counts) {
    size_t pos = 0;
    memset(t->cnt, 0, sizeof t->cnt);
    while (pos < size) {
        int64_t n = 0;
        int cut;
        memset(t->rows, 0, sizeof t->rows);
        pos = decode_stream(b, pos, size, 0, t, &n, &cut);
        if (sum) {
            *sum += checksum(t, per_type, n);
            for (int c = 0; c < N_TYPES; c++) counts[c] += t->rows[c];
        }
        if (cut) break;
    }
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int repeat = 5, verify = 0;
    int64_t cap = 1 << 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layout")) { layout(); return 0; }
        else if (!strcmp(argv[i], "--verify")) verify = 1;
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--capacity") && i + 1 < argc) cap = atoll(argv[++i]);
        else path = argv[i];
    }
    if (!path || repeat < 1 || cap < 1) {
        fprintf(stderr, "usage: itch_decode FILE [--repeat R] [--capacity N] [--verify] | --layout\n");
        return 2;
    }
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) { perror(path); return 2; }
    size_t size = (size_t)st.st_size;
    const uint8_t *b = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (b == MAP_FAILED) { perror("mmap"); return 2; }
    memset(CODE, -1, sizeof CODE);
    for (int c = 0; c < N_TYPES; c++) CODE[(uint8_t)TYPES[c]] = (signed char)c;
    tables_t t = {.cap = cap};
    for (int c = 0; c < N_TYPES; c++) t.tab[c] = calloc((size_t)cap, SIZES[c]);
    t.o_type = calloc((size_t)cap, 1);
    t.o_row = calloc((size_t)cap, 4);

    if (verify) {
        uint64_t sum = 0, per_type[N_TYPES] = {0};
        int64_t counts[N_TYPES] = {0};
        pass(b, size, &t, &sum, per_type, counts);
        printf("{\"messages\": %lld, \"decoded\": %lld, \"unknown_types\": %lld, \"bad_length_messages\": %lld, "
               "\"checksum\": %llu, \"counts\": {", (long long)t.cnt[CNT_MESSAGES], (long long)t.cnt[CNT_DECODED],
               (long long)t.cnt[CNT_UNKNOWN_TYPES], (long long)t.cnt[CNT_BAD_LENGTH], (unsigned long long)sum);
        for (int c = 0; c < N_TYPES; c++) printf("%s\"%c\": %lld", c ? ", " : "", TYPES[c], (long long)counts[c]);
        printf("}, \"type_checksums\": {");
        for (int c = 0; c < N_TYPES; c++)
            printf("%s\"%c\": %llu", c ? ", " : "", TYPES[c], (unsigned long long)per_type[c]);
        printf("}}\n");
        return 0;
    }
    pass(b, size, &t, NULL, NULL, NULL); /* warm: page-fault the tables in */
    int64_t *runs = calloc((size_t)repeat, sizeof *runs);
    for (int r = 0; r < repeat; r++) {
        int64_t t0 = now_ns();
        pass(b, size, &t, NULL, NULL, NULL);
        runs[r] = now_ns() - t0;
    }
    int64_t msgs = t.cnt[CNT_MESSAGES];
    printf("{\"messages\": %lld, \"bytes\": %zu, \"runs_ns\": [", (long long)msgs, size);
    for (int r = 0; r < repeat; r++) printf("%s%lld", r ? ", " : "", (long long)runs[r]);
    qsort(runs, (size_t)repeat, sizeof *runs, cmp_i64);
    int64_t med = repeat % 2 ? runs[repeat / 2] : (runs[repeat / 2 - 1] + runs[repeat / 2]) / 2;
    printf("], \"median_ns\": %lld, \"ns_per_msg\": %.3f, \"msgs_per_s\": %.0f}\n", (long long)med,
           (double)med / (double)msgs, (double)msgs * 1e9 / (double)med);
    return 0;
}
