#define _GNU_SOURCE /* memmem */
/*
 * Exercises libpairgate on a terminal that examples/c/pair_and_call.c has
 * paired: bad arguments, status, a master call with a body, a re-key, a
 * raw mutual-TLS stream, the VPN, factory reset. Prints one line per check; exits 1 at
 * the first that fails.
 *
 *   paired_terminal STATE_DIR KEYSTORE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pairgate.h"

static int check(int ok, const char *what)
{
    const char *message = pairgate_last_error();
    if (!ok) {
        printf("FAILED %s (last error: %s)\n", what, message ? message : "none");
        exit(1);
    }
    printf("ok %s\n", what);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s STATE_DIR KEYSTORE\n", argv[0]);
        return 2;
    }
    pairgate_agent *agent = NULL;

    /* Bad arguments: a status and a message, nothing opened. */
    check(pairgate_agent_open(NULL, argv[2], NULL, &agent) == PAIRGATE_STATUS_INVALID_ARGUMENT
              && agent == NULL && strstr(pairgate_last_error(), "state_dir is NULL") != NULL,
          "NULL state_dir is INVALID_ARGUMENT");
    check(pairgate_agent_open(argv[1], "pkcs11:token=t?pin-value=1234", NULL, &agent)
                  == PAIRGATE_STATUS_KEY_STORE
              && strstr(pairgate_last_error(), "1234") == NULL,
          "a PIN in the URI is refused without echoing it");
    check(pairgate_agent_status(NULL, NULL) == PAIRGATE_STATUS_INVALID_ARGUMENT,
          "NULL agent is INVALID_ARGUMENT");

    check(pairgate_agent_open(argv[1], argv[2], NULL, &agent) == PAIRGATE_STATUS_OK
              && pairgate_last_error() == NULL,
          "open");

    char *status_json = NULL;
    check(pairgate_agent_status(agent, &status_json) == PAIRGATE_STATUS_OK
              && strstr(status_json, "\"paired\":{") != NULL,
          "status is paired");
    printf("status %s\n", status_json);
    pairgate_string_free(status_json);

    uint16_t http_status = 0;
    pairgate_bytes body = {0};
    const char *heartbeat = "{\"firmware\":\"2.0\"}";
    check(pairgate_agent_call(agent, "POST", "/v1/heartbeat", (const uint8_t *)heartbeat,
                              strlen(heartbeat), &http_status, &body)
                  == PAIRGATE_STATUS_OK
              && http_status == 200,
          "POST /v1/heartbeat");
    pairgate_bytes_free(body);
    /* No rotation announced: the pins stay. */
    uint8_t changed = 2;
    check(pairgate_agent_follow_server_keys(agent, &changed) == PAIRGATE_STATUS_OK && changed == 0,
          "follow server keys (none announced)");

    /* Re-key: not due within a day of a ten-year certificate; at once
     * with 0, after which the master knows the terminal by the new key. */
    char *rekeyed = NULL;
    check(pairgate_agent_rekey(agent, 86400, &rekeyed) == PAIRGATE_STATUS_OK
              && strcmp(rekeyed, "null") == 0,
          "rekey not due");
    pairgate_string_free(rekeyed);
    check(pairgate_agent_rekey(agent, 0, &rekeyed) == PAIRGATE_STATUS_OK
              && strstr(rekeyed, "\"previous_fingerprint\":\"") != NULL,
          "rekey");
    printf("rekeyed %s\n", rekeyed);
    const char *fingerprint = strstr(rekeyed, "\"fingerprint\":\"");
    char expected[96] = {0};
    if (fingerprint != NULL) {
        snprintf(expected, sizeof expected, "%.80s", fingerprint);
    }
    pairgate_string_free(rekeyed);
    check(pairgate_agent_call(agent, "GET", "/v1/me", NULL, 0, &http_status, &body)
                  == PAIRGATE_STATUS_OK
              && http_status == 200 && body.len > 0
              && memmem(body.data, body.len, expected, strlen(expected)) != NULL,
          "GET /v1/me with the new key");
    pairgate_bytes_free(body);
    check(pairgate_agent_call(agent, "GET", "/v1/no-such-route", NULL, 0, &http_status, &body)
                  == PAIRGATE_STATUS_OK
              && http_status == 404,
          "a 404 is an answer, not a failure");
    pairgate_bytes_free(body);
    check(pairgate_agent_call(agent, "GET", "v1/me", NULL, 0, &http_status, &body)
              == PAIRGATE_STATUS_INVALID_ARGUMENT,
          "a path without / is INVALID_ARGUMENT");

    /* The firmware's own protocol over the paired connection. */
    pairgate_stream *stream = NULL;
    check(pairgate_agent_connect(agent, &stream) == PAIRGATE_STATUS_OK, "connect");
    const char *request = "GET /v1/me HTTP/1.1\r\nHost: master\r\nConnection: close\r\n\r\n";
    check(pairgate_stream_write(stream, (const uint8_t *)request, strlen(request))
              == PAIRGATE_STATUS_OK,
          "stream write");
    char answer[16384];
    size_t total = 0, got = 0;
    do {
        check(pairgate_stream_read(stream, (uint8_t *)answer + total, sizeof answer - 1 - total,
                                   &got)
                  == PAIRGATE_STATUS_OK,
              "stream read");
        total += got;
    } while (got > 0 && total < sizeof answer - 1);
    answer[total] = '\0';
    check(strncmp(answer, "HTTP/1.1 200", 12) == 0, "the stream carried GET /v1/me");
    printf("stream %s\n", strstr(answer, "\r\n\r\n") ? strstr(answer, "\r\n\r\n") + 4 : answer);
    pairgate_stream_free(stream);

    /* The VPN (the server offers OpenVPN): a new key on the token,
     * certified by the VPN CA, enrolled at the gate; the profile names the
     * key on the token and holds no key. */
    char *vpn_json = NULL;
    check(pairgate_agent_vpn_enrol(agent, 1, &vpn_json) == PAIRGATE_STATUS_OK
              && strstr(vpn_json, "\"enrolled\":true") != NULL
              && strstr(vpn_json, "PRIVATE KEY") == NULL,
          "VPN enrol at the gate");
    pairgate_string_free(vpn_json);
    char vpn_path[4096];
    snprintf(vpn_path, sizeof vpn_path, "%s/vpn.ovpn", argv[1]);
    check(pairgate_agent_vpn_profile(agent, NULL, &vpn_json) == PAIRGATE_STATUS_INVALID_ARGUMENT,
          "NULL out_path is INVALID_ARGUMENT");
    check(pairgate_agent_vpn_profile(agent, vpn_path, &vpn_json) == PAIRGATE_STATUS_OK
              && strstr(vpn_json, "\"type\":\"openvpn\"") != NULL,
          "VPN profile written");
    printf("vpn %s\n", vpn_json);
    pairgate_string_free(vpn_json);

    /* Factory reset: no identity, no pairing. */
    check(pairgate_agent_factory_reset(agent) == PAIRGATE_STATUS_OK, "factory reset");
    check(pairgate_agent_call(agent, "GET", "/v1/me", NULL, 0, &http_status, &body)
              == PAIRGATE_STATUS_NOT_PAIRED,
          "after the reset a call is NOT_PAIRED");
    check(pairgate_agent_connect(agent, &stream) == PAIRGATE_STATUS_NOT_PAIRED,
          "after the reset a stream is NOT_PAIRED");
    pairgate_agent_free(agent);
    printf("done\n");
    return 0;
}
