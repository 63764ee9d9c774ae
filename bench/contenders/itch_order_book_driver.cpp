// Benchmark driver for charles-cooper/itch-order-book (C++14; aggregate price levels only, no
// per-order queues; global static books, a direct-indexed order array and a pooled level store).
//
//   itch_order_book_driver FILE.itch
//
// Built as one translation unit with the library's itch.h (message decoding: itch_message<T>::parse)
// and order_book.h (order_book::add_order / execute_order / cancel_order / delete_order /
// replace_order), used as the library's own main.cpp uses them; the library's stdin reader
// (bufferedreader) is not used. The whole file ([u16 big-endian length][message]...) is mapped
// read-only and populated first (mapped_file.h, as every driver and bench/book.c do). Untimed, the order array is then sized to the largest order reference the file adds
// (upstream main.cpp instead reserves a fixed 368M entries up front). Timed with
// std::chrono::steady_clock: walking every record and applying A F E C X D U to the books. Other
// message types are skipped by length; a zero-length record is skipped and counted.
//
// The library trusts the feed: references must name live orders and executions must not exceed the
// order. Its only protections here are the driver's bounds checks, which skip (and count) what would
// index outside its arrays: an order reference beyond the order array or >= 2^32, a stock locate
// >= order_book::MAX_BOOKS (16384). A reference to a dead or never-added order inside the array, or
// an over-execution, is applied as the library does (stale order data; unsigned wrap), so its book
// then differs from a checking book's.
//
// Prints one JSON line:
//   messages        records walked (applied + other + malformed + zero-length)
//   seconds         parse + apply time (file loading and the order-array sizing excluded)
//   applied, other, malformed, zero_length, skipped, trailing_bytes
//   live_orders     null (the library does not track it)
//   levels, level_sum
//       the book checksum: over every (locate, side, price level) with total shares > 0,
//       levels = their count and level_sum = sum of (locate*1000003 + side*7919 + price*31 + shares)
//       mod 2^64, side 0 = bid, 1 = ask, price the raw ITCH Price(4) integer.
#include <assert.h>
#include <endian.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "mapped_file.h"

#include "itch.h"
#include "order_book.h"

