/* What the XDP filter (xdp_filter.bpf.c) and its loader (afxdp.c) must agree on: map names, sizes,
 * key/value layouts and counter slots. Included by both, so a change here changes both at once. */
#ifndef XDPFEED_XDP_FILTER_H
#define XDPFEED_XDP_FILTER_H

#include <linux/types.h>

#define XDPFEED_PROG_NAME "xdpfeed_filter"
#define XDPFEED_MAP_XSKS "xsks"         /* XSKMAP: rx queue index -> AF_XDP socket */
#define XDPFEED_MAP_FEEDS "feeds"       /* HASH: (IPv4 dst, UDP dst port) -> queues that want it */
#define XDPFEED_MAP_COUNTERS "counters" /* PERCPU_ARRAY of __u64, slots below */

#define XDPFEED_MAX_QUEUES 1024 /* rx queues one interface can bind; a bitmap of them per feed */
#define XDPFEED_MAX_FEEDS 1024  /* (group, port) pairs per interface */

/* Both fields in network byte order, as they appear on the wire. */
struct xdpfeed_feed_key {
	__u32 daddr;
	__u16 dport;
	__u16 pad; /* always 0: hash keys compare every byte */
};

/* Bit q set: frames of this feed that arrive on rx queue q go to the socket bound to queue q. */
struct xdpfeed_feed_queues {
	__u64 bits[XDPFEED_MAX_QUEUES / 64];
};

#define XDPFEED_CNT_REDIRECTED 0  /* a feed's frame handed to the queue's socket */
#define XDPFEED_CNT_PASSED 1      /* not a feed (ARP, ICMP, SSH, other UDP): on to the kernel */
#define XDPFEED_CNT_NO_SOCKET 2   /* a feed's frame, but no socket in xsks for this queue: passed */
#define XDPFEED_CNT_OTHER_QUEUE 3 /* a feed's frame on a queue not bound for it (check RSS/ntuple steering) */
#define XDPFEED_CNT_RX_TIMESTAMP 4    /* xdp_filter_ts: the driver's RX timestamp written into the frame */
#define XDPFEED_CNT_NO_RX_TIMESTAMP 5 /* xdp_filter_ts: the driver gave none (or 0): the frame left as it was */
#define XDPFEED_CNT_MAX 6

/* xdp_filter_ts.bpf.o (built with -DXDPFEED_RX_TIMESTAMP, loaded device-bound) writes this over the frame's
 * two MAC addresses (12 bytes the handler does not read): the NIC's receive time from
 * bpf_xdp_metadata_rx_timestamp. (A device-bound program may not call bpf_xdp_adjust_meta on kernel 6.18, so
 * the metadata area in front of the frame is out of reach.) */
#define XDPFEED_STAMP_MAGIC 0x53544658 /* "XFTS" read as a little-endian __u32 */
struct xdpfeed_stamp {
	__u32 magic;
	__u32 ts_lo; /* ns, the NIC's clock */
	__u32 ts_hi;
};

#endif
