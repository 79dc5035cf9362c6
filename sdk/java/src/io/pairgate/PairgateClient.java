/*
 * A terminal's pairing with the gate and its HTTPS to the master, per
 * application: every connection gets this client's own SSLContext (the
 * terminal's alias, the server pins), never the process-wide defaults.
 */
package io.pairgate;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.security.cert.CertificateEncodingException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManager;

/**
 * Pairs a terminal through the gate and opens its connections to the
 * master. One client per state directory; its methods may be called from
 * any thread, and pairings on one client run one at a time.
 */
public final class PairgateClient {
    /** The largest answer read from the gate or the master. */
    private static final int MAX_BODY_BYTES = 1 << 20;

    /** Seconds the gate may hold one long poll. */
    private static final int POLL_WAIT_SECS = 25;

    /** Shows the pairing code: a device draws it on its screen. */
    public interface CodeDisplay {
        /** The code ({@code NNNN-NNNN}) for pairing request {@code requestId}. */
        void showCode(String requestId, String code);
    }

    /** An answer from the master. */
    public static final class Response {
        /** HTTP status. */
        public final int status;
        /** The body as UTF-8 text. */
        public final String body;

        Response(int status, String body) {
            this.status = status;
            this.body = body;
        }
    }

    private final PairgateState state;
    private final AliasKeyManager keyManager;

    /**
     * A client on the state directory {@code stateDir} with the terminal's
     * key and certificate behind {@code keyManager}.
     */
    public PairgateClient(File stateDir, AliasKeyManager keyManager) throws IOException {
        this.state = new PairgateState(stateDir);
        this.keyManager = keyManager;
    }

    /** Whether the terminal is paired. */
    public boolean isPaired() {
        return state.get(PairgateState.MASTER_URL) != null && !state.serverPins().isEmpty();
    }

    /** The master's URL, e.g. {@code https://host:7743}; null before pairing. */
    public String masterUrl() {
        return state.get(PairgateState.MASTER_URL);
    }

    /** The server pins of the paired configuration (empty before pairing). */
    public List<String> serverPins() {
        return state.serverPins();
    }

    /**
     * Pairs through the gate at {@code gate} ({@code host:port}) as
     * {@code serial}: asks, pins the server key seen, reveals the nonce,
     * shows the code through {@code display}, then waits for an operator's
     * decision. A pairing interrupted earlier resumes the same request.
     * Returns at once when already paired.
     *
     * @throws PairgateException when the gate refuses or the request ends unapproved
     */
    public synchronized void pair(String gate, String serial, String model, String firmware, CodeDisplay display)
            throws IOException, GeneralSecurityException {
        if (isPaired()) {
            return;
        }
        String pinnedGate = state.get(PairgateState.GATE);
        if (pinnedGate != null && !pinnedGate.equals(gate)) {
            throw new PairgateException("other-gate", 0, "the server key is pinned for gate " + pinnedGate
                    + ", not " + gate + "; reset the state to trust a new gate");
        }
        String base = "https://" + gate;
        String id = state.get(PairgateState.REQUEST_ID);
        if (id == null || !resume(base, id, display)) {
            id = ask(base, serial, model, firmware, display);
            if (id == null) {
                return;
            }
        }
        waitForDecision(base, id);
    }

