/* AF_XDP receive for xdpfeed, on libxdp (sockets, UMEM, rings) and libbpf (our XDP program).
 *
 * Two objects: an afxdp_prog is xdp_filter.bpf.o loaded and attached to one interface through a
 * bpf_link (so it is detached when the last fd to the link closes, i.e. when the process dies);
 * an afxdp_sock is one AF_XDP socket with its own UMEM on one (interface, rx queue), receiving in
 * copy or zero-copy mode. Every function returns 0, a count, or -errno; nothing prints (libbpf's
 * and libxdp's messages are kept, see afxdp__log). The program side is in afxdp.c, the sockets in
 * afxdp_xsk.c.
 *
 * This file is also the cffi cdef (build_afxdp.py strips the #include lines): keep it plain. */
#include <stddef.h>
#include <stdint.h>

/* Which step of an open failed (afxdp_prog_info.step, afxdp_sock_info.step): the caller turns
 * (step, errno) into advice, e.g. EPERM while loading needs CAP_BPF, while creating a socket
 * CAP_NET_RAW. */
#define AFXDP_STEP_NONE 0
#define AFXDP_STEP_OPEN 1   /* opening the BPF object file */
#define AFXDP_STEP_LOAD 2   /* creating the maps and loading the program into the kernel */
#define AFXDP_STEP_ATTACH 3 /* bpf_link_create(BPF_XDP) on the interface */
#define AFXDP_STEP_SOCKET 4 /* socket(AF_XDP) */
#define AFXDP_STEP_UMEM 5   /* registering the UMEM (pins it: RLIMIT_MEMLOCK or CAP_IPC_LOCK) */
#define AFXDP_STEP_BIND 6   /* rings + bind(ifindex, queue) */
#define AFXDP_STEP_MAP 7    /* xsks[queue] = socket */

/* Busy-poll socket options the kernel accepted (bits of afxdp_sock_info.busy_poll). */
#define AFXDP_BUSY_PREFER 1 /* SO_PREFER_BUSY_POLL */
#define AFXDP_BUSY_USECS 2  /* SO_BUSY_POLL */
#define AFXDP_BUSY_BUDGET 4 /* SO_BUSY_POLL_BUDGET */

struct afxdp_prog;
struct afxdp_sock;

/* Options structs start with their own size so that they can grow: a caller built against an
 * older, shorter struct gets zeros for the fields it does not know. */
struct afxdp_prog_opts {
	size_t sz;            /* sizeof(struct afxdp_prog_opts) */
	const char *obj_path; /* xdp_filter.bpf.o */
	int ifindex;
	uint32_t xdp_flags;   /* XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, or 0: native, else skb */
	int dev_bound;        /* load device-bound (BPF_F_XDP_DEV_BOUND_ONLY): xdp_filter_ts.bpf.o's kfunc needs it */
};

struct afxdp_prog_info {
	int step;           /* AFXDP_STEP_* that failed, when afxdp_prog__open returned an error */
	uint32_t xdp_flags; /* the mode attached: XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE */
	int native_err;     /* -errno of the native attach when xdp_flags 0 fell back to skb, else 0 */
};

struct afxdp_sock_opts {
	size_t sz;                 /* sizeof(struct afxdp_sock_opts) */
	int ifindex;
	uint32_t queue;            /* rx queue index */
	void *area;                /* UMEM memory, from afxdp_area__alloc; outlives the socket */
	uint64_t area_len;
	uint32_t frames;           /* UMEM frames; the area holds frames * frame_size bytes */
	uint32_t frame_size;       /* power of two in 2048 .. page size */
	uint16_t bind_flags;       /* XDP_ZEROCOPY, XDP_COPY, or 0: zero-copy, else copy */
	uint32_t busy_poll_us;     /* 0: no busy polling */
	uint32_t busy_poll_budget; /* packets per busy-poll round (SO_BUSY_POLL_BUDGET) */
};

struct afxdp_sock_info {
	int step;               /* AFXDP_STEP_* that failed, when afxdp_sock__open returned an error */
	int zerocopy;           /* 1 when bound zero-copy (the kernel's XDP_OPTIONS_ZEROCOPY) */
	int zerocopy_err;       /* -errno of the zero-copy bind when bind_flags 0 fell back to copy */
	uint32_t busy_poll;     /* AFXDP_BUSY_* bits the kernel accepted */
	int busy_poll_err;      /* -errno of the first busy-poll option it refused, else 0 */
};

