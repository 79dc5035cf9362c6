/*
 * pair_and_call: pairs a terminal with a pairgate server through libpairgate
 * and calls the master.
 *
 *   pair_and_call STATE_DIR KEYSTORE GATE_HOST:PORT SERIAL
 *
 * KEYSTORE is a key store URI: pkcs11:token=…?module-path=…&pin-source=file:…
 * (an HSM), or file:/dir (the software store, its passphrase in
 * PAIRGATE_KEYSTORE_PASSPHRASE). Prints the pairing code on a line of its
 * own ("code NNNN-NNNN") as soon as it has one, waits for an operator to
 * approve it, then prints the master's answer to GET /v1/me.
 *
 * Build (from the repository root):
 *   cargo build --release -p pairgate-ffi
 *   gcc -Wall -Wextra -Icrates/ffi/include examples/c/pair_and_call.c \
 *       -Ltarget/release -lpairgate -o pair_and_call
 *   LD_LIBRARY_PATH=target/release ./pair_and_call ./t "$KEYSTORE" server:7741 ATM-0042
 */
#include <stdio.h>
#include <stdlib.h>

#include "pairgate.h"

/* Reports a failed call with its status and message; returns 1. */
static int failed(const char *what, pairgate_status status)
{
    const char *message = pairgate_last_error();
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)status,
            message ? message : "no message");
    return 1;
}

/* The terminal's screen: here, standard output. */
static void show_code(void *user_data, const char *request_id, const char *code)
{
    (void)user_data;
    printf("code %s\n", code);
    fflush(stdout);
    fprintf(stderr, "pairing request %s: read the code to the operator\n", request_id);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s STATE_DIR KEYSTORE GATE_HOST:PORT SERIAL\n", argv[0]);
        return 2;
    }
    pairgate_agent *agent = NULL;
    pairgate_status status = pairgate_agent_open(argv[1], argv[2], NULL, &agent);
    if (status != PAIRGATE_STATUS_OK) {
        return failed("opening the agent", status);
    }
    int exit_code = 1;
    char *fingerprint = NULL;
    status = pairgate_agent_init(agent, NULL, &fingerprint);
    if (status != PAIRGATE_STATUS_OK) {
        failed("making the identity", status);
        goto done;
    }
    fprintf(stderr, "terminal fingerprint %s\n", fingerprint);
    pairgate_string_free(fingerprint);

    status = pairgate_agent_pair(agent, argv[3], argv[4], "example", "1.0", 0, show_code,
                                 NULL, NULL);
    if (status != PAIRGATE_STATUS_OK) {
        failed("pairing", status);
        goto done;
    }

    uint16_t http_status = 0;
    pairgate_bytes body = {0};
    status = pairgate_agent_call(agent, "GET", "/v1/me", NULL, 0, &http_status, &body);
    if (status != PAIRGATE_STATUS_OK) {
        failed("calling the master", status);
        goto done;
    }
    fprintf(stderr, "master answered %u\n", (unsigned)http_status);
    fwrite(body.data, 1, body.len, stdout);
    printf("\n");
    pairgate_bytes_free(body);
    exit_code = http_status == 200 ? 0 : 1;

done:
    pairgate_agent_free(agent);
    return exit_code;
}
