/*
 * Checks run on a terminal that examples/java/PairAndCall.java has paired,
 * against the real server: the key is not extractable, the master answers
 * through SSLContext.getInstance("TLSv1.2") and ("TLSv1.3") with the
 * library's managers (each session really uses that version), and a server
 * with another key is refused by the trust manager naming both pins.
 * Prints one line per check; exits 1 at the first failure.
 *
 *   java -cp classes:. MasterChecks STATE_DIR KEYSTORE OTHER_HOST:PORT
 */
import io.pairgate.AliasKeyManager;
import io.pairgate.PairgateClient;
import java.io.File;
import java.security.Key;
import java.security.KeyStore;
import java.security.Provider;
import java.security.Security;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLHandshakeException;
import javax.net.ssl.SSLSocket;

public final class MasterChecks {
    private static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAILED " + what);
            System.exit(1);
        }
        System.out.println("ok " + what);
    }

    public static void main(String[] args) throws Exception {
        Provider pkcs11 = Security.getProvider("SunPKCS11").configure(args[1]);
        // Installed so that the TLS handshake can sign with the token's key.
        Security.addProvider(pkcs11);
        KeyStore token = KeyStore.getInstance("PKCS11", pkcs11);
        token.load(null, System.getenv("PAIRGATE_PKCS11_PIN").toCharArray());
        Key key = token.getKey("terminal", null);
        check(key.getEncoded() == null && key.toString().contains("unextractable")
                && key.toString().contains("token object"), "the key is a non-extractable token object: " + key);

        PairgateClient client = new PairgateClient(new File(args[0]), new AliasKeyManager(token, "terminal", null));
        java.net.URL master = new java.net.URL(client.masterUrl());
        for (String protocol : new String[] {"TLSv1.2", "TLSv1.3"}) {
            SSLContext context = client.sslContext(protocol);
            try (SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket(master.getHost(),
                    master.getPort())) {
                socket.startHandshake();
                check(protocol.equals(socket.getSession().getProtocol()),
                        protocol + " negotiated " + socket.getSession().getProtocol());
            }
            PairgateClient.Response me = client.call(protocol, "GET", "/v1/me", null);
            check(me.status == 200 && me.body.contains("\"serial\""), "GET /v1/me over " + protocol + ": " + me.body);
        }

        // The same pins against a server with another key: refused.
        String[] other = args[2].split(":");
        try (SSLSocket socket = (SSLSocket) client.sslSocketFactory().createSocket(other[0],
                Integer.parseInt(other[1]))) {
            socket.startHandshake();
            check(false, "a server with another key was accepted");
        } catch (SSLHandshakeException e) {
            Throwable cause = e;
            while (cause.getCause() != null) {
                cause = cause.getCause();
            }
            System.out.println("refused: " + cause.getMessage());
            check(cause.getMessage().contains(client.serverPins().get(0)), "the refusal names the pinned key");
        }
        System.out.println("done");
    }
}