struct afxdp_stats {
	uint64_t packets;                  /* descriptors received by afxdp_sock__recv */
	uint64_t bytes;                    /* their lengths added up */
	uint64_t rx_dropped;               /* XDP_STATISTICS: dropped for other reasons (e.g. too long) */
	uint64_t rx_invalid_descs;         /* XDP_STATISTICS: invalid descriptors */
	uint64_t rx_ring_full;             /* XDP_STATISTICS: RX ring full (the reader is too slow) */
	uint64_t rx_fill_ring_empty_descs; /* XDP_STATISTICS: no free frame in the FILL ring */
	uint64_t bad_descs;                /* descriptors outside their UMEM chunk: handed on with length 0 */
};

/* Load + attach; *out is NULL on error. info may be NULL. */
int afxdp_prog__open(struct afxdp_prog **out, const struct afxdp_prog_opts *opts, struct afxdp_prog_info *info);
/* feeds[(daddr, dport)] gains (add != 0) or loses rx queue `queue`; an entry left with no queue is
 * deleted. daddr and dport in network byte order. */
int afxdp_prog__set_feed(struct afxdp_prog *p, uint32_t daddr, uint16_t dport, uint32_t queue, int add);
/* xsks[queue] = the socket (s != NULL), or the entry removed (s == NULL; -ENOENT if none). */
int afxdp_prog__set_sock(struct afxdp_prog *p, uint32_t queue, const struct afxdp_sock *s);
/* The filter's XDPFEED_CNT_* counters, summed over CPUs, into out[0 .. n-1]. Returns how many. */
int afxdp_prog__counters(const struct afxdp_prog *p, uint64_t *out, uint32_t n);
/* Our filter as attached to ifindex by another loader (DPDK's af_xdp PMD loads xdp_filter_dpdk.bpf.o
 * itself): its feeds and counters maps, for afxdp_prog__set_feed and afxdp_prog__counters; closing it
 * detaches the program if it is still the one attached. -ENOENT when ifindex has no XDP program,
 * -EEXIST when it has one that is not ours. */
int afxdp_prog__adopt(struct afxdp_prog **out, int ifindex);
/* Detach (close the link, or for an adopted program detach it if still attached) and unload. NULL is fine. */
void afxdp_prog__close(struct afxdp_prog *p);

/* UMEM memory: MAP_HUGETLB first, regular pages otherwise. Returns the mapping (NULL on error, errno
 * set); *len gets the mapped length (pass it to afxdp_area__free), *huge 1 for huge pages, else
 * the -errno of the huge-page attempt. Kept apart from the socket so that numpy views of it stay
 * valid after the socket closes. */
void *afxdp_area__alloc(uint64_t size, uint64_t *len, int *huge);
void afxdp_area__free(void *area, uint64_t len);

/* UMEM + socket bound to (ifindex, queue) with FILL/COMPLETION/RX rings sized for every frame,
 * XDP_USE_NEED_WAKEUP, the FILL ring filled with every frame. *out is NULL on error. */
int afxdp_sock__open(struct afxdp_sock **out, const struct afxdp_sock_opts *opts, struct afxdp_sock_info *info);
int afxdp_sock__fd(const struct afxdp_sock *s);
/* Up to max received frames: addr[i] is the frame's offset in the UMEM area, len[i] its length.
 * The RX ring slots are released at once; the frames stay ours until afxdp_sock__release. Returns
 * how many (0: none waiting). Never blocks. */
int afxdp_sock__recv(struct afxdp_sock *s, uint32_t max, uint64_t *addr, uint32_t *len);
/* Give n frames (any offsets inside them) back to the FILL ring. Returns n or -errno. */
int afxdp_sock__release(struct afxdp_sock *s, const uint64_t *addr, uint32_t n);
int afxdp_sock__stats(const struct afxdp_sock *s, struct afxdp_stats *out);
/* Delete the socket and its UMEM registration (not the area). NULL is fine. */
void afxdp_sock__close(struct afxdp_sock *s);

/* The first warning libbpf or libxdp gave since the last afxdp_*__open ("" when none). */
const char *afxdp__log(void);
/* The verifier's reason when the last program load was refused ("" when none). */
const char *afxdp__verifier(void);
