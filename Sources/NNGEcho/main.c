// nng-echo: the raw NNG baseline for `tts-bench control-plane`.
//
//   nng-echo URL [contexts=64]
//
// Listens on URL with a REP socket and a pool of contexts. Each context is an aio-callback state
// machine: receive a request, send the same message back, receive again. Nothing is decoded, so
// this is what libnng alone costs for the coordinator's message sizes and concurrency.
//
// Prints "listening URL" on stdout once the listener is up; runs until SIGTERM or SIGINT.
// Follows the project's NNG 1.5.2 rules: callbacks never block, nng_aio_stop is never used, aios
// are freed from the main thread after the socket is closed, and the listener has a receive limit.

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

enum phase { PHASE_RECV, PHASE_SEND };

struct echo_ctx {
    nng_ctx ctx;
    nng_aio *aio;
    enum phase phase;
};

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void echo_cb(void *arg) {
    struct echo_ctx *e = arg;
    int rv = nng_aio_result(e->aio);
    switch (e->phase) {
    case PHASE_RECV:
        if (rv != 0) {
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
                return; // shutting down
            }
            // Any other receive failure: post the receive again.
            nng_ctx_recv(e->ctx, e->aio);
            return;
        }
        // The received message becomes the reply as is (the aio still holds it).
        e->phase = PHASE_SEND;
        nng_ctx_send(e->ctx, e->aio);
        return;
    case PHASE_SEND:
        if (rv != 0) {
            // A failed send leaves the message with us.
            nng_msg *m = nng_aio_get_msg(e->aio);
            nng_aio_set_msg(e->aio, NULL);
            if (m != NULL) {
                nng_msg_free(m);
            }
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
                return;
            }
        }
        e->phase = PHASE_RECV;
        nng_ctx_recv(e->ctx, e->aio);
        return;
    }
}

static void die(const char *what, int rv) {
    fprintf(stderr, "nng-echo: %s: %s\n", what, nng_strerror(rv));
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: nng-echo URL [contexts=64]\n"
                        "  a REP echo server over libnng (the raw baseline of tts-bench control-plane)\n");
        return argc < 2 ? 2 : 0;
    }
    const char *url = argv[1];
    int count = 64;
    if (argc == 3) {
        char *end = NULL;
        long n = strtol(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0' || n < 1 || n > 65536) {
            fprintf(stderr, "nng-echo: contexts must be a number from 1 to 65536, got '%s'\n", argv[2]);
            return 2;
        }
        count = (int)n;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    // Block the signals until sigsuspend below, so none can slip in between the check and the
    // wait. (nng's threads are created later and inherit the mask: the main thread gets them.)
    sigset_t stop_signals, wait_mask;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &wait_mask);
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGINT);

    nng_socket sock;
    int rv;
    if ((rv = nng_rep0_open(&sock)) != 0) {
        die("open REP socket", rv);
    }

    struct echo_ctx *pool = calloc((size_t)count, sizeof *pool);
    if (pool == NULL) {
        die("allocate contexts", NNG_ENOMEM);
    }
    for (int i = 0; i < count; i++) {
        if ((rv = nng_ctx_open(&pool[i].ctx, sock)) != 0) {
            die("open context", rv);
        }
        if ((rv = nng_aio_alloc(&pool[i].aio, echo_cb, &pool[i])) != 0) {
            die("allocate aio", rv);
        }
        nng_aio_set_timeout(pool[i].aio, NNG_DURATION_INFINITE);
        pool[i].phase = PHASE_RECV;
    }

    nng_listener listener;
    if ((rv = nng_listener_create(&listener, sock, url)) != 0) {
        die("create listener", rv);
    }
    // nng 1.5.2 accepts messages of any size by default: bound it on the listener.
    if ((rv = nng_listener_set_size(listener, NNG_OPT_RECVMAXSZ, (size_t)16 << 20)) != 0) {
        die("set receive limit", rv);
    }
    if ((rv = nng_listener_start(listener, 0)) != 0) {
        die("listen", rv);
    }
    for (int i = 0; i < count; i++) {
        nng_ctx_recv(pool[i].ctx, pool[i].aio);
    }
    printf("listening %s (%d contexts)\n", url, count);
    fflush(stdout);

    while (!stop_requested) {
        sigsuspend(&wait_mask); // returns after the handler ran
    }

    // Closing the socket fails every pending operation with NNG_ECLOSED; the callbacks then stop
    // re-arming. Free the aios here, on the main thread, never from a callback.
    nng_close(sock);
    for (int i = 0; i < count; i++) {
        nng_aio_free(pool[i].aio);
    }
    free(pool);
    return 0;
}
