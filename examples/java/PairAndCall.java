/*
 * PairAndCall: pairs a terminal with a pairgate server using only the
 * pairgate Java library, its key made non-extractable in a PKCS#11 token
 * through SunPKCS11, then prints the master's answer to GET /v1/me.
 *
 *   java -cp sdk.jar:. PairAndCall STATE_DIR KEYSTORE GATE_HOST:PORT SERIAL
 *
 * KEYSTORE is a SunPKCS11 configuration file; the token's PIN is in
 * PAIRGATE_PKCS11_PIN. The configuration should make generated private
 * keys non-extractable, e.g.
 *
 *   name = pairgate
 *   library = /usr/lib/softhsm/libsofthsm2.so
 *   slot = 0
 *   attributes(generate, CKO_PRIVATE_KEY, *) = {
 *     CKA_SENSITIVE = true
 *     CKA_EXTRACTABLE = false
 *   }
 *
 * Prints the pairing code on a line of its own ("code NNNN-NNNN") as soon
 * as it has one, waits for approval, then prints the GET /v1/me body.
 * Build: see sdk/java/README.md. (Provider.configure needs Java 9; on Java 8
 * or Android, construct the vendor's PKCS#11 provider instead.)
 */
import io.pairgate.AliasKeyManager;
import io.pairgate.PairgateClient;
import io.pairgate.TerminalIdentity;
import java.io.File;
import java.security.KeyStore;
import java.security.Provider;
import java.security.Security;

public final class PairAndCall {
    private static final String ALIAS = "terminal";

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: PairAndCall STATE_DIR KEYSTORE GATE_HOST:PORT SERIAL");
            System.exit(2);
        }
        String pin = System.getenv("PAIRGATE_PKCS11_PIN");
        if (pin == null) {
            System.err.println("set PAIRGATE_PKCS11_PIN to the token's PIN");
            System.exit(2);
        }
        Provider pkcs11 = Security.getProvider("SunPKCS11").configure(args[1]);
        // Installed so that the TLS handshake can sign with the token's key.
        Security.addProvider(pkcs11);
        KeyStore token = KeyStore.getInstance("PKCS11", pkcs11);
        token.load(null, pin.toCharArray());
        if (!token.isKeyEntry(ALIAS)) {
            TerminalIdentity.create(token, pkcs11, ALIAS, null, args[3], 3650);
            System.err.println("made the terminal key in the token");
        }
        PairgateClient client = new PairgateClient(new File(args[0]), new AliasKeyManager(token, ALIAS, null));
        client.pair(args[2], args[3], "java-example", "1.0", (requestId, code) -> {
            System.out.println("code " + code);
            System.out.flush();
            System.err.println("pairing request " + requestId + ": read the code to the operator");
        });
        PairgateClient.Response me = client.call("TLSv1.3", "GET", "/v1/me", null);
        System.err.println("master answered " + me.status);
        System.out.println(me.body);
        System.exit(me.status == 200 ? 0 : 1);
    }
}
