/* AF_XDP for xdpfeed, part one: our XDP filter loaded and attached with libbpf through a bpf_link,
 * its maps, and the message keeping shared with afxdp_xsk.c (the sockets). */
#define _GNU_SOURCE
#include "afxdp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <xdp/libxdp.h>

#include "afxdp_internal.h"
#include "xdp_filter.h"

struct afxdp_prog {
	struct bpf_object *obj;
	int link_fd;
	int xsks_fd, feeds_fd, counters_fd;
	int adopted; /* afxdp_prog__adopt: no object, the map fds are ours to close */
	int prog_fd, ifindex; /* adopted: the program, detached at close if still attached there */
	uint32_t prog_id;
};

/* ---- libbpf / libxdp messages: kept, never printed ---- */

static char first_warning[512];

static void keep(const char *fmt, va_list ap)
{
	size_t n;

	if (first_warning[0])
		return;
	vsnprintf(first_warning, sizeof(first_warning), fmt, ap);
	n = strlen(first_warning);
	while (n && (first_warning[n - 1] == '\n' || first_warning[n - 1] == ' '))
		first_warning[--n] = 0;
}

static char verifier_said[256]; /* the verifier's reason, the line before "processed N insns" */

static void keep_verifier(const char *fmt, va_list ap)
{
	static char log[1 << 18]; /* the whole verifier log (loads are not concurrent: one loader at a time) */
	char *end, *start;

	vsnprintf(log, sizeof(log), fmt, ap);
	end = strstr(log, "\nprocessed ");
	if (!end || verifier_said[0])
		return;
	*end = 0;
	start = strrchr(log, '\n');
	snprintf(verifier_said, sizeof(verifier_said), "%s", start ? start + 1 : log);
}

static int keep_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	va_list again;

	if (level == LIBBPF_WARN) {
		va_copy(again, ap);
		keep(fmt, ap);
		keep_verifier(fmt, again);
		va_end(again);
	}
	return 0;
}

static int keep_libxdp(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBXDP_WARN)
		keep(fmt, ap);
	return 0;
}

void afxdp_log_reset(void)
{
	libbpf_set_print(keep_libbpf);
	libxdp_set_print(keep_libxdp);
	first_warning[0] = 0;
	verifier_said[0] = 0;
}

const char *afxdp__verifier(void)
{
	return verifier_said;
}

const char *afxdp__log(void)
{
	return first_warning;
}

/* Copy a caller's options struct of any size: fields it does not have read as 0, and fields we do
 * not know must be 0 (otherwise the caller asked for something this build cannot do). */
int afxdp_opts_copy(void *dst, size_t dst_sz, const void *src, size_t src_sz)
{
	memset(dst, 0, dst_sz);
	if (!src || src_sz < sizeof(size_t))
		return -EINVAL;
	for (size_t i = dst_sz; i < src_sz; i++)
		if (((const char *)src)[i])
			return -E2BIG;
	memcpy(dst, src, src_sz < dst_sz ? src_sz : dst_sz);
	return 0;
}

/* ---- the XDP program ---- */

static int link_xdp(struct afxdp_prog *p, int ifindex, uint32_t flags)
{
	LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = flags);
	int fd = bpf_link_create(bpf_program__fd(bpf_object__find_program_by_name(p->obj, XDPFEED_PROG_NAME)),
				 ifindex, BPF_XDP, &lo);

	if (fd < 0)
		return fd;
	p->link_fd = fd; /* the kernel opens bpf fds O_CLOEXEC: a child process does not keep it */
	return 0;
}

#ifndef BPF_F_XDP_DEV_BOUND_ONLY
#define BPF_F_XDP_DEV_BOUND_ONLY (1U << 6) /* linux/bpf.h of kernel 6.3; older headers lack it */
#endif

