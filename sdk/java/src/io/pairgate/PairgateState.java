/*
 * The terminal's small state file: the gate and its pinned key, a pairing
 * in progress, and the paired configuration. Written atomically, 0600.
 */
package io.pairgate;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Properties;

/** Pins, a pairing in progress, and the paired configuration, in a properties file. */
final class PairgateState {
    static final String GATE = "gate";
    static final String SERVER_PIN = "server_pin";
    static final String REQUEST_ID = "request_id";
    static final String TERMINAL_NONCE = "terminal_nonce";
    static final String SERVER_NONCE = "server_nonce";
    static final String SERIAL = "serial";
    static final String MASTER_URL = "master_url";
    static final String SERVER_PINS = "server_pins";

    private final File file;
    private final Properties values = new Properties();

    /** The state in {@code dir} (created if missing). */
    PairgateState(File dir) throws IOException {
        if (!dir.isDirectory() && !dir.mkdirs()) {
            throw new IOException("cannot create the state directory " + dir);
        }
        this.file = new File(dir, "pairgate.properties");
        if (file.exists()) {
            try (InputStream in = new FileInputStream(file)) {
                values.load(in);
            }
        }
    }

    String get(String key) {
        return values.getProperty(key);
    }

    void set(String key, String value) {
        if (value == null) {
            values.remove(key);
        } else {
            values.setProperty(key, value);
        }
    }

    /** The paired server pins (empty when not paired). */
    List<String> serverPins() {
        String joined = get(SERVER_PINS);
        return joined == null || joined.isEmpty()
                ? Collections.<String>emptyList()
                : Arrays.asList(joined.split(","));
    }

    /** Forgets the pairing in progress. */
    void clearPending() {
        set(REQUEST_ID, null);
        set(TERMINAL_NONCE, null);
        set(SERVER_NONCE, null);
    }

    /** Writes the state: a new file renamed over the old, readable by its owner only. */
    void save() throws IOException {
        File tmp = new File(file.getParentFile(), file.getName() + ".tmp");
        try (OutputStream out = new FileOutputStream(tmp)) {
            values.store(out, "pairgate terminal state");
        }
        try {
            Files.setPosixFilePermissions(tmp.toPath(),
                    EnumSet.of(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE));
        } catch (UnsupportedOperationException e) {
            // Not a POSIX file system (the app's private storage on Android is already private).
        }
        Files.move(tmp.toPath(), file.toPath(), StandardCopyOption.REPLACE_EXISTING,
                StandardCopyOption.ATOMIC_MOVE);
    }
}
