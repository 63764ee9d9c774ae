/* A C consumer of xdpfeed's ipc: output: reads the service `xdpfeed/NAME/messages` that `xdpfeed run
 * --out ipc:NAME` publishes, checks that the sequence numbers follow each other, counts the messages by
 * ITCH type, and prints the counts when the publisher has been silent for two seconds.
 *
 *   cc -O2 -o ipc_consumer examples/ipc_consumer.c $(pkg-config --cflags --libs iceoryx2-c)
 *   ./ipc_consumer NAME
 *
 * A sample is one chunk of a delivered batch: the user header below, then the payload
 * [stream: [uint16 big-endian length][ITCH message]...][padding to 8 bytes][int64 receive time per message].
 * The payload is read in place, in the publisher's shared memory, until the sample is dropped.
 */
#include "iox2/iceoryx2.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct BatchHeader {           /* multicast/sinks/ipc.py: BatchHeader (48 bytes, 8-aligned) */
    uint64_t first_seq;        /* sequence number of the first message */
    uint32_t count;            /* messages in the sample */
    uint32_t stream_bytes;     /* bytes of the stream before the receive times */
    uint32_t flags;            /* 1: a snapshot */
    uint32_t kind;             /* 0: messages */
    int64_t publish_ns;        /* CLOCK_REALTIME when published */
    char session[16];          /* MoldUDP64 session, NUL-padded */
};

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 2;
    }
    char service[256];
    snprintf(service, sizeof service, "xdpfeed/%s/messages", argv[1]);
    iox2_set_log_level_from_env_or(iox2_log_level_e_ERROR);

    iox2_node_builder_h node_builder = iox2_node_builder_new(NULL);
    iox2_node_h node = NULL;
    if (iox2_node_builder_create(node_builder, NULL, iox2_service_type_e_IPC, &node) != IOX2_OK) {
        fprintf(stderr, "ipc_consumer: cannot create a node\n");
        return 2;
    }
    iox2_service_name_h name = NULL;
    if (iox2_service_name_new(NULL, service, strlen(service), &name) != IOX2_OK) {
        fprintf(stderr, "ipc_consumer: bad service name %s\n", service);
        return 2;
    }
    iox2_service_builder_h builder = iox2_node_service_builder(&node, NULL, iox2_cast_service_name_ptr(name));
    iox2_service_builder_pub_sub_h pub_sub = iox2_service_builder_pub_sub(builder);
    /* the same type details the Python side registers: a slice of u8, and the header by name */
    iox2_service_builder_pub_sub_set_payload_type_details(&pub_sub, iox2_type_variant_e_DYNAMIC, "u8", 2, 1, 1);
    const char* header_name = "xdpfeed::BatchHeader";
    iox2_service_builder_pub_sub_set_user_header_type_details(&pub_sub, iox2_type_variant_e_FIXED_SIZE, header_name,
                                                              strlen(header_name), sizeof(struct BatchHeader),
                                                              alignof(struct BatchHeader));
    iox2_port_factory_pub_sub_h factory = NULL;
    if (iox2_service_builder_pub_sub_open(pub_sub, NULL, &factory) != IOX2_OK) {
        fprintf(stderr, "ipc_consumer: no service %s (is a feed publishing to it?)\n", service);
        return 2;
    }
    iox2_port_factory_subscriber_builder_h sub_builder = iox2_port_factory_pub_sub_subscriber_builder(&factory, NULL);
    iox2_subscriber_h subscriber = NULL;
    if (iox2_port_factory_subscriber_builder_create(sub_builder, NULL, &subscriber) != IOX2_OK) {
        fprintf(stderr, "ipc_consumer: cannot subscribe to %s\n", service);
        return 2;
    }
    fprintf(stderr, "ready\n");

    uint64_t by_type[256] = {0}, messages = 0, next_seq = 0, gaps = 0;
    int idle_ms = 0;
    while (idle_ms < 2000 && iox2_node_wait(&node, 0, 1000000) == IOX2_OK) {
        iox2_sample_h sample = NULL;
        if (iox2_subscriber_receive(&subscriber, NULL, &sample) != IOX2_OK) {
            fprintf(stderr, "ipc_consumer: receive failed\n");
            return 1;
        }
        if (sample == NULL) {
            idle_ms += 1;
            continue;
        }
        idle_ms = 0;
        const uint8_t* payload = NULL;
        size_t elements = 0;
        const struct BatchHeader* h = NULL;
        iox2_sample_payload(&sample, (const void**) &payload, &elements);
        iox2_sample_user_header(&sample, (const void**) &h);
        if (next_seq != 0 && h->first_seq != next_seq) {
            gaps += 1;
        }
        next_seq = h->first_seq + h->count;
        for (uint32_t p = 0; p + 2 <= h->stream_bytes;) {
            uint32_t n = ((uint32_t) payload[p] << 8) | payload[p + 1];
            if (n > 0) {
                by_type[payload[p + 2]] += 1;
            }
            p += 2 + n;
        }
        messages += h->count;
        iox2_sample_drop(sample);
    }
    printf("{\"messages\": %llu, \"next_seq\": %llu, \"gaps\": %llu, \"by_type\": {", (unsigned long long) messages,
           (unsigned long long) next_seq, (unsigned long long) gaps);
    int first = 1;
    for (int t = 0; t < 256; t++) {
        if (by_type[t]) {
            printf("%s\"%c\": %llu", first ? "" : ", ", t, (unsigned long long) by_type[t]);
            first = 0;
        }
    }
    printf("}}\n");
    iox2_subscriber_drop(subscriber);
    iox2_port_factory_pub_sub_drop(factory);
    iox2_service_name_drop(name);
    iox2_node_drop(node);
    return gaps ? 1 : 0;
}
