package dev.flumen.testbed;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Command-line options of the testbed launchers: {@code --key value} pairs, and bare
 * {@code --flag}s (an option followed by another option or by nothing).
 */
final class Args {

    private final Map<String, String> values;

    private Args(Map<String, String> values) {
        this.values = values;
    }

    static Args parse(String[] argv) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || argv[i].length() < 3) {
                throw new IllegalArgumentException("unexpected argument: " + argv[i]);
            }
            String key = argv[i].substring(2);
            boolean hasValue = i + 1 < argv.length && !argv[i + 1].startsWith("--");
            m.put(key, hasValue ? argv[++i] : null);
        }
        return new Args(m);
    }

    boolean flag(String key) {
        if (!values.containsKey(key)) {
            return false;
        }
        if (values.get(key) != null) {
            throw new IllegalArgumentException("--" + key + " takes no value");
        }
        return true;
    }

    String get(String key) {
        return values.get(key);
    }

    String getOrDefault(String key, String dflt) {
        String v = values.get(key);
        return v == null ? dflt : v;
    }

    String require(String key) {
        String v = values.get(key);
        if (v == null) {
            throw new IllegalArgumentException("missing --" + key + " VALUE");
        }
        return v;
    }
}
