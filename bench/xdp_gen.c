/* Loader for xdp_gen.bpf.o: sends COUNT copies of the frame in FRAME_FILE out of IFACE with
 * BPF_PROG_TEST_RUN (BPF_F_TEST_XDP_LIVE_FRAMES), each stamped with the next sequence number from
 * FIRST_SEQ, paced to PPS (0 = as fast as possible), CHUNK frames per BPF_PROG_TEST_RUN call. Each
 * call costs ~25 ms of set-up on this VM (the live-frames page pool), so the rate within a call is the
 * generator's full speed and pacing happens between calls. Prints one JSON object.
 * Usage: xdp_gen OBJ IFACE FRAME_FILE COUNT FIRST_SEQ PPS CHUNK */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: %s OBJ IFACE FRAME_FILE COUNT FIRST_SEQ PPS CHUNK\n", argv[0]);
		return 2;
	}
	unsigned ifindex = if_nametoindex(argv[2]);
	long long count = atoll(argv[4]);
	unsigned long long first = strtoull(argv[5], NULL, 10);
	double pps = atof(argv[6]);
	unsigned char frame[2048];
	FILE *f = fopen(argv[3], "rb");
	if (!ifindex || !f) {
		fprintf(stderr, "xdp_gen: no interface %s or frame file %s\n", argv[2], argv[3]);
		return 2;
	}
	size_t flen = fread(frame, 1, sizeof(frame), f);
	fclose(f);
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj)) {
		fprintf(stderr, "xdp_gen: cannot load %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	int prog = bpf_program__fd(bpf_object__find_program_by_name(obj, "gen"));
	int map = bpf_map__fd(bpf_object__find_map_by_name(obj, "next_seq"));
	unsigned key = 0;
	bpf_map_update_elem(map, &key, &first, BPF_ANY);
	struct xdp_md ctx = {.data_end = (unsigned)flen, .ingress_ifindex = ifindex};
	long long sent = 0;
	const long long chunk = atoll(argv[7]) > 0 ? atoll(argv[7]) : 1 << 20;
	double t0 = now();
	while (sent < count) {
		if (pps > 0) {
			double due = (now() - t0) * pps;
			if (due < sent) {
				usleep((useconds_t)((sent - due) / pps * 1e6) + 1);
				continue;
			}
		}
		long long k = count - sent < chunk ? count - sent : chunk;
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (unsigned)flen, .ctx_in = &ctx,
			    .ctx_size_in = sizeof(ctx), .repeat = (int)k, .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
			    .batch_size = 64);
		if (bpf_prog_test_run_opts(prog, &opts)) {
			fprintf(stderr, "xdp_gen: BPF_PROG_TEST_RUN: %s\n", strerror(errno));
			return 1;
		}
		sent += k;
	}
	double dt = now() - t0;
	unsigned long long next = 0;
	bpf_map_lookup_elem(map, &key, &next);
	printf("{\"sent\": %lld, \"seconds\": %.6f, \"pps\": %.0f, \"stamped\": %llu, \"chunk\": %lld}\n", sent, dt,
	       sent / dt, next - first, chunk);
	return 0;
}