int afxdp_prog__open(struct afxdp_prog **out, const struct afxdp_prog_opts *uopts, struct afxdp_prog_info *info)
{
	struct afxdp_prog_info dummy;
	struct afxdp_prog_opts o;
	struct afxdp_prog *p;
	int err;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	*out = NULL;
	err = afxdp_opts_copy(&o, sizeof(o), uopts, uopts ? uopts->sz : 0);
	if (err)
		return err;
	if (!o.obj_path || o.ifindex <= 0 || (o.xdp_flags & ~(XDP_FLAGS_DRV_MODE | XDP_FLAGS_SKB_MODE)) ||
	    o.xdp_flags == (XDP_FLAGS_DRV_MODE | XDP_FLAGS_SKB_MODE))
		return -EINVAL;
	afxdp_log_reset();
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->link_fd = -1;

	info->step = AFXDP_STEP_OPEN;
	p->obj = bpf_object__open_file(o.obj_path, NULL);
	if (!p->obj) {
		err = -errno;
		goto fail;
	}
	info->step = AFXDP_STEP_LOAD;
	if (o.dev_bound) {
		struct bpf_program *prog = bpf_object__find_program_by_name(p->obj, XDPFEED_PROG_NAME);

		if (!prog) {
			err = -ENOENT;
			goto fail;
		}
		bpf_program__set_ifindex(prog, o.ifindex);
		bpf_program__set_flags(prog, bpf_program__flags(prog) | BPF_F_XDP_DEV_BOUND_ONLY);
	}
	err = bpf_object__load(p->obj);
	if (err)
		goto fail;
	p->xsks_fd = bpf_object__find_map_fd_by_name(p->obj, XDPFEED_MAP_XSKS);
	p->feeds_fd = bpf_object__find_map_fd_by_name(p->obj, XDPFEED_MAP_FEEDS);
	p->counters_fd = bpf_object__find_map_fd_by_name(p->obj, XDPFEED_MAP_COUNTERS);
	if (p->xsks_fd < 0 || p->feeds_fd < 0 || p->counters_fd < 0 ||
	    !bpf_object__find_program_by_name(p->obj, XDPFEED_PROG_NAME)) {
		err = -ENOENT; /* an object file that is not ours */
		goto fail;
	}

	info->step = AFXDP_STEP_ATTACH;
	if (o.xdp_flags) {
		err = link_xdp(p, o.ifindex, o.xdp_flags);
		info->xdp_flags = o.xdp_flags;
	} else {
		/* Native first. A driver without XDP support (EOPNOTSUPP), or one that refuses this
		 * configuration (veth: EINVAL/ERANGE for MTU or queue counts), still allows skb mode.
		 * Permission, busy and missing-device errors would fail the same way in skb mode. */
		err = link_xdp(p, o.ifindex, XDP_FLAGS_DRV_MODE);
		info->xdp_flags = XDP_FLAGS_DRV_MODE;
		if (err && err != -EPERM && err != -EACCES && err != -EBUSY && err != -EEXIST && err != -ENODEV) {
			info->native_err = err;
			info->xdp_flags = XDP_FLAGS_SKB_MODE;
			err = link_xdp(p, o.ifindex, XDP_FLAGS_SKB_MODE);
		}
	}
	if (err)
		goto fail;
	info->step = AFXDP_STEP_NONE;
	*out = p;
	return 0;
fail:
	afxdp_prog__close(p);
	return err;
}

int afxdp_prog__adopt(struct afxdp_prog **out, int ifindex)
{
	struct bpf_prog_info info = {};
	uint32_t ids[16], len = sizeof(info), prog_id = 0;
	struct afxdp_prog *p;
	int fd, err;

	*out = NULL;
	afxdp_log_reset();
	err = bpf_xdp_query_id(ifindex, 0, &prog_id);
	if (err || !prog_id)
		return err ? err : -ENOENT;
	fd = bpf_prog_get_fd_by_id(prog_id);
	if (fd < 0)
		return -errno;
	info.nr_map_ids = sizeof(ids) / sizeof(ids[0]);
	info.map_ids = (uint64_t)(unsigned long)ids;
	err = bpf_obj_get_info_by_fd(fd, &info, &len) ? -errno : strcmp(info.name, XDPFEED_PROG_NAME) ? -EEXIST : 0;
	p = err ? NULL : calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		return err ? err : -ENOMEM;
	}
	p->adopted = 1;
	p->prog_fd = fd;
	p->ifindex = ifindex;
	p->prog_id = prog_id;
	p->link_fd = p->xsks_fd = p->feeds_fd = p->counters_fd = -1;
	for (uint32_t i = 0; i < info.nr_map_ids && i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct bpf_map_info map = {};
		uint32_t map_len = sizeof(map);
		int mfd = bpf_map_get_fd_by_id(ids[i]);

		if (mfd < 0 || bpf_obj_get_info_by_fd(mfd, &map, &map_len)) {
			if (mfd >= 0)
				close(mfd);
			continue;
		}
		if (!strcmp(map.name, XDPFEED_MAP_FEEDS) && p->feeds_fd < 0)
			p->feeds_fd = mfd;
		else if (!strcmp(map.name, XDPFEED_MAP_COUNTERS) && p->counters_fd < 0)
			p->counters_fd = mfd;
		else
			close(mfd);
	}
	if (p->feeds_fd < 0 || p->counters_fd < 0) {
		afxdp_prog__close(p);
		return -ENOENT;
	}
	*out = p;
	return 0;
}