namespace {

using u64 = unsigned long long;

constexpr uint64_t kMaxOid = 0xffffffffull;  // order_id_t is 32-bit

uint16_t be16(const char* p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return be16toh(v);
}

uint64_t be64(const char* p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

sprice_t signed_price(price_t price, BUY_SELL side) {
    const int32_t p = static_cast<int32_t>(MKPRIMITIVE(price));
    return sprice_t(side == BUY_SELL::SELL ? -p : p);
}

// Largest order reference that an A, F or U message adds (for sizing the order array).
uint64_t max_added_ref(const MappedFile<char>& data) {
    uint64_t mx = 0;
    size_t pos = 0;
    const size_t n = data.size();
    while (n - pos >= 2) {
        const size_t len = be16(&data[pos]);
        if (len > n - pos - 2) break;
        const char* m = &data[pos + 2];
        if (len == netlen<itch_t::ADD_ORDER> && m[0] == 'A') mx = std::max(mx, be64(m + 11));
        if (len == netlen<itch_t::ADD_ORDER_MPID> && m[0] == 'F') mx = std::max(mx, be64(m + 11));
        if (len == netlen<itch_t::REPLACE_ORDER> && m[0] == 'U') mx = std::max(mx, be64(m + 19));
        pos += 2 + len;
    }
    return mx;
}

struct Counts {
    u64 applied = 0, other = 0, malformed = 0, zero_length = 0, skipped = 0;
};

bool known(uint64_t oid) { return oid < order_book::oid_map.m_data.size(); }

template <itch_t T>
bool framed(size_t len, Counts& c) {
    if (len == netlen<T>) return true;
    ++c.malformed;
    return false;
}

void apply(const char* m, size_t len, Counts& c) {
    switch (static_cast<itch_t>(m[0])) {
        case itch_t::ADD_ORDER:
        case itch_t::ADD_ORDER_MPID: {
            const bool mpid = m[0] == 'F';
            if (mpid ? !framed<itch_t::ADD_ORDER_MPID>(len, c) : !framed<itch_t::ADD_ORDER>(len, c))
                return;
            const add_order_t a = add_order_t::parse(m);  // F shares A's layout up to the price
            if (MKPRIMITIVE(a.oid) > kMaxOid || a.stock_locate >= order_book::MAX_BOOKS) {
                ++c.skipped;
                return;
            }
            order_book::add_order(order_id_t(MKPRIMITIVE(a.oid)), book_id_t(a.stock_locate),
                                  signed_price(a.price, a.buy), a.qty);
            break;
        }
        case itch_t::EXECUTE_ORDER:
        case itch_t::EXECUTE_ORDER_WITH_PRICE: {
            if (m[0] == 'C' ? !framed<itch_t::EXECUTE_ORDER_WITH_PRICE>(len, c)
                            : !framed<itch_t::EXECUTE_ORDER>(len, c))
                return;
            const execute_order_t e = execute_order_t::parse(m);  // C shares E's layout
            if (!known(MKPRIMITIVE(e.oid))) {
                ++c.skipped;
                return;
            }
            order_book::execute_order(order_id_t(MKPRIMITIVE(e.oid)), e.qty);
            break;
        }
        case itch_t::REDUCE_ORDER: {
            if (!framed<itch_t::REDUCE_ORDER>(len, c)) return;
            const order_reduce_t x = order_reduce_t::parse(m);
            if (!known(MKPRIMITIVE(x.oid))) {
                ++c.skipped;
                return;
            }
            order_book::cancel_order(order_id_t(MKPRIMITIVE(x.oid)), x.qty);
            break;
        }
        case itch_t::DELETE_ORDER: {
            if (!framed<itch_t::DELETE_ORDER>(len, c)) return;
            const order_delete_t d = order_delete_t::parse(m);
            if (!known(MKPRIMITIVE(d.oid))) {
                ++c.skipped;
                return;
            }
            order_book::delete_order(order_id_t(MKPRIMITIVE(d.oid)));
            break;
        }
        case itch_t::REPLACE_ORDER: {
            if (!framed<itch_t::REPLACE_ORDER>(len, c)) return;
            const order_replace_t u = order_replace_t::parse(m);
            if (!known(MKPRIMITIVE(u.oid)) || MKPRIMITIVE(u.new_order_id) > kMaxOid) {
                ++c.skipped;
                return;
            }
            // The library re-signs the price from the original order's side.
            order_book::replace_order(order_id_t(MKPRIMITIVE(u.oid)),
                                      order_id_t(MKPRIMITIVE(u.new_order_id)), u.new_qty,
                                      signed_price(u.new_price, BUY_SELL::BUY));
            break;
        }
        default:
            ++c.other;
            return;
    }
    ++c.applied;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s FILE.itch\n", argv[0]);
        return 2;
    }
    const MappedFile<char> data(argv[1]);
    if (data.empty()) {
        std::fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    const uint64_t mx = max_added_ref(data);
    order_book::oid_map.reserve(order_id_t(mx > kMaxOid ? kMaxOid : mx));

    Counts c;
    size_t pos = 0;
    const size_t n = data.size();
    const char* p = data.data();
    const auto t0 = std::chrono::steady_clock::now();
    while (n - pos >= 2) {
        const size_t len = be16(p + pos);
        if (len > n - pos - 2) break;
        if (len == 0)
            ++c.zero_length;
        else
            apply(p + pos + 2, len, c);
        pos += 2 + len;
    }
    const auto t1 = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(t1 - t0).count();

    u64 levels = 0, level_sum = 0;
    for (size_t loc = 0; loc < order_book::MAX_BOOKS; ++loc) {
        const order_book& book = order_book::s_books[loc];
        for (const int side : {0, 1}) {
            for (const price_level& pl : side == 0 ? book.m_bids : book.m_offers) {
                const u64 shares = MKPRIMITIVE(order_book::s_levels[pl.m_ptr].m_qty);
                if (shares == 0) continue;
                const int64_t sp = static_cast<int32_t>(pl.m_price);
                const u64 price = static_cast<u64>(sp < 0 ? -sp : sp);
                level_sum += static_cast<u64>(loc) * 1000003ull + static_cast<u64>(side) * 7919ull +
                             price * 31ull + shares;
                ++levels;
            }
        }
    }
    std::printf(
        "{\"contender\": \"itch-order-book\", \"messages\": %llu, \"seconds\": %.9f, "
        "\"applied\": %llu, \"other\": %llu, \"malformed\": %llu, \"zero_length\": %llu, "
        "\"skipped\": %llu, \"trailing_bytes\": %llu, \"live_orders\": null, \"levels\": %llu, "
        "\"level_sum\": %llu}\n",
        c.applied + c.other + c.malformed + c.zero_length + c.skipped, seconds, c.applied,
        c.other, c.malformed, c.zero_length, c.skipped, static_cast<u64>(n - pos), levels,
        level_sum);
    return 0;
}
