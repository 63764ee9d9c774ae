/* AF_XDP for xdpfeed, part two: UMEM memory and AF_XDP sockets with their rings, on libxdp with
 * XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD (libxdp's own program and its multi-program dispatcher are
 * never loaded; afxdp.c puts the socket into our program's xsks map). */
#define _GNU_SOURCE
#include "afxdp.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_xdp.h>
#include <xdp/xsk.h>

#include "afxdp_internal.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26) /* MAP_HUGE_SHIFT 26, log2(2 MiB) */
#endif
#define HUGE_PAGE (2u << 20)

struct afxdp_sock {
	struct xsk_socket *xsk;
	struct xsk_umem *umem;
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp;
	struct xsk_ring_cons rx;
	int fd;
	uint32_t frame_size;
	uint64_t umem_len; /* frames * frame_size: every descriptor must lie inside */
	int busy_poll;
	uint64_t packets, bytes, bad_descs;
};

/* ---- UMEM memory ---- */

void *afxdp_area__alloc(uint64_t size, uint64_t *len, int *huge)
{
	uint64_t hlen = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	long page = sysconf(_SC_PAGESIZE);
	void *a;

	/* Huge pages: fewer TLB misses, and a frame never straddles two pages. They exist only when
	 * the administrator reserved some (vm.nr_hugepages); otherwise ENOMEM, and regular pages. */
	a = mmap(NULL, hlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB | MAP_POPULATE,
		 -1, 0);
	if (a != MAP_FAILED) {
		*len = hlen;
		*huge = 1;
		return a;
	}
	*huge = -errno;
	*len = (size + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
	a = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return a == MAP_FAILED ? NULL : a;
}

void afxdp_area__free(void *area, uint64_t len)
{
	if (area)
		munmap(area, len);
}

/* ---- the socket ---- */

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t r = 1;

	while (r < n)
		r <<= 1;
	return r;
}

/* libxdp maps the FILL and COMPLETION rings in xsk_umem__create and unmaps them only in
 * xsk_socket__delete: after a failed xsk_socket__create they must be unmapped here, or the
 * mappings keep the socket, and with it the pinned UMEM, alive. */
static void unmap_umem_rings(struct afxdp_sock *s, uint32_t fill_size, uint32_t comp_size)
{
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);

	if (getsockopt(xsk_umem__fd(s->umem), SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) || optlen != sizeof(off))
		return;
	munmap((char *)s->fill.ring - off.fr.desc, off.fr.desc + fill_size * sizeof(uint64_t));
	munmap((char *)s->comp.ring - off.cr.desc, off.cr.desc + comp_size * sizeof(uint64_t));
}

static int sock_create(struct afxdp_sock *s, const struct afxdp_sock_opts *o, uint16_t bind_flags,
		       struct afxdp_sock_info *info)
{
	uint32_t rx_size = pow2_at_least(o->frames);
	/* Twice the frames: a frame we give back can be in the ring once more while the kernel has
	 * consumed its previous entry without publishing that yet, so a release never finds it full. */
	uint32_t fill_size = 2 * rx_size;
	struct xsk_umem_config uc = {
		.fill_size = fill_size, .comp_size = 64, .frame_size = o->frame_size,
		.frame_headroom = 0, .flags = 0,
	};
	struct xsk_socket_config sc = {
		.rx_size = rx_size, .tx_size = 0,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.xdp_flags = 0, /* unused: the program is ours, attached by afxdp_prog__open */
		.bind_flags = bind_flags | XDP_USE_NEED_WAKEUP,
	};
	char ifname[IF_NAMESIZE];
	uint32_t idx;
	int err;

	info->step = AFXDP_STEP_BIND;
	if (!if_indextoname((unsigned)o->ifindex, ifname))
		return -errno;
	info->step = AFXDP_STEP_UMEM;
	err = xsk_umem__create(&s->umem, o->area, (uint64_t)o->frames * o->frame_size, &s->fill, &s->comp, &uc);
	if (err)
		return err;
	info->step = AFXDP_STEP_BIND;
	err = xsk_socket__create(&s->xsk, ifname, o->queue, s->umem, &s->rx, NULL, &sc);
	if (err) {
		unmap_umem_rings(s, fill_size, uc.comp_size);
		xsk_umem__delete(s->umem);
		s->umem = NULL;
		s->xsk = NULL;
		return err;
	}
	s->fd = xsk_socket__fd(s->xsk);
	fcntl(s->fd, F_SETFD, FD_CLOEXEC); /* libxdp opens it without SOCK_CLOEXEC */

