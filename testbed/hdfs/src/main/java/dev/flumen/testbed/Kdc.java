package dev.flumen.testbed;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Properties;

import org.apache.hadoop.minikdc.MiniKdc;
import org.apache.kerby.kerberos.kerb.common.EncryptionUtil;
import org.apache.kerby.kerberos.kerb.keytab.Keytab;
import org.apache.kerby.kerberos.kerb.keytab.KeytabEntry;
import org.apache.kerby.kerberos.kerb.server.KdcConfig;
import org.apache.kerby.kerberos.kerb.type.KerberosTime;
import org.apache.kerby.kerberos.kerb.type.base.EncryptionKey;
import org.apache.kerby.kerberos.kerb.type.base.PrincipalName;

/**
 * The KDC of the secure testbed: Hadoop's MiniKdc (Apache Kerby) on 127.0.0.1, TCP only, in a
 * JVM of its own, so the Kerberized MiniDFSCluster is a plain Kerberos client of it (as in
 * production) and restarting the NameNode never touches the KDC.
 *
 * <pre>
 * java ... dev.flumen.testbed.Kdc --work DIR --keytab-dir DIR --port P --realm FLUMEN.TEST --seed FILE
 * </pre>
 *
 * Creates the principals and, where missing, writes one keytab per job into --keytab-dir,
 * mode 0600: {@code hdfs.keytab} (hdfs/localhost and HTTP/localhost, for the servers),
 * {@code kafka.keytab} (kafka/localhost, for the brokers' Kerberos listener),
 * {@code flumen.keytab} (only flumen) and {@code intruder.keytab} (only intruder). Then prints
 * one line starting with {@code FLUMEN-KDC READY} and serves until SIGTERM. Each principal's
 * password is derived from the secret in --seed, so a KDC started again on the same seed has
 * the same keys and the keytabs already handed out stay valid (a KDC outage, not a new realm).
 */
public final class Kdc {

    private static final String READY = "FLUMEN-KDC READY";

    private Kdc() {
    }

    public static void main(String[] argv) throws Exception {
        Args a = Args.parse(argv);
        String realm = a.require("realm");
        int dot = realm.indexOf('.');
        if (dot < 1 || !realm.equals(realm.toUpperCase(java.util.Locale.ROOT))) {
            throw new IllegalArgumentException("--realm must look like FLUMEN.TEST, got " + realm);
        }
        Path keytabDir = Paths.get(a.require("keytab-dir"));
        File work = new File(a.require("work"));
        Files.createDirectories(work.toPath());

        Properties conf = MiniKdc.createConf();
        conf.setProperty(MiniKdc.ORG_NAME, realm.substring(0, dot));
        conf.setProperty(MiniKdc.ORG_DOMAIN, realm.substring(dot + 1));
        conf.setProperty(MiniKdc.KDC_BIND_ADDRESS, "127.0.0.1");
        conf.setProperty(MiniKdc.KDC_PORT, a.require("port"));
        conf.setProperty(MiniKdc.TRANSPORT, "TCP");
        // Kerby refuses tickets shorter than an hour by default; tests ask for ~2 minutes.
        conf.setProperty(MiniKdc.MIN_TICKET_LIFETIME, "1");
        MiniKdc kdc = new MiniKdc(conf, work);
        kdc.start();
        Runtime.getRuntime().addShutdownHook(new Thread(kdc::stop, "flumen-kdc-shutdown"));

        byte[] seed = Files.readAllBytes(Paths.get(a.require("seed")));
        Principals p = new Principals(kdc, seed, keytabDir);
        p.create("hdfs.keytab", "hdfs/localhost", "HTTP/localhost");
        p.create("kafka.keytab", "kafka/localhost");
        p.create("flumen.keytab", "flumen");
        p.create("intruder.keytab", "intruder");

        System.out.println(READY + " realm=" + kdc.getRealm() + " kdc=127.0.0.1:" + kdc.getPort()
                + " keytabs=" + keytabDir + " pid=" + ProcessHandle.current().pid());
        System.out.flush();
        Thread.currentThread().join();
    }

    /** Principals with passwords derived from a seed, and their keytabs. */
    private static final class Principals {
        private final MiniKdc kdc;
        private final byte[] seed;
        private final Path dir;

        Principals(MiniKdc kdc, byte[] seed, Path dir) {
            this.kdc = kdc;
            this.seed = seed;
            this.dir = dir;
        }

        /** Creates the principals in the KDC; writes NAME (only those, 0600) if it is missing. */
        void create(String name, String... principals) throws Exception {
            Keytab keytab = new Keytab();
            for (String principal : principals) {
                String password = password(principal);
                kdc.createPrincipal(principal, password);
                keytab.addKeytabEntries(entries(principal + "@" + kdc.getRealm(), password));
            }
            Path target = dir.resolve(name);
            if (Files.exists(target)) {
                return;
            }
            Path staging = dir.resolve(".staging");
            Files.createDirectories(staging,
                    PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            Path tmp = staging.resolve(name);
            Files.deleteIfExists(tmp);
            Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
            keytab.store(tmp.toFile());
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
        }

        /** The same keys the KDC derives from the password (its default encryption types). */
        private static List<KeytabEntry> entries(String principal, String password) throws Exception {
            List<KeytabEntry> out = new ArrayList<>();
            KerberosTime now = KerberosTime.now();
            for (EncryptionKey key : EncryptionUtil.generateKeys(principal, password,
                    new KdcConfig().getEncryptionTypes())) {
                out.add(new KeytabEntry(new PrincipalName(principal), now, key.getKvno(), key));
            }
            return out;
        }

        private String password(String principal) throws Exception {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(seed);
            sha.update(principal.getBytes(StandardCharsets.UTF_8));
            return Base64.getEncoder().encodeToString(sha.digest());
        }
    }
}
