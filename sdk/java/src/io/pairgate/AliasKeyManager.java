/*
 * A key manager that always presents one alias of one KeyStore, as the
 * seed's terminals do: the client certificate is chosen by the terminal's
 * configuration, never by what the server hints.
 */
package io.pairgate;

import java.net.Socket;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.KeyStore;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedKeyManager;

/**
 * An {@link javax.net.ssl.X509KeyManager} over any {@link KeyStore}
 * (SunPKCS11 or a vendor's PKCS#11 provider, AndroidKeyStore, PKCS12) that
 * always chooses {@code alias}. The private key stays in its provider: the
 * handshake signs with it there, so that provider must be installed
 * ({@link java.security.Security#addProvider}) for JSSE to find it, as a
 * SunPKCS11 provider made with {@code configure} is not by itself.
 */
public final class AliasKeyManager extends X509ExtendedKeyManager {
    private final String alias;
    private final PrivateKey key;
    private final X509Certificate[] chain;

    /**
     * Reads {@code alias}'s key and certificate chain from {@code keyStore}.
     *
     * @param keyPassword the entry's password; null for PKCS#11 and AndroidKeyStore
     * @throws GeneralSecurityException when the alias has no private key or no X.509 chain
     */
    public AliasKeyManager(KeyStore keyStore, String alias, char[] keyPassword)
            throws GeneralSecurityException {
        Key found = keyStore.getKey(alias, keyPassword);
        if (!(found instanceof PrivateKey)) {
            throw new GeneralSecurityException("key store entry " + alias + " has no private key");
        }
        Certificate[] certs = keyStore.getCertificateChain(alias);
        if (certs == null || certs.length == 0) {
            throw new GeneralSecurityException("key store entry " + alias + " has no certificate chain");
        }
        X509Certificate[] x509 = new X509Certificate[certs.length];
        for (int i = 0; i < certs.length; i++) {
            if (!(certs[i] instanceof X509Certificate)) {
                throw new GeneralSecurityException("key store entry " + alias + " holds a non-X.509 certificate");
            }
            x509[i] = (X509Certificate) certs[i];
        }
        this.alias = alias;
        this.key = (PrivateKey) found;
        this.chain = x509;
    }

    /** The alias this manager always chooses. */
    public String alias() {
        return alias;
    }

    /** The leaf certificate presented to the server. */
    public X509Certificate certificate() {
        return chain[0];
    }

    @Override
    public String chooseClientAlias(String[] keyTypes, Principal[] issuers, Socket socket) {
        return alias;
    }

    @Override
    public String chooseEngineClientAlias(String[] keyTypes, Principal[] issuers, SSLEngine engine) {
        return alias;
    }

    @Override
    public String[] getClientAliases(String keyType, Principal[] issuers) {
        return new String[] {alias};
    }

    /** A terminal is never a TLS server: no server alias. */
    @Override
    public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
        return null;
    }

    /** A terminal is never a TLS server: no server alias. */
    @Override
    public String chooseEngineServerAlias(String keyType, Principal[] issuers, SSLEngine engine) {
        return null;
    }

    @Override
    public String[] getServerAliases(String keyType, Principal[] issuers) {
        return null;
    }

    @Override
    public X509Certificate[] getCertificateChain(String name) {
        return alias.equals(name) ? chain.clone() : null;
    }

    @Override
    public PrivateKey getPrivateKey(String name) {
        return alias.equals(name) ? key : null;
    }
}
