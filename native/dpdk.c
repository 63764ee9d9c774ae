/* DPDK receive for xdpfeed (see dpdk.h): EAL init, ports, RX bursts into preallocated arrays,
 * stats, and DPDK's log kept in a buffer instead of printed. */
#define _GNU_SOURCE
#include "dpdk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>

#define POOL_CACHE 256 /* per-lcore mbuf cache (RTE_MEMPOOL_CACHE_MAX_SIZE is 512) */
#define TX_DESC 64     /* some PMDs want a TX queue; nothing is ever sent */
/* Frames asked for per rte_eth_rx_burst: the size PMDs are tuned for. With 1024 at a time, 22.11's
 * af_xdp PMD let its fill ring run dry on a veth at 100 kpps (half the frames lost); with 64, none. */
#define RX_CHUNK 64

struct dpdk_port {
	uint16_t port_id;
	int started, configured;
	int set_allmulti, set_promisc; /* we turned them on: off again at close */
	struct rte_device *dev; /* non-NULL: we hot-plugged it, so we detach it */
	struct rte_mempool *pool;
	char *base;
	uint64_t span;
	uint32_t burst, held;
	uint16_t data_room;
	int ts_mode, ts_offset;
	uint64_t ts_flag;
	uint64_t packets, bytes, multiseg, external;
	struct rte_mbuf *mbufs[]; /* burst entries */
};

/* ---- DPDK's log: the last LOG_KEEP bytes, and stderr when asked ---- */

#define LOG_KEEP 4096
static char log_buf[LOG_KEEP + 1];
static size_t log_len;
static int log_echo;

static ssize_t log_write(void *cookie, const char *data, size_t n)
{
	(void)cookie;
	if (log_echo)
		fwrite(data, 1, n, stderr);
	if (n >= LOG_KEEP) {
		memcpy(log_buf, data + n - LOG_KEEP, LOG_KEEP);
		log_len = LOG_KEEP;
	} else {
		if (log_len + n > LOG_KEEP) { /* drop the oldest bytes */
			size_t drop = log_len + n - LOG_KEEP;
			memmove(log_buf, log_buf + drop, log_len - drop);
			log_len -= drop;
		}
		memcpy(log_buf + log_len, data, n);
		log_len += n;
	}
	log_buf[log_len] = 0;
	return (ssize_t)n;
}

int dpdk_log__open(int echo)
{
	static FILE *stream;
	cookie_io_functions_t io = { .write = log_write };

	log_echo = echo;
	if (!stream) {
		stream = fopencookie(NULL, "w", io);
		if (!stream)
			return -errno;
		setvbuf(stream, NULL, _IONBF, 0);
	}
	return rte_openlog_stream(stream);
}

const char *dpdk__log(void)
{
	return log_buf;
}

void dpdk_log__reset(void)
{
	log_len = 0;
	log_buf[0] = 0;
}

/* ---- EAL ---- */

int dpdk_eal__init(int argc, char **argv)
{
	/* On bad arguments the EAL prints its whole usage on stdout: that goes to /dev/null, the
	 * reason is in the log. */
	int saved = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY | O_CLOEXEC), ret;

	fflush(stdout);
	if (saved >= 0 && null >= 0)
		dup2(null, STDOUT_FILENO);
	ret = rte_eal_init(argc, argv);
	fflush(stdout);
	if (saved >= 0) {
		dup2(saved, STDOUT_FILENO);
		close(saved);
	}
	if (null >= 0)
		close(null);
	return ret < 0 ? -(rte_errno ? rte_errno : EINVAL) : 0;
}

int dpdk_eal__cleanup(void)
{
	return rte_eal_cleanup();
}

/* ---- ports ---- */

static void pool_extent(struct rte_mempool *mp, void *opaque, struct rte_mempool_memhdr *memhdr, unsigned idx)
{
	char **ext = opaque; /* [lowest address, highest end] */
	char *lo = memhdr->addr, *hi = lo + memhdr->len;

	(void)mp;
	(void)idx;
	if (!ext[0] || lo < ext[0])
		ext[0] = lo;
	if (hi > ext[1])
		ext[1] = hi;
}

static int64_t host_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int fail(struct dpdk_port *p, struct dpdk_port_info *info, int step, int err)
{
	if (info)
		info->step = step;
	dpdk_port__close(p);
	return err < 0 ? err : -EINVAL;
}

