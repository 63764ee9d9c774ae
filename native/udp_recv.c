/* recvmmsg into a numpy slab (one system call per batch, receive timestamps from SO_TIMESTAMPING: the NIC's
 * when it stamps packets, the kernel's otherwise; or SO_TIMESTAMPNS) and sendmmsg out of one (the simulated
 * venue's publisher). */
#define _GNU_SOURCE
#include "udp_recv.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#ifndef SCM_TIMESTAMPING
#define SCM_TIMESTAMPING 37
#endif

static int64_t ns_of(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

int xdpfeed_udp_recv_batch(int fd, uint8_t *slab, uint32_t slot_size, uint32_t nslots,
                           int64_t *offset, uint32_t *length, int64_t *ts_ns, uint64_t *truncated,
                           uint32_t *kernel_drops, uint64_t *hw_stamps, uint64_t *unstamped)
{
    struct mmsghdr msgs[XDPFEED_UDP_MAX_BATCH];
    struct iovec iov[XDPFEED_UDP_MAX_BATCH];
    union {
        char buf[CMSG_SPACE(3 * sizeof(struct timespec)) + CMSG_SPACE(sizeof(struct timespec))
                 + CMSG_SPACE(sizeof(uint32_t))];
        struct cmsghdr align;
    } ctl[XDPFEED_UDP_MAX_BATCH];
    uint32_t n = nslots < XDPFEED_UDP_MAX_BATCH ? nslots : XDPFEED_UDP_MAX_BATCH;

    memset(msgs, 0, n * sizeof(msgs[0]));
    for (uint32_t i = 0; i < n; i++) {
        iov[i].iov_base = slab + (uint64_t)i * slot_size;
        iov[i].iov_len = slot_size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = ctl[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
    }
    int got = recvmmsg(fd, msgs, n, MSG_DONTWAIT, NULL);
    if (got < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < got; i++) {
        offset[i] = (int64_t)i * slot_size;
        length[i] = msgs[i].msg_len < slot_size ? msgs[i].msg_len : slot_size;
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
            (*truncated)++;
        ts_ns[i] = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
                /* struct scm_timestamping: ts[0] software, ts[2] the NIC's raw hardware time */
                struct timespec ts[3];
                memcpy(ts, CMSG_DATA(c), sizeof(ts));
                if (ts[2].tv_sec || ts[2].tv_nsec) {
                    ts_ns[i] = ns_of(&ts[2]);
                    (*hw_stamps)++;
                } else if (ts[0].tv_sec || ts[0].tv_nsec) {
                    ts_ns[i] = ns_of(&ts[0]);
                }
            } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof(ts));
                if (!ts_ns[i])
                    ts_ns[i] = ns_of(&ts);
            } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                /* datagrams the kernel dropped on this socket since it was created (cumulative) */
                uint32_t d;
                memcpy(&d, CMSG_DATA(c), sizeof(d));
                if (d > *kernel_drops)
                    *kernel_drops = d;
            }
        }
        if (!ts_ns[i])
            (*unstamped)++;
    }
    return got;
}

int xdpfeed_udp_send_batch(int fd, const uint8_t *slab, const int64_t *offset, const uint32_t *length,
                           uint32_t n)
{
    struct mmsghdr msgs[XDPFEED_UDP_MAX_BATCH];
    struct iovec iov[XDPFEED_UDP_MAX_BATCH];
    uint32_t done = 0;

    while (done < n) {
        uint32_t k = n - done < XDPFEED_UDP_MAX_BATCH ? n - done : XDPFEED_UDP_MAX_BATCH;
        memset(msgs, 0, k * sizeof(msgs[0]));
        for (uint32_t i = 0; i < k; i++) {
            iov[i].iov_base = (void *)(slab + offset[done + i]);
            iov[i].iov_len = length[done + i];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int sent = sendmmsg(fd, msgs, k, MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            return done ? (int)done : -errno;
        }
        done += (uint32_t)sent;
        if ((uint32_t)sent < k)
            break;
    }
    return (int)done;
}
