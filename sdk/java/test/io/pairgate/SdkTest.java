/*
 * The Java SDK's unit tests, run by scripts/test through the Rust test
 * suite with the JDK alone (no JUnit jar needed): a plain runner that runs
 * every method named test*, reports each, and exits 1 if any failed.
 *
 *   java -cp classes io.pairgate.SdkTest crates/pki/tests/vectors/pairing-code-v1.json
 */
package io.pairgate;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.util.Arrays;
import java.util.Calendar;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TimeZone;

/** Unit tests of the SDK. */
public final class SdkTest {
    private static String vectorsPath;

    public static void main(String[] args) throws Exception {
        vectorsPath = args[0];
        int failed = 0;
        int passed = 0;
        for (Method m : SdkTest.class.getDeclaredMethods()) {
            if (!m.getName().startsWith("test")) {
                continue;
            }
            try {
                m.invoke(null);
                passed++;
                System.out.println("ok " + m.getName());
            } catch (InvocationTargetException e) {
                failed++;
                System.out.println("FAILED " + m.getName() + ": " + e.getCause());
                e.getCause().printStackTrace(System.out);
            }
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    private static KeyPair ecKey() throws Exception {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
        g.initialize(new ECGenParameterSpec("secp256r1"));
        return g.generateKeyPair();
    }

    @SuppressWarnings("unchecked")
    static void testPairingCodeVectorsFromTheRepository() throws Exception {
        String text = new String(Files.readAllBytes(Paths.get(vectorsPath)), StandardCharsets.UTF_8);
        List<Object> vectors = (List<Object>) Json.parseObject(text).get("vectors");
        check(vectors.size() >= 5, "vectors read: " + vectors.size());
        for (Object o : vectors) {
            Map<String, Object> v = (Map<String, Object>) o;
            String code = PairingCode.derive(
                    PairingCode.unhex(Json.string(v, "terminal_cert_fp")),
                    PairingCode.unhex(Json.string(v, "server_spki_fp")),
                    PairingCode.unhex(Json.string(v, "terminal_nonce")),
                    PairingCode.unhex(Json.string(v, "server_nonce")));
            check(code.equals(Json.string(v, "code")), Json.string(v, "description") + ": " + code);
            String commitment = PairingCode.hex(PairingCode.commitment(
                    PairingCode.unhex(Json.string(v, "terminal_nonce"))));
            check(commitment.equals(Json.string(v, "terminal_commitment")), "commitment of " + v);
        }
    }

    static void testPairingCodeInputsAre32Bytes() {
        try {
            PairingCode.derive(new byte[31], new byte[32], new byte[32], new byte[32]);
            check(false, "a 31-byte input was taken");
        } catch (IllegalArgumentException expected) {
            // refused
        }
    }

    @SuppressWarnings("unchecked")
    static void testJsonReadsTheProtocolAndRefusesTheRest() {
        Map<String, Object> o = Json.parseObject(
                "{\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\\"\\u00e9\\n\", \"o\": {}}");
        check(((List<Object>) o.get("a")).size() == 5, "array");
        check("x\"\u00e9\n".equals(o.get("s")), "escapes");
        check(((Map<String, Object>) o.get("o")).isEmpty(), "empty object");
        for (String bad : new String[] {"{} x", "{\"a\" 1}", "[1,]", "\"\\q\"", "{\"a\":tru}", "", "\"a"}) {
            try {
                Json.parse(bad);
                check(false, "accepted " + bad);
            } catch (IllegalArgumentException expected) {
                // refused
            }
        }
        StringBuilder deep = new StringBuilder();
        for (int i = 0; i < 1000; i++) {
            deep.append('[');
        }
        try {
            Json.parse(deep.toString());
            check(false, "accepted 1000 nested arrays");
        } catch (IllegalArgumentException expected) {
            check(expected.getMessage().contains("deeply"), expected.getMessage());
        }
        Map<String, String> fields = new java.util.LinkedHashMap<>();
        fields.put("serial", "A\"\\\u0001");
        fields.put("model", null);
        check(Json.object(fields).equals("{\"serial\":\"A\\\"\\\\\\u0001\"}"), Json.object(fields));
        check("A\"\\\u0001".equals(Json.string(Json.parseObject(Json.object(fields)), "serial")), "round trip");
    }

    static void testSelfSignedCertificateIsATerminalCertificate() throws Exception {
        KeyPair pair = ecKey();
        X509Certificate cert = TerminalIdentity.selfSigned(pair, "ATM-0042", 30);
        cert.verify(pair.getPublic());
        cert.checkValidity();
        check(cert.getBasicConstraints() == -1, "CA:FALSE");
        check(cert.getKeyUsage()[0] && !cert.getKeyUsage()[5], "digitalSignature only");
        check(cert.getExtendedKeyUsage().equals(Collections.singletonList("1.3.6.1.5.5.7.3.2")), "clientAuth");
        check(cert.getSubjectX500Principal().getName().equals("CN=ATM-0042"), cert.getSubjectX500Principal().getName());
        check(cert.getSigAlgName().equals("SHA256withECDSA"), cert.getSigAlgName());
        check(cert.getCriticalExtensionOIDs().containsAll(Arrays.asList("2.5.29.19", "2.5.29.15")), "critical");
        // After 2049 the validity is a GeneralizedTime, still read back.
        X509Certificate far = TerminalIdentity.selfSigned(pair, "far", 40_000);
        Calendar c = Calendar.getInstance(TimeZone.getTimeZone("UTC"));
        c.setTime(far.getNotAfter());
        check(c.get(Calendar.YEAR) > 2050, "year " + c.get(Calendar.YEAR));
    }

    static void testAliasKeyManagerAlwaysChoosesItsAlias() throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(null, null);
        char[] pw = "pw".toCharArray();
        X509Certificate mine = TerminalIdentity.create(ks, null, "terminal", pw, "mine", 30);
        TerminalIdentity.create(ks, null, "other", pw, "other", 30);
        AliasKeyManager km = new AliasKeyManager(ks, "terminal", pw);
        check("terminal".equals(km.chooseClientAlias(new String[] {"RSA"}, null, null)), "client alias");
        check("terminal".equals(km.chooseEngineClientAlias(new String[] {"EC"}, null, null)), "engine alias");
        check(km.getCertificateChain("terminal")[0].equals(mine), "chain");
        check(km.getPrivateKey("other") == null && km.getCertificateChain("other") == null, "other alias hidden");
        check(km.chooseServerAlias("EC", null, null) == null, "never a server");
        try {
            new AliasKeyManager(ks, "missing", pw);
            check(false, "a missing alias was taken");
        } catch (java.security.GeneralSecurityException expected) {
            check(expected.getMessage().contains("missing"), expected.getMessage());
        }
    }

    static void testPinnedTrustAcceptsThePinAndNamesBothOtherwise() throws Exception {
        X509Certificate server = TerminalIdentity.selfSigned(ecKey(), "server", 30);
        X509Certificate other = TerminalIdentity.selfSigned(ecKey(), "server", 30);
        String pin = PairgateTrustManager.spkiPin(server);
        PairgateTrustManager tm = PairgateTrustManager.pinned(Collections.singletonList(pin.toUpperCase()));
        tm.checkServerTrusted(new X509Certificate[] {server}, "ECDHE_ECDSA");
        check(pin.equals(tm.seenPin()), "seen pin");
        try {
            tm.checkServerTrusted(new X509Certificate[] {other}, "ECDHE_ECDSA");
            check(false, "another key was trusted");
        } catch (CertificateException e) {
            String otherPin = PairgateTrustManager.spkiPin(other);
            check(e.getMessage().contains(pin) && e.getMessage().contains(otherPin), e.getMessage());
        }
        try {
            tm.checkClientTrusted(new X509Certificate[] {server}, "EC");
            check(false, "a client was trusted");
        } catch (CertificateException expected) {
            // refused
        }
        for (List<String> bad : Arrays.asList(Collections.<String>emptyList(), Collections.singletonList("abc"))) {
            try {
                PairgateTrustManager.pinned(bad);
                check(false, "pins " + bad + " taken");
            } catch (IllegalArgumentException expected) {
                // refused
            }
        }
    }

    static void testTrustStoreModeFollowsTheFirmwareRootsRule() throws Exception {
        KeyPair rootKey = ecKey();
        X509Certificate root = TerminalIdentity.certificate(rootKey.getPublic(), "firmware root", "firmware root",
                rootKey.getPrivate(), null, true, 365);
        KeyPair acquirerKey = ecKey();
        X509Certificate acquirer = TerminalIdentity.certificate(acquirerKey.getPublic(), "acquirer CA",
                "firmware root", rootKey.getPrivate(), null, true, 365);
        KeyPair serverKey = ecKey();
        X509Certificate server = TerminalIdentity.certificate(serverKey.getPublic(), "server", "acquirer CA",
                acquirerKey.getPrivate(), null, false, 30);
        X509Certificate stranger = TerminalIdentity.selfSigned(ecKey(), "server", 30);

        KeyStore trusted = KeyStore.getInstance("PKCS12");
        trusted.load(null, null);
        trusted.setCertificateEntry("acquirer", acquirer);
        PairgateTrustManager tm = PairgateTrustManager.trustStore(trusted, Collections.singletonList(root));
        tm.checkServerTrusted(new X509Certificate[] {server, acquirer}, "ECDHE_ECDSA");
        tm.checkServerTrusted(new X509Certificate[] {acquirer}, "ECDHE_ECDSA");
        try {
            tm.checkServerTrusted(new X509Certificate[] {stranger}, "ECDHE_ECDSA");
            check(false, "a stranger was trusted");
        } catch (CertificateException e) {
            check(e.getMessage().contains("trust store"), e.getMessage());
        }
        // An entry no firmware root signed is refused before any connection.
        trusted.setCertificateEntry("stranger", stranger);
        try {
            PairgateTrustManager.trustStore(trusted, Collections.singletonList(root));
            check(false, "an entry without a firmware root was admitted");
        } catch (CertificateException e) {
            check(e.getMessage().contains("stranger") && e.getMessage().contains("firmware root"), e.getMessage());
        }
    }
}