int dpdk_port__open(struct dpdk_port **out, const struct dpdk_port_opts *opts, struct dpdk_port_info *info)
{
	static unsigned pools;
	struct rte_eth_conf conf;
	struct rte_eth_dev_info dev_info;
	struct dpdk_port *p;
	uint16_t rxd = opts->rx_desc, txd = TX_DESC;
	char pool_name[RTE_MEMPOOL_NAMESIZE], *ext[2] = { NULL, NULL };
	int socket, err, off, bit;

	*out = NULL;
	if (info)
		memset(info, 0, sizeof(*info));
	if (opts->burst == 0 || opts->mbufs <= opts->burst + rxd)
		return -EINVAL; /* the pool must hold a full RX ring and a held burst */
	p = calloc(1, sizeof(*p) + opts->burst * sizeof(p->mbufs[0]));
	if (!p)
		return -ENOMEM;
	p->burst = opts->burst;
	p->ts_mode = opts->timestamp;
	p->ts_offset = -1;

	if (opts->probe) {
		if (rte_eth_dev_get_port_by_name(opts->name, &p->port_id) == 0) /* someone else's port */
			return fail(p, info, DPDK_STEP_PROBE, -EEXIST);
		err = rte_dev_probe(opts->devargs);
		if (err)
			return fail(p, info, DPDK_STEP_PROBE, err);
	}
	err = rte_eth_dev_get_port_by_name(opts->name, &p->port_id);
	if (err) {
		if (opts->probe) /* probed, but no port of that name: detach it again */
			rte_eal_hotplug_remove("vdev", opts->name);
		return fail(p, info, DPDK_STEP_PORT, -ENODEV);
	}
	err = rte_eth_dev_info_get(p->port_id, &dev_info);
	if (err)
		return fail(p, info, DPDK_STEP_PORT, err);
	if (opts->probe)
		p->dev = dev_info.device;
	if (info) {
		info->port_id = p->port_id;
		snprintf(info->driver, sizeof(info->driver), "%s", dev_info.driver_name ? dev_info.driver_name : "");
	}

	socket = rte_eth_dev_socket_id(p->port_id);
	snprintf(pool_name, sizeof(pool_name), "xdpfeed_rx%u", pools++); /* port ids are reused, names must not be */
	p->pool = rte_pktmbuf_pool_create(pool_name, opts->mbufs, POOL_CACHE, 0, opts->mbuf_size,
					  socket < 0 ? SOCKET_ID_ANY : socket);
	if (!p->pool && socket >= 0) /* no memory on the NIC's NUMA node: any node will do */
		p->pool = rte_pktmbuf_pool_create(pool_name, opts->mbufs, POOL_CACHE, 0, opts->mbuf_size, SOCKET_ID_ANY);
	if (!p->pool)
		return fail(p, info, DPDK_STEP_POOL, -rte_errno);
	p->data_room = rte_pktmbuf_data_room_size(p->pool);
	rte_mempool_mem_iter(p->pool, pool_extent, ext);
	p->base = ext[0];
	p->span = (uint64_t)(ext[1] - ext[0]);

	memset(&conf, 0, sizeof(conf));
	if (opts->timestamp != DPDK_TS_HOST && (dev_info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP))
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
	err = rte_eth_dev_configure(p->port_id, 1, 1, &conf);
	if (err)
		return fail(p, info, DPDK_STEP_CONFIGURE, err);
	p->configured = 1;
	err = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &rxd, &txd);
	if (err)
		return fail(p, info, DPDK_STEP_CONFIGURE, err);
	err = rte_eth_rx_queue_setup(p->port_id, 0, rxd, socket < 0 ? SOCKET_ID_ANY : socket, NULL, p->pool);
	if (err)
		return fail(p, info, DPDK_STEP_RXQ, err);
	err = rte_eth_tx_queue_setup(p->port_id, 0, txd, socket < 0 ? SOCKET_ID_ANY : socket, NULL);
	if (err)
		return fail(p, info, DPDK_STEP_TXQ, err);
	err = rte_eth_dev_start(p->port_id);
	if (err)
		return fail(p, info, DPDK_STEP_START, err);
	p->started = 1;
	/* Multicast (and promiscuous mode when asked), put back as it was at close: with af_packet they
	 * are flags of a kernel interface. -ENOTSUP from vdevs that see everything anyway. */
	if (rte_eth_allmulticast_get(p->port_id) == 0 && rte_eth_allmulticast_enable(p->port_id) == 0)
		p->set_allmulti = 1;
	if (opts->promisc && rte_eth_promiscuous_get(p->port_id) == 0 && rte_eth_promiscuous_enable(p->port_id) == 0)
		p->set_promisc = 1;

	/* The PMD registers the timestamp field and flag when it stamps frames. */
	off = rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME, NULL);
	bit = rte_mbuf_dynflag_lookup(RTE_MBUF_DYNFLAG_RX_TIMESTAMP_NAME, NULL);
	if (off >= 0 && bit >= 0) {
		p->ts_offset = off;
		p->ts_flag = 1ULL << bit;
	}
	if (info) {
		info->rx_desc = rxd;
		info->base = p->base;
		info->span = p->span;
		info->rx_timestamp = p->ts_offset >= 0;
	}
	*out = p;
	return 0;
}

/* A frame whose bytes lie outside the pool (an external buffer) moves into one of our mbufs. */
static struct rte_mbuf *adopt(struct dpdk_port *p, struct rte_mbuf *m)
{
	struct rte_mbuf *c = NULL;

	if (m->data_len <= p->data_room - RTE_PKTMBUF_HEADROOM)
		c = rte_pktmbuf_alloc(p->pool);
	if (c) {
		memcpy(rte_pktmbuf_mtod(c, void *), rte_pktmbuf_mtod(m, void *), m->data_len);
		c->data_len = c->pkt_len = m->data_len;
		c->ol_flags |= m->ol_flags & p->ts_flag;
		if (p->ts_offset >= 0)
			*RTE_MBUF_DYNFIELD(c, p->ts_offset, uint64_t *) = *RTE_MBUF_DYNFIELD(m, p->ts_offset, uint64_t *);
	} else {
		p->external++;
	}
	rte_pktmbuf_free(m);
	return c;
}

int dpdk_port__recv(struct dpdk_port *p, uint32_t max, int64_t *offset, uint32_t *len, int64_t *ts_ns)
{
	uint32_t got = 0, n = 0, i;
	int64_t now = 0;
	uint64_t bytes = 0;

	if (p->held)
		return -EBUSY;
	if (max > p->burst)
		max = p->burst;
	while (got < max) { /* bursts of RX_CHUNK until one comes back short: the queue is empty */
		uint16_t want = max - got > RX_CHUNK ? RX_CHUNK : (uint16_t)(max - got);
		uint16_t k = rte_eth_rx_burst(p->port_id, 0, p->mbufs + got, want);

		got += k;
		if (k < want)
			break;
	}
	if (got && p->ts_mode == DPDK_TS_HOST)
		now = host_ns();
	for (i = 0; i < got; i++) {
		struct rte_mbuf *m = p->mbufs[i];
		char *data;

		if (m->nb_segs != 1) {
			p->multiseg++;
			rte_pktmbuf_free(m);
			continue;
		}
		data = rte_pktmbuf_mtod(m, char *);
		if (data < p->base || data + m->data_len > p->base + p->span) {
			m = adopt(p, m);
			if (!m)
				continue;
			data = rte_pktmbuf_mtod(m, char *);
		}
		p->mbufs[n] = m;
		offset[n] = data - p->base;
		len[n] = m->data_len;
		bytes += m->data_len;
		if (p->ts_mode == DPDK_TS_HOST) {
			ts_ns[n] = now;
		} else if (m->ol_flags & p->ts_flag) {
			uint64_t t = *RTE_MBUF_DYNFIELD(m, p->ts_offset, uint64_t *);

			ts_ns[n] = (int64_t)(p->ts_mode == DPDK_TS_PMD_US ? t * 1000 : t);
		} else {
			if (!now)
				now = host_ns();
			ts_ns[n] = now;
		}
		n++;
	}
	p->held = n;
	p->packets += n;
	p->bytes += bytes;
	return (int)n;
}

void dpdk_port__release(struct dpdk_port *p)
{
	if (p->held)
		rte_pktmbuf_free_bulk(p->mbufs, p->held);
	p->held = 0;
}

int dpdk_port__stats(struct dpdk_port *p, struct dpdk_stats *out)
{
	struct rte_eth_stats st;
	int err = rte_eth_stats_get(p->port_id, &st);

	if (err)
		return err;
	out->packets = p->packets;
	out->bytes = p->bytes;
	out->ipackets = st.ipackets;
	out->ibytes = st.ibytes;
	out->imissed = st.imissed;
	out->ierrors = st.ierrors;
	out->rx_nombuf = st.rx_nombuf;
	out->multiseg = p->multiseg;
	out->external = p->external;
	return 0;
}

void dpdk_port__close(struct dpdk_port *p)
{
	if (!p)
		return;
	dpdk_port__release(p);
	if (p->set_promisc)
		rte_eth_promiscuous_disable(p->port_id);
	if (p->set_allmulti)
		rte_eth_allmulticast_disable(p->port_id);
	if (p->started)
		rte_eth_dev_stop(p->port_id);
	if (p->configured || p->dev)
		rte_eth_dev_close(p->port_id);
	if (p->dev)
		rte_dev_remove(p->dev); /* the vdev name can be used again */
	rte_mempool_free(p->pool);
	free(p);
}
