package dev.flumen.testbed;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Properties;

import org.apache.hadoop.minikdc.MiniKdc;

/**
 * The KDC of the secure testbed: Hadoop's MiniKdc (Apache Kerby) on 127.0.0.1, TCP only, in a
 * JVM of its own, so the Kerberized MiniDFSCluster is a plain Kerberos client of it (as in
 * production) and restarting the NameNode never touches the KDC.
 *
 * <pre>
 * java ... dev.flumen.testbed.Kdc --work DIR --keytab-dir DIR --port P --realm FLUMEN.TEST
 * </pre>
 *
 * Creates the principals with random keys and writes one keytab per job into --keytab-dir,
 * mode 0600: {@code hdfs.keytab} (hdfs/localhost and HTTP/localhost, for the servers),
 * {@code flumen.keytab} (only flumen) and {@code intruder.keytab} (only intruder). Then prints
 * one line starting with {@code FLUMEN-KDC READY} and serves until SIGTERM. The keys live in
 * memory only: a new KDC means new keytabs.
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

        writeKeytab(kdc, keytabDir, "hdfs.keytab", "hdfs/localhost", "HTTP/localhost");
        writeKeytab(kdc, keytabDir, "flumen.keytab", "flumen");
        writeKeytab(kdc, keytabDir, "intruder.keytab", "intruder");

        System.out.println(READY + " realm=" + kdc.getRealm() + " kdc=127.0.0.1:" + kdc.getPort()
                + " keytabs=" + keytabDir + " pid=" + ProcessHandle.current().pid());
        System.out.flush();
        Thread.currentThread().join();
    }

    /** Creates the principals and exports exactly them into NAME, which appears only complete and 0600. */
    private static void writeKeytab(MiniKdc kdc, Path dir, String name, String... principals) throws Exception {
        Path staging = dir.resolve(".staging");
        Files.createDirectories(staging, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        Path tmp = staging.resolve(name);
        kdc.createPrincipal(tmp.toFile(), principals);
        Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-------"));
        Files.move(tmp, dir.resolve(name), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
