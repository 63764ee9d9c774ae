// Benchmark driver for groovg/itch-book (header-only C++23; prices via groovg/fixed-decimal).
//
//   itch_book_driver FILE.itch
//
// Maps the whole NASDAQ binary ITCH 5.0 file ([u16 big-endian length][message]...) read-only, populated
// before the clock (mapped_file.h, as every driver and bench/book.c do), then, timed with std::chrono::steady_clock, applies it to the library's default full book
// (itch::BookManager<>: pooled order store, FIFO queues, aggregate levels, no BBO callback) through
// itch::parse. itch::parse stops at a zero-length record (its end-of-session marker); the driver
// resumes after it, so every record of the file is walked (xdpfeed stops there, as NASDAQ's BinaryFILE
// format says; the benchmark's days have no zero-length record). Prints one JSON line:
//
//   messages        records walked (applied + unknown + malformed + zero-length markers)
//   seconds         parse + apply time (file loading excluded)
//   applied, unknown, malformed, end_of_session_markers, trailing_bytes
//   live_orders     orders resting at the end
//   stats           the library's counters (adds, executes, ..., missing_ref, dup_ref, rejected, clamped)
//   levels, level_sum
//       the book checksum: over every (locate, side, price level) with total shares > 0,
//       levels = their count and level_sum = sum of (locate*1000003 + side*7919 + price*31 + shares)
//       mod 2^64, side 0 = bid, 1 = ask, price the raw ITCH Price(4) integer.
#include <itch/book_manager.hpp>
#include <itch/parser.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

#include "mapped_file.h"

namespace {

using u64 = unsigned long long;

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s FILE.itch\n", argv[0]);
        return 2;
    }
    const MappedFile<std::byte> data(argv[1]);
    if (data.empty()) {
        std::fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    itch::BookManager<> books;
    auto* mgr = &books;

    u64 applied = 0, unknown = 0, malformed = 0, markers = 0;
    std::span<const std::byte> rest(data.data(), data.size());
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        const itch::ParseResult r = itch::parse(rest, *mgr);
        applied += r.messages;
        unknown += r.unknown;
        malformed += r.malformed;
        rest = rest.subspan(r.consumed);
        if (!r.end_of_session) break;
        ++markers;
    }
    const auto t1 = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(t1 - t0).count();

    u64 levels = 0, level_sum = 0;
    for (std::size_t loc = 0; loc < mgr->book_count(); ++loc) {
        const auto* book = mgr->book(static_cast<std::uint16_t>(loc));
        for (const int side : {0, 1}) {
            const bool buy = side == 0;
            for (const auto& e : book->side(buy)) {
                const itch::Level& lv = book->level(e.level);
                if (lv.shares == 0) continue;
                const u64 price = static_cast<u64>(buy ? lv.key : -lv.key);
                level_sum += static_cast<u64>(loc) * 1000003ull + static_cast<u64>(side) * 7919ull +
                             price * 31ull + static_cast<u64>(lv.shares);
                ++levels;
            }
        }
    }
    const itch::Stats& s = mgr->stats();
    std::printf(
        "{\"contender\": \"itch-book\", \"messages\": %llu, \"seconds\": %.9f, \"applied\": %llu, "
        "\"unknown\": %llu, \"malformed\": %llu, \"end_of_session_markers\": %llu, "
        "\"trailing_bytes\": %llu, \"live_orders\": %llu, \"books\": %llu, "
        "\"stats\": {\"adds\": %llu, \"executes\": %llu, \"cancels\": %llu, \"deletes\": %llu, "
        "\"replaces\": %llu, \"missing_ref\": %llu, \"dup_ref\": %llu, \"rejected\": %llu, "
        "\"clamped\": %llu}, \"levels\": %llu, \"level_sum\": %llu}\n",
        applied + unknown + malformed + markers, seconds, applied, unknown, malformed, markers,
        static_cast<u64>(rest.size()), static_cast<u64>(mgr->orders().live_orders()),
        static_cast<u64>(mgr->book_count()), static_cast<u64>(s.adds),
        static_cast<u64>(s.executes), static_cast<u64>(s.cancels), static_cast<u64>(s.deletes),
        static_cast<u64>(s.replaces), static_cast<u64>(s.missing_ref),
        static_cast<u64>(s.dup_ref), static_cast<u64>(s.rejected), static_cast<u64>(s.clamped),
        levels, level_sum);
    return 0;
}
