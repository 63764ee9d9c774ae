/* Helpers shared by the C yardsticks of bench/: a monotonic clock and the comparison for medians. */
#ifndef XDPFEED_BENCH_COMMON_H
#define XDPFEED_BENCH_COMMON_H
#include <stdint.h>
#include <time.h>

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif
