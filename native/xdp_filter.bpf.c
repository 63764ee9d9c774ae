// SPDX-License-Identifier: GPL-2.0
/* xdpfeed's XDP program: UDP to a configured (IPv4 group, port) goes to the AF_XDP socket bound to
 * the receiving queue; everything else (ARP, ICMP, SSH, other UDP, IPv6) passes to the kernel.
 *
 * Built at install time by native/build_afxdp.py (clang -O2 -g -target bpf); loaded and attached
 * through a bpf_link by native/afxdp.c, or (as xdp_filter_dpdk.bpf.o) by DPDK's af_xdp PMD.
 * GPL: bpf_redirect_map and the map helpers are GPL-only. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "xdp_filter.h"

#define IP_FRAG_OFFSET 0x1FFF /* fragment offset bits of iphdr.frag_off (host order) */
#define MAX_VLAN_TAGS 2       /* 802.1Q, or 802.1ad outer + 802.1Q inner (QinQ) */

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* DPDK's af_xdp PMD loads a program of its choosing (xdp_prog=) and puts its sockets in the XSKMAP
 * named xsks_map: build_afxdp.py compiles this file a second time, into xdp_filter_dpdk.bpf.o, with
 * -DXDPFEED_XSKS=xsks_map. */
#ifndef XDPFEED_XSKS
#define XDPFEED_XSKS xsks
#endif

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XDPFEED_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} XDPFEED_XSKS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XDPFEED_MAX_FEEDS);
	__type(key, struct xdpfeed_feed_key);
	__type(value, struct xdpfeed_feed_queues);
} feeds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDPFEED_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);

	if (c) /* per-CPU slot: no atomics needed */
		*c += 1;
}

#ifdef XDPFEED_RX_TIMESTAMP
/* The driver's RX timestamp (kernel >= 6.3, a device-bound program, a driver that implements it). */
extern int bpf_xdp_metadata_rx_timestamp(const struct xdp_md *ctx, __u64 *timestamp) __ksym;

static __always_inline void stamp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct xdpfeed_stamp *st = data;
	__u64 ts = 0;

	if ((void *)(st + 1) > (void *)(long)ctx->data_end || bpf_xdp_metadata_rx_timestamp(ctx, &ts) || !ts) {
		count(XDPFEED_CNT_NO_RX_TIMESTAMP);
		return;
	}
	st->magic = XDPFEED_STAMP_MAGIC;
	st->ts_lo = (__u32)ts;
	st->ts_hi = (__u32)(ts >> 32);
	count(XDPFEED_CNT_RX_TIMESTAMP);
}
#endif

static __always_inline int pass(void)
{
	count(XDPFEED_CNT_PASSED);
	return XDP_PASS;
}

SEC("xdp")
int xdpfeed_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct xdpfeed_feed_key key = {};
	struct xdpfeed_feed_queues *want;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	struct iphdr *ip;
	__u32 rxq, ihl, opt;
	__be16 proto;
	void *p;
	long ret;

	/* Every header is checked against data_end before it is read: the verifier rejects the
	 * program otherwise, and a short frame simply passes to the kernel. */
	if ((void *)(eth + 1) > end)
		return pass();
	proto = eth->h_proto;
	p = eth + 1;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vlan = p;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > end)
			return pass();
		proto = vlan->proto;
		p = vlan + 1;
	}
	if (proto != bpf_htons(ETH_P_IP))
		return pass();

	ip = p;
	if ((void *)(ip + 1) > end)
		return pass();
	ihl = ip->ihl; /* in 32-bit words: 5 without options, at most 15 */
	if (ip->version != 4 || ihl < 5 || ip->protocol != IPPROTO_UDP)
		return pass();
	/* A non-first fragment carries no UDP header: the kernel reassembles what it can. A first
	 * fragment of a feed datagram is still matched; the handler's frame parser counts it. */
	if (ip->frag_off & bpf_htons(IP_FRAG_OFFSET))
		return pass();
	/* Skip the IP options. Without CAP_PERFMON the verifier refuses a packet pointer plus a
	 * variable (it cannot mask that against speculation), so the options length is added as
	 * constants, one per bit of ihl - 5 (four branches, not ten); barrier_var keeps clang from
	 * folding them back into udp + 4 * (ihl - 5). */
	udp = (void *)(ip + 1);
	opt = ihl - 5;
#pragma unroll
	for (__u32 bit = 1; bit <= 8; bit <<= 1) {
		if (opt & bit) {
			udp = (void *)udp + 4 * bit;
			barrier_var(udp);
		}
	}
	if ((void *)(udp + 1) > end)
		return pass();

	key.daddr = ip->daddr;
	key.dport = udp->dest;
	want = bpf_map_lookup_elem(&feeds, &key);
	if (!want)
		return pass();

	rxq = ctx->rx_queue_index;
	if (rxq >= XDPFEED_MAX_QUEUES || !(want->bits[rxq / 64] & (1ULL << (rxq % 64)))) {
		count(XDPFEED_CNT_OTHER_QUEUE);
		return XDP_PASS;
	}
#ifdef XDPFEED_RX_TIMESTAMP
	stamp(ctx);
#endif
	/* The flags argument's low bits are the action when xsks has no socket at rxq (kernel >= 5.3):
	 * such frames go on to the kernel instead of being dropped. */
	ret = bpf_redirect_map(&XDPFEED_XSKS, rxq, XDP_PASS);
	count(ret == XDP_REDIRECT ? XDPFEED_CNT_REDIRECTED : XDPFEED_CNT_NO_SOCKET);
	return ret;
}

char LICENSE[] SEC("license") = "GPL";
