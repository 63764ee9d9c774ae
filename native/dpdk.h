/* DPDK receive for xdpfeed: a thin shim over the EAL and ethdev for what cffi cannot call directly
 * (rte_eth_rx_burst, rte_pktmbuf_free_bulk and the mbuf accessors are static inline).
 *
 * One EAL per process (dpdk_eal__init), any number of ports. A dpdk_port is one ethdev port (a PCI
 * device the EAL probed, or a vdev hot-plugged from its devargs) with its own mbuf pool, one RX
 * queue (and the one TX queue some PMDs insist on), started. dpdk_port__recv bursts into a
 * preallocated mbuf array and writes, per frame, the offset of its first byte from the start of the
 * pool's memory, its length and its time: the packet bytes stay where the PMD put them. The mbufs
 * are ours until dpdk_port__release frees them. Every function returns 0, a count, or -errno;
 * DPDK's log is kept in a buffer (dpdk__log) and echoed to stderr only when asked.
 *
 * This file is also the cffi cdef (build_dpdk.py strips the #include lines): keep it plain. */
#include <stddef.h>
#include <stdint.h>

/* Which step of dpdk_port__open failed (dpdk_port_info.step). */
#define DPDK_STEP_NONE 0
#define DPDK_STEP_PROBE 1     /* rte_dev_probe(devargs): unknown driver, bad devargs, no such interface */
#define DPDK_STEP_PORT 2      /* no ethdev port of that name (a PCI device the EAL did not probe) */
#define DPDK_STEP_POOL 3      /* rte_pktmbuf_pool_create: not enough EAL memory (-m, hugepages) */
#define DPDK_STEP_CONFIGURE 4 /* rte_eth_dev_configure */
#define DPDK_STEP_RXQ 5       /* rte_eth_rx_queue_setup */
#define DPDK_STEP_TXQ 6       /* rte_eth_tx_queue_setup */
#define DPDK_STEP_START 7     /* rte_eth_dev_start */

/* Where frame times come from (dpdk_port_opts.timestamp). */
#define DPDK_TS_HOST 0    /* CLOCK_REALTIME, one reading per dpdk_port__recv */
#define DPDK_TS_PMD_NS 1  /* the mbuf's rx timestamp (RTE_MBUF_DYNFIELD_TIMESTAMP) in ns; host time without it */
#define DPDK_TS_PMD_US 2  /* the same in microseconds (net_pcap on a microsecond capture) */

struct dpdk_port;

/* Options structs start with their own size so that they can grow. */
struct dpdk_port_opts {
	size_t sz;            /* sizeof(struct dpdk_port_opts) */
	const char *devargs;  /* "net_pcap0,rx_pcap=FILE", "0000:03:00.0", ... */
	const char *name;     /* the ethdev port name: the devargs up to the first ',' */
	int probe;            /* 1: rte_dev_probe(devargs) first; 0: the EAL probed it already */
	uint16_t rx_desc;     /* RX ring size asked for (the driver may adjust it) */
	uint32_t mbufs;       /* mbufs in the pool */
	uint16_t mbuf_size;   /* data room of each mbuf, RTE_PKTMBUF_HEADROOM included */
	uint32_t burst;       /* most frames one dpdk_port__recv hands out */
	int timestamp;        /* DPDK_TS_* */
	int promisc;          /* 1: promiscuous; multicast is always on (allmulticast) */
};

struct dpdk_port_info {
	int step;             /* DPDK_STEP_* that failed, when dpdk_port__open returned an error */
	uint16_t port_id;
	uint16_t rx_desc;     /* RX ring size in use */
	char driver[64];      /* e.g. net_pcap, net_af_xdp, mlx5_pci */
	void *base;           /* start of the pool's memory: every frame offset is from here */
	uint64_t span;        /* [base, base + span) holds every mbuf of the pool */
	int rx_timestamp;     /* 1 when the PMD stamps frames (the rx timestamp dynflag exists) */
};

struct dpdk_stats {
	uint64_t packets;     /* frames handed out by dpdk_port__recv */
	uint64_t bytes;       /* their lengths added up */
	uint64_t ipackets;    /* rte_eth_stats: what the port received */
	uint64_t ibytes;
	uint64_t imissed;     /* rte_eth_stats: dropped by the device, its RX queue full */
	uint64_t ierrors;     /* rte_eth_stats: erroneous frames */
	uint64_t rx_nombuf;   /* rte_eth_stats: no mbuf to receive into */
	uint64_t multiseg;    /* frames longer than one mbuf: freed, counted here (raise mbuf_size) */
	uint64_t external;    /* frames outside the pool's memory that no free mbuf could take */
};

/* rte_eal_init; 0, or -errno (the reason is in dpdk__log). Once per process. */
int dpdk_eal__init(int argc, char **argv);
/* rte_eal_cleanup; every port must be closed first. */
int dpdk_eal__cleanup(void);
/* DPDK's log goes to our buffer from now on (before dpdk_eal__init), echoed to stderr when echo. */
int dpdk_log__open(int echo);
/* What DPDK logged since dpdk_log__reset (its last 4 KiB); "" when nothing. */
const char *dpdk__log(void);
void dpdk_log__reset(void);

/* Probe (opts->probe), find the port, create its pool, configure, set up the queues, start. *out
 * is NULL on error, with info->step saying where. */
int dpdk_port__open(struct dpdk_port **out, const struct dpdk_port_opts *opts, struct dpdk_port_info *info);
/* Up to max (<= opts.burst) frames: offset[i] from info.base, len[i] bytes, ts_ns[i]. Returns how
 * many (0: none waiting). Never blocks (beyond what the PMD itself does). Call dpdk_port__release
 * before the next dpdk_port__recv. */
int dpdk_port__recv(struct dpdk_port *p, uint32_t max, int64_t *offset, uint32_t *len, int64_t *ts_ns);
/* Free the mbufs of the last dpdk_port__recv back to the pool. */
void dpdk_port__release(struct dpdk_port *p);
int dpdk_port__stats(struct dpdk_port *p, struct dpdk_stats *out);
/* Stop, close, detach a hot-plugged device, free the pool. NULL is fine. */
void dpdk_port__close(struct dpdk_port *p);