int afxdp_prog__set_feed(struct afxdp_prog *p, uint32_t daddr, uint16_t dport, uint32_t queue, int add)
{
	struct xdpfeed_feed_key key = { .daddr = daddr, .dport = dport };
	struct xdpfeed_feed_queues q;
	uint64_t bit = 1ULL << (queue % 64);
	int empty = 1;

	if (queue >= XDPFEED_MAX_QUEUES)
		return -ERANGE;
	if (bpf_map_lookup_elem(p->feeds_fd, &key, &q))
		memset(&q, 0, sizeof(q));
	if (add)
		q.bits[queue / 64] |= bit;
	else
		q.bits[queue / 64] &= ~bit;
	for (unsigned i = 0; i < XDPFEED_MAX_QUEUES / 64; i++)
		empty &= !q.bits[i];
	if (empty) {
		int err = bpf_map_delete_elem(p->feeds_fd, &key);
		return err == -ENOENT ? 0 : err;
	}
	return bpf_map_update_elem(p->feeds_fd, &key, &q, BPF_ANY); /* -E2BIG: XDPFEED_MAX_FEEDS reached */
}

int afxdp_prog__set_sock(struct afxdp_prog *p, uint32_t queue, const struct afxdp_sock *s)
{
	int fd;

	if (queue >= XDPFEED_MAX_QUEUES)
		return -ERANGE;
	if (!s)
		return bpf_map_delete_elem(p->xsks_fd, &queue);
	fd = afxdp_sock__fd(s);
	return bpf_map_update_elem(p->xsks_fd, &queue, &fd, BPF_ANY);
}

int afxdp_prog__counters(const struct afxdp_prog *p, uint64_t *out, uint32_t n)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v;
	uint32_t i;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	v = calloc((size_t)ncpu, sizeof(*v)); /* a per-CPU lookup returns one value per possible CPU */
	if (!v)
		return -ENOMEM;
	for (i = 0; i < n && i < XDPFEED_CNT_MAX; i++) {
		int err = bpf_map_lookup_elem(p->counters_fd, &i, v);

		if (err) {
			free(v);
			return err;
		}
		out[i] = 0;
		for (int c = 0; c < ncpu; c++)
			out[i] += v[c];
	}
	free(v);
	return (int)i;
}

void afxdp_prog__close(struct afxdp_prog *p)
{
	if (!p)
		return;
	if (p->link_fd >= 0)
		close(p->link_fd); /* the last reference to the link: the program is detached */
	if (p->adopted) {
		/* Detach the program if it is still the one attached (DPDK 22.11's af_xdp PMD leaves it):
		 * XDP_FLAGS_REPLACE with its fd never takes away a program someone attached since. */
		LIBBPF_OPTS(bpf_xdp_query_opts, q);
		LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = p->prog_fd);

		if (bpf_xdp_query(p->ifindex, 0, &q) == 0 && (q.drv_prog_id == p->prog_id || q.skb_prog_id == p->prog_id))
			bpf_xdp_detach(p->ifindex, XDP_FLAGS_REPLACE |
				       (q.drv_prog_id == p->prog_id ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE), &ao);
		close(p->prog_fd);
		if (p->feeds_fd >= 0)
			close(p->feeds_fd);
		if (p->counters_fd >= 0)
			close(p->counters_fd);
	}
	bpf_object__close(p->obj);
	free(p);
}
