/* Traffic generator for bench_capture.py: run with BPF_PROG_TEST_RUN in live-frames mode on the
 * sending end of the veth pair, it stamps the next MoldUDP64 sequence number into the frame and
 * transmits it (XDP_TX), so the receiver sees an in-order feed at a rate no socket can produce.
 * Pacing happens here too: a run that comes before the next frame is due drops its copy (XDP_DROP,
 * tens of nanoseconds), so frames leave evenly spaced instead of in bursts. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SEQ_OFFSET (14 + 20 + 8 + 10) /* Ethernet, IPv4 (no options), UDP, MoldUDP64 session */

enum { NEXT, FIRST, END, T0, INTERVAL, N_STATE }; /* next sequence, first, one past the last, start (ns), ns per frame */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, N_STATE);
	__type(key, __u32);
	__type(value, __u64);
} state SEC(".maps");

static __always_inline __u64 *slot(__u32 k)
{
	return bpf_map_lookup_elem(&state, &k);
}

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 *next = slot(NEXT), *first = slot(FIRST), *last = slot(END), *t0 = slot(T0), *gap = slot(INTERVAL);
	__u64 be;

	if (data + SEQ_OFFSET + 8 > end || !next || !first || !last || !t0 || !gap)
		return XDP_ABORTED;
	if (*next >= *last)
		return XDP_DROP;
	if (*gap && bpf_ktime_get_ns() < *t0 + (*next - *first) * *gap)
		return XDP_DROP; /* not due yet */
	/* frames may or may not be re-initialised between runs: always write the whole field */
	be = __builtin_bswap64((*next)++);
	__builtin_memcpy(data + SEQ_OFFSET, &be, 8);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
