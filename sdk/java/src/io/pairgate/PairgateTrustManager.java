/*
 * How a terminal trusts the server: by the SPKI pins it keeps (learned at
 * first contact and confirmed by the pairing code, then from the paired
 * configuration), or by a trust store whose every entry is signed by a
 * firmware root. Never by the system's CAs, never by host name.
 */
package io.pairgate;

import java.net.Socket;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.KeyStoreException;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.Enumeration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * An {@link javax.net.ssl.X509TrustManager} for the pairgate server. It is
 * an {@link X509ExtendedTrustManager}, so Java adds no host-name check of
 * its own: the server is known by its key, not its name.
 */
public final class PairgateTrustManager extends X509ExtendedTrustManager {
    private final Set<String> pins;
    private final List<X509Certificate> trusted;
    private final boolean firstContact;
    private volatile String seenPin;

    private PairgateTrustManager(Set<String> pins, List<X509Certificate> trusted, boolean firstContact) {
        this.pins = pins;
        this.trusted = trusted;
        this.firstContact = firstContact;
    }

    /**
     * Accepts a server whose key's SPKI SHA-256 (64 lowercase hex digits) is
     * one of {@code pins}.
     */
    public static PairgateTrustManager pinned(Collection<String> pins) {
        Set<String> set = new LinkedHashSet<>();
        for (String pin : pins) {
            String p = pin.toLowerCase(java.util.Locale.ROOT);
            if (p.length() != 64 || PairingCode.unhex(p).length != 32) {
                throw new IllegalArgumentException("a pin is 64 hex digits: " + pin);
            }
            set.add(p);
        }
        if (set.isEmpty()) {
            throw new IllegalArgumentException("no server pins");
        }
        return new PairgateTrustManager(Collections.unmodifiableSet(set), null, false);
    }

    /**
     * Accepts a server whose certificate is in {@code trustStore} or is
     * signed by a certificate there. Every trust-store certificate must be
     * signed by one of {@code firmwareRoots} (the firmware-roots rule);
     * one that is not is refused here, before any connection.
     */
    public static PairgateTrustManager trustStore(KeyStore trustStore,
            Collection<X509Certificate> firmwareRoots) throws GeneralSecurityException {
        List<X509Certificate> admitted = new ArrayList<>();
        Enumeration<String> aliases = trustStore.aliases();
        while (aliases.hasMoreElements()) {
            String alias = aliases.nextElement();
            Certificate cert = trustStore.getCertificate(alias);
            if (!(cert instanceof X509Certificate)) {
                continue;
            }
            X509Certificate x509 = (X509Certificate) cert;
            if (!signedByOneOf(x509, firmwareRoots)) {
                throw new CertificateException("trust store entry " + alias + " (" + x509.getSubjectX500Principal()
                        + ") is not signed by a firmware root");
            }
            admitted.add(x509);
        }
        if (admitted.isEmpty()) {
            throw new KeyStoreException("the trust store holds no certificate");
        }
        return new PairgateTrustManager(null, Collections.unmodifiableList(admitted), false);
    }

    /**
     * The gate's first contact: any server key is accepted and recorded
     * ({@link #seenPin()}); the pairing code a person compares confirms it.
     */
    static PairgateTrustManager firstContact() {
        return new PairgateTrustManager(null, null, true);
    }

    /** The SPKI pin of the last server key this manager accepted, or null. */
    public String seenPin() {
        return seenPin;
    }

    /** The pins this manager accepts (empty in trust-store mode). */
    public Set<String> pins() {
        return pins == null ? Collections.<String>emptySet() : pins;
    }

    /** The SPKI pin of a certificate's key: lowercase hex SHA-256 of its SubjectPublicKeyInfo. */
    public static String spkiPin(X509Certificate cert) {
        return PairingCode.hex(PairingCode.sha256(cert.getPublicKey().getEncoded()));
    }

    private static boolean signedByOneOf(X509Certificate cert, Collection<X509Certificate> issuers) {
        for (X509Certificate issuer : issuers) {
            if (!issuer.getSubjectX500Principal().equals(cert.getIssuerX500Principal())) {
                continue;
            }
            try {
                cert.verify(issuer.getPublicKey());
                return true;
            } catch (GeneralSecurityException e) {
                // Not this one.
            }
        }
        return false;
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        if (chain == null || chain.length == 0) {
            throw new CertificateException("the server sent no certificate");
        }
        X509Certificate leaf = chain[0];
        String pin = spkiPin(leaf);
        if (firstContact) {
            seenPin = pin;
            return;
        }
        if (pins != null) {
            if (!pins.contains(pin)) {
                throw new CertificateException("the server's key " + pin + " is not the pinned key "
                        + String.join(" or ", pins) + "; refusing the connection");
            }
            seenPin = pin;
            return;
        }
        leaf.checkValidity();
        for (X509Certificate t : trusted) {
            if (Arrays.equals(t.getEncoded(), leaf.getEncoded())) {
                seenPin = pin;
                return;
            }
        }
        if (!signedByOneOf(leaf, trusted)) {
            throw new CertificateException("the server's certificate (" + leaf.getSubjectX500Principal()
                    + ", key " + pin + ") is neither in the trust store nor signed by an entry there");
        }
        seenPin = pin;
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket)
            throws CertificateException {
        checkServerTrusted(chain, authType);
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine)
            throws CertificateException {
        checkServerTrusted(chain, authType);
    }

    /** A terminal never accepts TLS clients. */
    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
        throw new CertificateException("a terminal's trust manager does not accept clients");
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket)
            throws CertificateException {
        checkClientTrusted(chain, authType);
    }

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine)
            throws CertificateException {
        checkClientTrusted(chain, authType);
    }

    @Override
    public X509Certificate[] getAcceptedIssuers() {
        return new X509Certificate[0];
    }
}
