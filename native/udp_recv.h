/* Batch receive of UDP datagrams into one slab of fixed-size slots (recvmmsg + SO_TIMESTAMPNS). */
#include <stdint.h>

#define XDPFEED_UDP_MAX_BATCH 256

/* Receive up to nslots datagrams (at most XDPFEED_UDP_MAX_BATCH) without blocking. Datagram i lands
 * at slab + offset[i] with length[i] bytes and kernel receive time ts_ns[i] (0 if none). A datagram
 * longer than slot_size is cut to slot_size and counted in *truncated. Returns the number received
 * (0 when none is waiting) or -errno. */
int xdpfeed_udp_recv_batch(int fd, uint8_t *slab, uint32_t slot_size, uint32_t nslots,
                           int64_t *offset, uint32_t *length, int64_t *ts_ns, uint64_t *truncated);
