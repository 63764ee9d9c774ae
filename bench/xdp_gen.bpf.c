/* Traffic generator for bench_capture.py: run with BPF_PROG_TEST_RUN in live-frames mode on the
 * sending end of the veth pair, it stamps the next MoldUDP64 sequence number into the frame and
 * transmits it (XDP_TX), so the receiver sees an in-order feed at a rate no socket can produce. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SEQ_OFFSET (14 + 20 + 8 + 10) /* Ethernet, IPv4 (no options), UDP, MoldUDP64 session */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} next_seq SEC(".maps");

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 k = 0;
	__u64 *seq, be;

	if (data + SEQ_OFFSET + 8 > end)
		return XDP_ABORTED;
	seq = bpf_map_lookup_elem(&next_seq, &k);
	if (!seq)
		return XDP_ABORTED;
	/* frames may or may not be re-initialised between runs: always write the whole field */
	be = __builtin_bswap64(__sync_fetch_and_add(seq, 1));
	__builtin_memcpy(data + SEQ_OFFSET, &be, 8);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
