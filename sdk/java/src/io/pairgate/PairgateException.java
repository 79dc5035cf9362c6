/*
 * A pairgate protocol failure with its stable code.
 */
package io.pairgate;

import java.io.IOException;

/**
 * The gate or master refused (with its {@code PG-…} code and HTTP status),
 * or the pairing ended without approval.
 */
public final class PairgateException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String code;
    private final int httpStatus;

    /**
     * @param code a protocol error code ({@code PG-…}), or one of this
     *     library's: {@code rejected}, {@code expired}, {@code superseded},
     *     {@code bad-answer}, {@code other-gate}, {@code not-paired},
     *     {@code too-large}
     * @param httpStatus the HTTP status, or 0 when none
     */
    public PairgateException(String code, int httpStatus, String message) {
        super(message);
        this.code = code;
        this.httpStatus = httpStatus;
    }

    /** The stable code. */
    public String code() {
        return code;
    }

    /** The HTTP status, or 0. */
    public int httpStatus() {
        return httpStatus;
    }
}
