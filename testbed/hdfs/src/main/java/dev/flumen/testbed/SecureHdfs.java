package dev.flumen.testbed;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.security.UserGroupInformation;

/**
 * Kerberos settings of the secure testbed cluster (MiniHdfs --secure): Kerberos
 * authentication, service-level authorization, block access tokens, SASL on RPC and data
 * transfer at the chosen protection, permissions on, and the client's home directory.
 * The server principals are hdfs/localhost and HTTP/localhost from one keytab; the KDC runs
 * elsewhere (Kdc), found through -Djava.security.krb5.conf.
 */
final class SecureHdfs {

    static final List<String> PROTECTIONS = List.of("authentication", "integrity", "privacy");

    private final String realm;
    private final String keytab;
    private final String protection;
    private final String clientUser;

    SecureHdfs(Args a) {
        this.realm = a.require("realm");
        this.keytab = a.require("keytab");
        this.protection = a.getOrDefault("protection", "privacy");
        this.clientUser = a.getOrDefault("client-user", "flumen");
        if (!PROTECTIONS.contains(protection)) {
            throw new IllegalArgumentException("--protection must be one of " + PROTECTIONS + ", got " + protection);
        }
        if (System.getProperty("java.security.krb5.conf") == null) {
            throw new IllegalArgumentException("--secure needs -Djava.security.krb5.conf=<krb5.conf of the KDC>");
        }
    }

    String protection() {
        return protection;
    }

    private String principal(String service) {
        return service + "/localhost@" + realm;
    }

    /** Server-side settings; call before the cluster is built. */
    void configure(Configuration conf) {
        conf.set("hadoop.security.authentication", "kerberos");
        conf.setBoolean("hadoop.security.authorization", true);
        conf.set("hadoop.security.auth_to_local", authToLocal());
        conf.set("hadoop.rpc.protection", protection);
        conf.set("dfs.data.transfer.protection", protection);
        conf.setBoolean("dfs.block.access.token.enable", true);
        // Data transfer SASL on unprivileged ports without HTTPS: allowed for tests only.
        conf.setBoolean("ignore.secure.ports.for.testing", true);
        conf.setBoolean("dfs.permissions.enabled", true);
        conf.set("dfs.namenode.kerberos.principal", principal("hdfs"));
        conf.set("dfs.namenode.keytab.file", keytab);
        conf.set("dfs.datanode.kerberos.principal", principal("hdfs"));
        conf.set("dfs.datanode.keytab.file", keytab);
        conf.set("dfs.namenode.kerberos.internal.spnego.principal", principal("HTTP"));
        conf.set("dfs.web.authentication.kerberos.principal", principal("HTTP"));
        conf.set("dfs.web.authentication.kerberos.keytab", keytab);
        UserGroupInformation.setConfiguration(conf);
    }

    /** flumen@REALM -> flumen, intruder@REALM -> intruder, hdfs/localhost@REALM -> hdfs. */
    private String authToLocal() {
        return String.join("\n",
                "RULE:[1:$1@$0](.*@" + realm.replace(".", "\\.") + ")s/@.*//",
                "RULE:[2:$1@$0](.*@" + realm.replace(".", "\\.") + ")s/@.*//",
                "DEFAULT");
    }

    /** What a client needs beside fs.defaultFS (written into the secure hadoop-conf dir). */
    Map<String, String> clientSite() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("hadoop.security.authentication", "kerberos");
        m.put("hadoop.rpc.protection", protection);
        m.put("dfs.data.transfer.protection", protection);
        m.put("dfs.namenode.kerberos.principal", principal("hdfs"));
        m.put("dfs.namenode.kerberos.principal.pattern", "*");
        m.put("dfs.permissions.enabled", "true");
        return m;
    }

    /** /user/CLIENT owned by the client (0755: others may read, not write) and a sticky /tmp. */
    void prepareHomes(DistributedFileSystem fs) throws IOException {
        Path home = new Path("/user/" + clientUser);
        fs.mkdirs(home);
        fs.setOwner(home, clientUser, clientUser);
        fs.setPermission(home, new FsPermission((short) 0755));
        Path tmp = new Path("/tmp");
        fs.mkdirs(tmp);
        fs.setPermission(tmp, new FsPermission((short) 01777));
    }
}
