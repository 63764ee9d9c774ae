/* Batch UDP datagrams between a numpy slab and a socket: receive into fixed-size slots (recvmmsg +
 * SO_TIMESTAMPING or SO_TIMESTAMPNS) and send datagrams laid out anywhere in a slab (sendmmsg). */
#include <stdint.h>

#define XDPFEED_UDP_MAX_BATCH 256

/* Receive up to nslots datagrams (at most XDPFEED_UDP_MAX_BATCH) without blocking. Datagram i lands
 * at slab + offset[i] with length[i] bytes and receive time ts_ns[i]: the NIC's raw hardware time when the
 * socket has SO_TIMESTAMPING and the NIC stamped it (counted in *hw_stamps), else the kernel's; 0 when it
 * carries neither (counted in *unstamped: the kernel turns receive time stamps on a moment after they are asked
 * for). A datagram longer than slot_size is cut to slot_size and counted in *truncated. With SO_RXQ_OVFL set on the
 * socket, *kernel_drops is raised to the kernel's count of datagrams dropped on it (buffer full).
 * Returns the number received (0 when none is waiting) or -errno. */
int xdpfeed_udp_recv_batch(int fd, uint8_t *slab, uint32_t slot_size, uint32_t nslots,
                           int64_t *offset, uint32_t *length, int64_t *ts_ns, uint64_t *truncated,
                           uint32_t *kernel_drops, uint64_t *hw_stamps, uint64_t *unstamped);

/* Send n datagrams on a connected socket without blocking: datagram i is length[i] bytes at
 * slab + offset[i]. Calls sendmmsg in chunks of up to XDPFEED_UDP_MAX_BATCH. Returns the number sent,
 * which is less than n when the kernel stopped early (send the rest again), or -errno when the first
 * datagram could not be sent (-EAGAIN / -ENOBUFS: socket buffer full, retry later). */
int xdpfeed_udp_send_batch(int fd, const uint8_t *slab, const int64_t *offset, const uint32_t *length,
                           uint32_t n);
