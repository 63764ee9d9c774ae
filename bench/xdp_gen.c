/* Loader for xdp_gen.bpf.o: sends COUNT copies of the frame in FRAME_FILE out of IFACE with
 * BPF_PROG_TEST_RUN (BPF_F_TEST_XDP_LIVE_FRAMES), stamped with sequence numbers from FIRST_SEQ,
 * evenly paced to PPS by the program itself (0 = as fast as possible). Test runs are issued in
 * calls of 2^20 repetitions (each call costs ~25 ms of set-up on this VM) until every frame is out.
 * Prints one JSON object. Usage: xdp_gen OBJ IFACE FRAME_FILE COUNT FIRST_SEQ PPS */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { NEXT, FIRST, END, T0, INTERVAL, N_STATE };

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock bpf_ktime_get_ns() reads */
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s OBJ IFACE FRAME_FILE COUNT FIRST_SEQ PPS\n", argv[0]);
		return 2;
	}
	unsigned ifindex = if_nametoindex(argv[2]);
	unsigned long long count = strtoull(argv[4], NULL, 10), first = strtoull(argv[5], NULL, 10);
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
	int map = bpf_map__fd(bpf_object__find_map_by_name(obj, "state"));
	unsigned long long t0 = now_ns();
	unsigned long long st[N_STATE] = {first, first, first + count, t0, pps > 0 ? (unsigned long long)(1e9 / pps) : 0};
	for (unsigned k = 0; k < N_STATE; k++)
		bpf_map_update_elem(map, &k, &st[k], BPF_ANY);
	struct xdp_md ctx = {.data_end = (unsigned)flen, .ingress_ifindex = ifindex};
	unsigned long long next = first, calls = 0;
	while (next < first + count) {
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (unsigned)flen, .ctx_in = &ctx,
			    .ctx_size_in = sizeof(ctx), .repeat = 1 << 20, .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
			    .batch_size = 64);
		if (bpf_prog_test_run_opts(prog, &opts)) {
			fprintf(stderr, "xdp_gen: BPF_PROG_TEST_RUN: %s\n", strerror(errno));
			return 1;
		}
		calls++;
		unsigned k = NEXT;
		bpf_map_lookup_elem(map, &k, &next);
	}
	double dt = (now_ns() - t0) * 1e-9;
	printf("{\"sent\": %llu, \"seconds\": %.6f, \"pps\": %.0f, \"stamped\": %llu, \"calls\": %llu}\n", count, dt,
	       count / dt, next - first, calls);
	return 0;
}
