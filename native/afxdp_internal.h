/* What afxdp.c shares with afxdp_xsk.c and keeps from the cffi cdef (afxdp.h). */
#include <stddef.h>

/* Route libbpf's and libxdp's messages into afxdp__log() and clear it: called by every open. */
void afxdp_log_reset(void);
/* Copy a caller's options struct of any size src_sz into dst (dst_sz bytes): see afxdp.c. */
int afxdp_opts_copy(void *dst, size_t dst_sz, const void *src, size_t src_sz);
