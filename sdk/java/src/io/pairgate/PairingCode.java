/*
 * The pairing code and the commitment of docs/protocol.md ("Pairing",
 * step 3), and the hex and SHA-256 helpers the protocol's fingerprints use.
 */
package io.pairgate;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/** The pairing code both sides derive, and the byte helpers it needs. */
public final class PairingCode {
    private static final byte[] LABEL = "pairgate pairing code v1".getBytes(StandardCharsets.US_ASCII);

    private PairingCode() {
    }

    /**
     * The code shown as {@code NNNN-NNNN}: the first 8 bytes of
     * SHA-256("pairgate pairing code v1" ‖ 0x00 ‖ terminalCertFp ‖
     * serverSpkiFp ‖ terminalNonce ‖ serverNonce) as a big-endian unsigned
     * number, mod 10^8. Each input is 32 bytes.
     */
    public static String derive(byte[] terminalCertFp, byte[] serverSpkiFp, byte[] terminalNonce,
            byte[] serverNonce) {
        for (byte[] part : new byte[][] {terminalCertFp, serverSpkiFp, terminalNonce, serverNonce}) {
            if (part.length != 32) {
                throw new IllegalArgumentException("each pairing code input is 32 bytes");
            }
        }
        MessageDigest sha = sha256();
        sha.update(LABEL);
        sha.update((byte) 0);
        sha.update(terminalCertFp);
        sha.update(serverSpkiFp);
        sha.update(terminalNonce);
        sha.update(serverNonce);
        byte[] h = sha.digest();
        long first = 0;
        for (int i = 0; i < 8; i++) {
            first = (first << 8) | (h[i] & 0xff);
        }
        long code = Long.remainderUnsigned(first, 100_000_000L);
        return String.format("%04d-%04d", code / 10_000, code % 10_000);
    }

    /** The commitment to a terminal nonce: SHA-256 of its bytes. */
    public static byte[] commitment(byte[] terminalNonce) {
        return sha256(terminalNonce);
    }

    /** SHA-256 of {@code bytes}. */
    public static byte[] sha256(byte[] bytes) {
        return sha256().digest(bytes);
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("this Java has no SHA-256", e);
        }
    }

    /** Lowercase hex of {@code bytes}. */
    public static String hex(byte[] bytes) {
        StringBuilder out = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            out.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
        }
        return out.toString();
    }

    /**
     * The bytes of a hex string.
     *
     * @throws IllegalArgumentException when it is not an even number of hex digits
     */
    public static byte[] unhex(String hex) {
        if (hex.length() % 2 != 0) {
            throw new IllegalArgumentException("odd number of hex digits");
        }
        byte[] out = new byte[hex.length() / 2];
        for (int i = 0; i < out.length; i++) {
            int hi = Character.digit(hex.charAt(2 * i), 16);
            int lo = Character.digit(hex.charAt(2 * i + 1), 16);
            if (hi < 0 || lo < 0) {
                throw new IllegalArgumentException("not hex: " + hex);
            }
            out[i] = (byte) ((hi << 4) | lo);
        }
        return out;
    }
}