    /** Opens a new request; returns its id, or null when the gate says this key is already paired. */
    private String ask(String base, String serial, String model, String firmware, CodeDisplay display)
            throws IOException, GeneralSecurityException {
        byte[] nonce = new byte[32];
        new SecureRandom().nextBytes(nonce);
        String knownPin = state.get(PairgateState.SERVER_PIN);
        PairgateTrustManager trust = knownPin == null
                ? PairgateTrustManager.firstContact()
                : PairgateTrustManager.pinned(java.util.Collections.singletonList(knownPin));
        Map<String, String> hello = new LinkedHashMap<>();
        hello.put("serial", serial);
        hello.put("model", model);
        hello.put("firmware", firmware);
        hello.put("commitment", PairingCode.hex(PairingCode.commitment(nonce)));
        Response r = exchange(context("TLS", trust), "POST", base + "/v1/pairing", Json.object(hello), 30);
        String seen = trust.seenPin();
        if (seen == null) {
            throw new PairgateException("bad-answer", 0, "no server certificate seen");
        }
        Map<String, Object> answer = answerOf(r);
        if (r.status == 200 && "paired".equals(Json.string(answer, "status"))) {
            pin(base, seen);
            savePaired(answer.get("config"), serial);
            return null;
        }
        String id = Json.string(answer, "request_id");
        String serverNonce = Json.string(answer, "server_nonce");
        if (r.status != 202 || id == null || serverNonce == null) {
            throw new PairgateException("bad-answer", r.status, "the gate answered: " + r.body);
        }
        pin(base, seen);
        Map<String, String> reveal = new LinkedHashMap<>();
        reveal.put("terminal_nonce", PairingCode.hex(nonce));
        answerOf(exchange(pinnedContext(), "POST", base + "/v1/pairing/" + id + "/reveal",
                Json.object(reveal), 30));
        // Kept only once revealed: a pairing interrupted before this point
        // asks again, which renews the request.
        state.set(PairgateState.SERIAL, serial);
        state.set(PairgateState.REQUEST_ID, id);
        state.set(PairgateState.TERMINAL_NONCE, PairingCode.hex(nonce));
        state.set(PairgateState.SERVER_NONCE, serverNonce);
        state.save();
        showCode(id, display);
        return id;
    }

    /** Shows the code of a saved request again if the gate still has it open; false otherwise. */
    private boolean resume(String base, String id, CodeDisplay display)
            throws IOException, GeneralSecurityException {
        Response r = exchange(pinnedContext(), "GET", base + "/v1/pairing/" + id, null, 30);
        if (r.status != 200 || !"pending".equals(Json.string(answerOf(r), "status"))) {
            state.clearPending();
            state.save();
            return false;
        }
        showCode(id, display);
        return true;
    }

    private void pin(String base, String seen) {
        state.set(PairgateState.GATE, base.substring("https://".length()));
        state.set(PairgateState.SERVER_PIN, seen);
    }

    private void showCode(String id, CodeDisplay display) throws CertificateEncodingException {
        String code = PairingCode.derive(
                PairingCode.sha256(keyManager.certificate().getEncoded()),
                PairingCode.unhex(state.get(PairgateState.SERVER_PIN)),
                PairingCode.unhex(state.get(PairgateState.TERMINAL_NONCE)),
                PairingCode.unhex(state.get(PairgateState.SERVER_NONCE)));
        display.showCode(id, code);
    }

    private void waitForDecision(String base, String id) throws IOException, GeneralSecurityException {
        SSLContext pinned = pinnedContext();
        while (true) {
            Response r = exchange(pinned, "GET", base + "/v1/pairing/" + id + "?wait=" + POLL_WAIT_SECS, null,
                    POLL_WAIT_SECS + 15);
            Map<String, Object> answer = answerOf(r);
            String status = Json.string(answer, "status");
            if ("pending".equals(status)) {
                continue;
            }
            state.clearPending();
            if ("approved".equals(status)) {
                savePaired(answer.get("config"), state.get(PairgateState.SERIAL));
                return;
            }
            state.save();
            throw new PairgateException(status == null ? "bad-answer" : status, r.status,
                    "pairing request " + id + " was " + status);
        }
    }

    @SuppressWarnings("unchecked")
    private void savePaired(Object config, String serial) throws IOException {
        if (!(config instanceof Map)) {
            throw new PairgateException("bad-answer", 0, "the gate sent no configuration");
        }
        Map<String, Object> c = (Map<String, Object>) config;
        String master = Json.string(c, "master_url");
        Object pins = c.get("server_pins");
        List<String> list = new ArrayList<>();
        if (pins instanceof List) {
            for (Object p : (List<Object>) pins) {
                if (p instanceof String) {
                    list.add((String) p);
                }
            }
        }
        // The protocol's rule: a configuration is used only with an https
        // master and at least one pin.
        if (master == null || !master.startsWith("https://") || list.isEmpty()) {
            throw new PairgateException("bad-answer", 0, "unusable configuration: " + c);
        }
        PairgateTrustManager.pinned(list);
        state.set(PairgateState.MASTER_URL, master);
        state.set(PairgateState.SERVER_PINS, String.join(",", list));
        state.set(PairgateState.SERIAL, serial);
        state.save();
    }

