/*
 * The floor: the least a UDP DNS server on this kernel can do per query. It receives a batch
 * with recvmmsg (MSG_WAITFORONE, 32 datagrams, as steerdns does), answers each with one
 * pre-built answer (www.registry.example. A 192.0.2.80, 55 octets) carrying the query's ID,
 * and sends the batch with sendmmsg. No parsing, no lookup: what is left is the kernel's
 * per-packet cost plus a copy, which benches/dnsperf.sh measures in the same run as the
 * servers so that every report says how far above it each one is.
 *
 * Build: cc -O2 -o reflector reflector.c      Run: reflector ADDR PORT   (IPv4 only)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 32
#define QUERY_MAX 4096

/* Header (ID patched per query; QR AA RD, 1 question, 1 answer), question, answer. */
static const unsigned char ANSWER[] = {
    0x00, 0x00, 0x85, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    3, 'w', 'w', 'w', 8, 'r', 'e', 'g', 'i', 's', 't', 'r', 'y',
    7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0x00, 0x01, 0x00, 0x01,
    0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x04,
    192, 0, 2, 80,
};

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ADDR PORT\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    int rcvbuf = 4 << 20;
    if (fd < 0 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("reflector: socket/bind");
        return 1;
    }
    static unsigned char in[BATCH][QUERY_MAX], out[BATCH][sizeof ANSWER];
    static struct sockaddr_in from[BATCH];
    static struct iovec rx_iov[BATCH], tx_iov[BATCH];
    static struct mmsghdr rx[BATCH], tx[BATCH];
    for (int i = 0; i < BATCH; i++) {
        rx_iov[i] = (struct iovec){.iov_base = in[i], .iov_len = QUERY_MAX};
        tx_iov[i] = (struct iovec){.iov_base = out[i], .iov_len = sizeof ANSWER};
        memcpy(out[i], ANSWER, sizeof ANSWER);
    }
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            rx[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                            .msg_iov = &rx_iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, rx, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (rx[i].msg_len < 12) continue;
            memcpy(out[m], in[i], 2); /* the query's ID */
            tx[m].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = rx[i].msg_hdr.msg_namelen,
                                            .msg_iov = &tx_iov[m], .msg_iovlen = 1};
            m++;
        }
        for (int sent = 0; sent < m;) {
            int r = sendmmsg(fd, tx + sent, m - sent, 0);
            if (r <= 0) break;
            sent += r;
        }
    }
}