	/* Every frame starts in the FILL ring, owned by the kernel until it carries a packet. */
	if (xsk_ring_prod__reserve(&s->fill, o->frames, &idx) != o->frames)
		return -ENOSPC;
	for (uint32_t i = 0; i < o->frames; i++)
		*xsk_ring_prod__fill_addr(&s->fill, idx + i) = (uint64_t)i * o->frame_size;
	xsk_ring_prod__submit(&s->fill, o->frames);
	return 0;
}

static void sock_destroy(struct afxdp_sock *s)
{
	xsk_socket__delete(s->xsk); /* unmaps the rings; the socket fd is the UMEM's */
	xsk_umem__delete(s->umem);  /* closes it: the kernel drops the socket from xsks itself */
	s->xsk = NULL;
	s->umem = NULL;
}

static void busy_poll(struct afxdp_sock *s, const struct afxdp_sock_opts *o, struct afxdp_sock_info *info)
{
	static const struct { int opt, bit; } opts[] = {
		{ SO_PREFER_BUSY_POLL, AFXDP_BUSY_PREFER },
		{ SO_BUSY_POLL, AFXDP_BUSY_USECS },
		{ SO_BUSY_POLL_BUDGET, AFXDP_BUSY_BUDGET },
	};
	int vals[] = { 1, (int)o->busy_poll_us, (int)(o->busy_poll_budget ? o->busy_poll_budget : 64) };

	/* Kernels before 5.11 lack SO_PREFER_BUSY_POLL and SO_BUSY_POLL_BUDGET (ENOPROTOOPT); raising
	 * the budget or SO_BUSY_POLL above net.core.busy_read needs CAP_NET_ADMIN (EPERM). */
	for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (!setsockopt(s->fd, SOL_SOCKET, opts[i].opt, &vals[i], sizeof(int)))
			info->busy_poll |= (uint32_t)opts[i].bit;
		else if (!info->busy_poll_err)
			info->busy_poll_err = -errno;
	}
	s->busy_poll = info->busy_poll != 0;
}

int afxdp_sock__open(struct afxdp_sock **out, const struct afxdp_sock_opts *uopts, struct afxdp_sock_info *info)
{
	struct afxdp_sock_info dummy;
	struct afxdp_sock_opts o;
	struct xdp_options xo;
	socklen_t optlen = sizeof(xo);
	struct afxdp_sock *s;
	int err, fd;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	*out = NULL;
	err = afxdp_opts_copy(&o, sizeof(o), uopts, uopts ? uopts->sz : 0);
	if (err)
		return err;
	/* Aligned UMEM chunks: a power of two from 2048 up to the page size. */
	if (o.ifindex <= 0 || !o.frames || !o.area || o.frame_size < 2048 || (o.frame_size & (o.frame_size - 1)) ||
	    o.frame_size > (uint32_t)sysconf(_SC_PAGESIZE) || o.area_len < (uint64_t)o.frames * o.frame_size ||
	    o.frames > (1u << 24) || (o.bind_flags & ~(XDP_ZEROCOPY | XDP_COPY)) ||
	    o.bind_flags == (XDP_ZEROCOPY | XDP_COPY))
		return -EINVAL;
	afxdp_log_reset();

	/* libxdp creates the socket inside xsk_umem__create: probe first so that the two reasons
	 * socket(AF_XDP) fails for (no AF_XDP in this kernel, no CAP_NET_RAW) are told apart. */
	info->step = AFXDP_STEP_SOCKET;
	fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	close(fd);

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->frame_size = o.frame_size;
	s->umem_len = (uint64_t)o.frames * o.frame_size;
	if (o.bind_flags) {
		err = sock_create(s, &o, o.bind_flags, info);
	} else {
		/* Zero-copy first; drivers without it (veth, most virtual NICs) say EOPNOTSUPP and we
		 * bind again in copy mode. A busy queue is busy in either mode: not a reason to fall back. */
		err = sock_create(s, &o, XDP_ZEROCOPY, info);
		if (err && err != -EBUSY && info->step == AFXDP_STEP_BIND) {
			info->zerocopy_err = err;
			err = sock_create(s, &o, XDP_COPY, info);
		}
	}
	if (err)
		goto fail;
	if (!getsockopt(s->fd, SOL_XDP, XDP_OPTIONS, &xo, &optlen))
		info->zerocopy = !!(xo.flags & XDP_OPTIONS_ZEROCOPY);
	if (o.busy_poll_us)
		busy_poll(s, &o, info);
	info->step = AFXDP_STEP_NONE;
	*out = s;
	return 0;
fail:
	sock_destroy(s);
	free(s);
	return err;
}