    /** The error body's code and message as an exception; the parsed body otherwise. */
    private static Map<String, Object> answerOf(Response r) throws PairgateException {
        Map<String, Object> body;
        try {
            body = Json.parseObject(r.body);
        } catch (IllegalArgumentException e) {
            throw new PairgateException("bad-answer", r.status, "not JSON (" + e.getMessage() + "): " + r.body);
        }
        if (r.status >= 300) {
            Object error = body.get("error");
            String code = "bad-answer";
            String message = r.body;
            if (error instanceof Map) {
                @SuppressWarnings("unchecked")
                Map<String, Object> e = (Map<String, Object>) error;
                code = String.valueOf(Json.string(e, "code"));
                message = Json.string(e, "message");
            }
            throw new PairgateException(code, r.status, code + ": " + message);
        }
        return body;
    }

    private SSLContext pinnedContext() throws GeneralSecurityException {
        return context("TLS", PairgateTrustManager.pinned(
                java.util.Collections.singletonList(state.get(PairgateState.SERVER_PIN))));
    }

    private SSLContext context(String protocol, TrustManager trust) throws GeneralSecurityException {
        SSLContext context = SSLContext.getInstance(protocol);
        context.init(new KeyManager[] {keyManager}, new TrustManager[] {trust}, null);
        return context;
    }

    /**
     * An SSLContext for the app's own HTTPS to the master: the terminal's
     * alias as client certificate, the paired server pins as the only trust.
     *
     * @param protocol e.g. {@code "TLSv1.2"}, {@code "TLSv1.3"} or {@code "TLS"}
     */
    public SSLContext sslContext(String protocol) throws GeneralSecurityException, IOException {
        Collection<String> pins = state.serverPins();
        if (pins.isEmpty()) {
            throw new PairgateException("not-paired", 0, "the terminal is not paired");
        }
        return context(protocol, PairgateTrustManager.pinned(pins));
    }

    /** {@code sslContext("TLS").getSocketFactory()}. */
    public SSLSocketFactory sslSocketFactory() throws GeneralSecurityException, IOException {
        return sslContext("TLS").getSocketFactory();
    }

    /**
     * Calls the master: {@code method path} with an optional JSON body,
     * over {@code sslContext(protocol)}.
     */
    public Response call(String protocol, String method, String path, String jsonBody)
            throws IOException, GeneralSecurityException {
        String master = masterUrl();
        if (master == null) {
            throw new PairgateException("not-paired", 0, "the terminal is not paired");
        }
        return exchange(sslContext(protocol), method, master.replaceAll("/+$", "") + path, jsonBody, 30);
    }

    /** One HTTPS exchange over {@code context}; any status is an answer. */
    private static Response exchange(SSLContext context, String method, String url, String jsonBody,
            int timeoutSecs) throws IOException {
        HttpsURLConnection conn = (HttpsURLConnection) new URL(url).openConnection();
        conn.setSSLSocketFactory(context.getSocketFactory());
        // The trust manager has already checked the server by its key; the
        // name in its certificate is not what identifies it.
        conn.setHostnameVerifier((host, session) -> true);
        conn.setConnectTimeout(10_000);
        conn.setReadTimeout(timeoutSecs * 1000);
        conn.setRequestMethod(method);
        conn.setUseCaches(false);
        if (jsonBody != null) {
            byte[] bytes = jsonBody.getBytes(StandardCharsets.UTF_8);
            conn.setDoOutput(true);
            conn.setRequestProperty("Content-Type", "application/json");
            conn.setFixedLengthStreamingMode(bytes.length);
            try (OutputStream out = conn.getOutputStream()) {
                out.write(bytes);
            }
        }
        int status = conn.getResponseCode();
        InputStream in = status >= 400 ? conn.getErrorStream() : conn.getInputStream();
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        if (in != null) {
            try (InputStream s = in) {
                byte[] buf = new byte[8192];
                int n;
                while ((n = s.read(buf)) > 0) {
                    if (body.size() + n > MAX_BODY_BYTES) {
                        throw new PairgateException("too-large", status,
                                "the answer from " + url + " is over " + MAX_BODY_BYTES + " bytes");
                    }
                    body.write(buf, 0, n);
                }
            }
        }
        return new Response(status, new String(body.toByteArray(), StandardCharsets.UTF_8));
    }
}