int afxdp_sock__fd(const struct afxdp_sock *s)
{
	return s->fd;
}

/* With XDP_USE_NEED_WAKEUP the kernel sets a flag on the FILL ring when it wants a system call
 * before it looks at the ring again (zero-copy drivers); with busy polling the system call is
 * what runs the driver's NAPI loop on this CPU. recvfrom(MSG_DONTWAIT) does both, never blocks. */
static void kick(struct afxdp_sock *s)
{
	recvfrom(s->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

int afxdp_sock__recv(struct afxdp_sock *s, uint32_t max, uint64_t *addr, uint32_t *len)
{
	uint64_t bytes = 0;
	uint32_t idx, n;

	n = xsk_ring_cons__peek(&s->rx, max, &idx);
	if (!n) {
		if (s->busy_poll || xsk_ring_prod__needs_wakeup(&s->fill))
			kick(s);
		return 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&s->rx, idx + i);

		addr[i] = d->addr; /* aligned chunks: the byte offset of the packet in the UMEM */
		len[i] = d->len;
		/* The kernel only hands out frames of our UMEM; checked anyway, as nothing read past it may
		 * reach the parsers: outside its chunk → length 0 (counted here, and as a truncated frame). */
		if (d->addr >= s->umem_len || d->len > s->frame_size - (d->addr & (s->frame_size - 1))) {
			len[i] = 0;
			s->bad_descs++;
		}
		bytes += len[i];
	}
	xsk_ring_cons__release(&s->rx, n);
	s->packets += n;
	s->bytes += bytes;
	return (int)n;
}

int afxdp_sock__release(struct afxdp_sock *s, const uint64_t *addr, uint32_t n)
{
	uint64_t mask = ~(uint64_t)(s->frame_size - 1);
	uint32_t idx;

	if (!n)
		return 0;
	if (xsk_ring_prod__reserve(&s->fill, n, &idx) != n)
		return -ENOSPC; /* more frames than the UMEM has: not frames from afxdp_sock__recv */
	for (uint32_t i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&s->fill, idx + i) = addr[i] & mask; /* the packet's chunk */
	xsk_ring_prod__submit(&s->fill, n);
	if (xsk_ring_prod__needs_wakeup(&s->fill))
		kick(s);
	return (int)n;
}

int afxdp_sock__stats(const struct afxdp_sock *s, struct afxdp_stats *out)
{
	struct xdp_statistics st;
	socklen_t optlen = sizeof(st);

	memset(out, 0, sizeof(*out));
	out->packets = s->packets;
	out->bytes = s->bytes;
	out->bad_descs = s->bad_descs;
	if (getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, &st, &optlen))
		return -errno;
	out->rx_dropped = st.rx_dropped;
	out->rx_invalid_descs = st.rx_invalid_descs;
	out->rx_ring_full = st.rx_ring_full;
	if (optlen >= offsetof(struct xdp_statistics, rx_fill_ring_empty_descs) + sizeof(uint64_t))
		out->rx_fill_ring_empty_descs = st.rx_fill_ring_empty_descs; /* kernel >= 5.9 */
	return 0;
}

void afxdp_sock__close(struct afxdp_sock *s)
{
	if (!s)
		return;
	sock_destroy(s);
	free(s);
}
