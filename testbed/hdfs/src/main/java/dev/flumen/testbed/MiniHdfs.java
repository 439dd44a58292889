package dev.flumen.testbed;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.Writer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.SafeModeAction;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.protocol.DatanodeInfo;
import org.apache.hadoop.hdfs.protocol.HdfsConstants;
import org.apache.hadoop.hdfs.protocol.HdfsConstants.DatanodeReportType;
import org.apache.hadoop.hdfs.server.datanode.DataNode;

/**
 * One-JVM HDFS for the flumen testbed: a MiniDFSCluster (one NameNode, N DataNodes) on
 * 127.0.0.1 with fixed NameNode RPC and HTTP (WebHDFS) ports, plus a line-based control
 * channel on a loopback TCP port.
 *
 * <pre>
 * java ... dev.flumen.testbed.MiniHdfs --base DIR --conf-dir DIR --nn-port P --http-port H
 *          --control-port C [--datanodes N] [--replication R] [--recheck-ms MS]
 *          [--secure --realm R --keytab FILE [--protection authentication|integrity|privacy]
 *           [--client-user flumen]]
 * </pre>
 *
 * On success it writes core-site.xml and hdfs-site.xml into --conf-dir and prints one line
 * starting with {@code FLUMEN-HDFS READY} on stdout.
 *
 * <p>With {@code --secure} the cluster is Kerberized (see {@link SecureHdfs}); the JVM then
 * needs {@code -Djava.security.krb5.conf} pointing at the KDC's krb5.conf.
 *
 * <p>Control protocol: connect to 127.0.0.1:C, send one command per line, read one reply line
 * per command ({@code OK[ detail]} or {@code ERR <message>}). Commands that change the cluster
 * run one at a time; {@code ping} and {@code status} answer at once.
 * DataNode numbers are 1-based and stable across stop/start.
 * <ul>
 *   <li>{@code ping}</li>
 *   <li>{@code status} - OK nn=up|down live=1,2 stopped=3</li>
 *   <li>{@code dn-stop I} - shut DataNode I down (the NameNode notices after the recheck interval)</li>
 *   <li>{@code dn-start I} - restart DataNode I on its old data and ports, wait until registered</li>
 *   <li>{@code nn-stop} - shut the NameNode down</li>
 *   <li>{@code nn-start} - start the (stopped) NameNode again and wait until active</li>
 *   <li>{@code nn-restart} - nn-stop + nn-start</li>
 *   <li>{@code quota PATH BYTES} - set a space quota on directory PATH (created if missing); a
 *       block allocation needs replication x block size (16 MiB) of room, so any quota below that
 *       makes the next block of a file under PATH fail with DSQuotaExceededException</li>
 *   <li>{@code quota-clear PATH} - remove PATH's space quota</li>
 *   <li>{@code safemode-enter} / {@code safemode-leave} - put the NameNode into safe mode by hand
 *       (every namespace change then fails with SafeModeException) and take it out again</li>
 *   <li>{@code shutdown} - reply OK, shut the cluster down and exit 0</li>
 * </ul>
 */
public final class MiniHdfs {

    private static final String READY = "FLUMEN-HDFS READY";

    private final MiniDFSCluster cluster;
    private final int numDataNodes;
    /** xfer port of each DataNode slot (index 0 = DataNode 1); kept across restarts. */
    private final int[] xferPorts;
    /** properties of stopped DataNodes, by slot. */
    private final MiniDFSCluster.DataNodeProperties[] stopped;
    private volatile boolean nameNodeUp = true;
    private final long waitTimeoutMs;

    private MiniHdfs(MiniDFSCluster cluster, int numDataNodes, long waitTimeoutMs) {
        this.cluster = cluster;
        this.numDataNodes = numDataNodes;
        this.xferPorts = new int[numDataNodes];
        this.stopped = new MiniDFSCluster.DataNodeProperties[numDataNodes];
        this.waitTimeoutMs = waitTimeoutMs;
        List<DataNode> dns = cluster.getDataNodes();
        for (int i = 0; i < numDataNodes; i++) {
            xferPorts[i] = dns.get(i).getXferPort();
        }
    }

    public static void main(String[] argv) throws Exception {
        Args a = Args.parse(argv);
        String base = a.require("base");
        Path confDir = Paths.get(a.require("conf-dir"));
        int nnPort = Integer.parseInt(a.require("nn-port"));
        int httpPort = Integer.parseInt(a.require("http-port"));
        int ctlPort = Integer.parseInt(a.require("control-port"));
        SecureHdfs secure = a.flag("secure") ? new SecureHdfs(a) : null;
        int dataNodes = Integer.parseInt(a.getOrDefault("datanodes", "1"));
        int replication = Integer.parseInt(a.getOrDefault("replication", String.valueOf(Math.min(dataNodes, 3))));
        long recheckMs = Long.parseLong(a.getOrDefault("recheck-ms", "1000"));
        long waitTimeoutMs = Long.parseLong(a.getOrDefault("wait-timeout-ms", "120000"));
        if (dataNodes < 1 || replication < 1) {
            throw new IllegalArgumentException("--datanodes and --replication must be >= 1");
        }

        // Bind the control port first: a busy port fails fast, before any HDFS work.
        ServerSocket control = new ServerSocket();
        control.setReuseAddress(true);
        control.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), ctlPort));

        Configuration conf = new HdfsConfiguration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base);
        conf.set("hadoop.tmp.dir", base + "/tmp");
        conf.set("dfs.blocksize", String.valueOf(16L * 1024 * 1024));
        conf.setInt("dfs.replication", replication);
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setBoolean("dfs.webhdfs.enabled", true);
        conf.setLong("dfs.heartbeat.interval", 1);
        conf.setLong("dfs.namenode.heartbeat.recheck-interval", recheckMs);
        // Dead after 2 * recheck + 10 * heartbeat; stale (avoided for reads and writes) after 3 s.
        conf.setLong("dfs.namenode.stale.datanode.interval", 3000);
        conf.setBoolean("dfs.namenode.avoid.read.stale.datanode", true);
        conf.setBoolean("dfs.namenode.avoid.write.stale.datanode", true);
        conf.setInt("dfs.namenode.safemode.extension", 0);
        conf.setBoolean("dfs.client.block.write.replace-datanode-on-failure.best-effort", true);
        conf.setLong("dfs.datanode.du.reserved", 0);
        // Operator settings to try against the testbed, e.g. the NameNode's
        // dfs.namenode.file.close.num-committed-allowed: "k=v,k=v".
        for (String kv : a.getOrDefault("hdfs-conf", "").split(",")) {
            if (kv.isEmpty()) {
                continue;
            }
            int eq = kv.indexOf('=');
            if (eq < 1) {
                throw new IllegalArgumentException("--hdfs-conf wants key=value, got: " + kv);
            }
            conf.set(kv.substring(0, eq), kv.substring(eq + 1));
        }
        if (secure != null) {
            secure.configure(conf);
        }

        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
                .nameNodePort(nnPort)
                .nameNodeHttpPort(httpPort)
                .numDataNodes(dataNodes)
                .format(true)
                .build();
        cluster.waitActive();
        MiniHdfs me = new MiniHdfs(cluster, dataNodes, waitTimeoutMs);
        if (secure != null) {
            secure.prepareHomes(cluster.getFileSystem());
        }

        writeSiteFiles(confDir, nnPort, httpPort, replication, secure == null ? Map.of() : secure.clientSite());

        Runtime.getRuntime().addShutdownHook(new Thread(me::shutdownQuietly, "flumen-minihdfs-shutdown"));

        System.out.println(READY + " nn=hdfs://127.0.0.1:" + cluster.getNameNodePort()
                + " http=http://127.0.0.1:" + httpPort + " control=127.0.0.1:" + ctlPort
                + " datanodes=" + dataNodes + " replication=" + replication
                + (secure == null ? "" : " security=kerberos protection=" + secure.protection())
                + " pid=" + ProcessHandle.current().pid());
        System.out.flush();

        me.serve(control);
    }

    // ---- control channel -------------------------------------------------------------

    private void serve(ServerSocket control) {
        while (true) {
            Socket s;
            try {
                s = control.accept();
            } catch (IOException e) {
                log("control accept failed: " + e);
                continue;
            }
            Thread t = new Thread(() -> handle(s), "flumen-minihdfs-control");
            t.setDaemon(true);
            t.start();
        }
    }

    private void handle(Socket s) {
        try (s;
             BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
             PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8)) {
            String line;
            while ((line = in.readLine()) != null) {
                line = line.trim();
                if (line.isEmpty()) {
                    continue;
                }
                String reply;
                boolean exit = false;
                try {
                    log("control command: " + line);
                    String[] w = line.split("\\s+");
                    String cmd = w[0].toLowerCase(Locale.ROOT);
                    if (cmd.equals("shutdown")) {
                        reply = "OK";
                        exit = true;
                    } else if (cmd.equals("ping")) {
                        reply = "OK"; // answers even while a slow command (nn-restart) runs
                    } else if (cmd.equals("status")) {
                        reply = "OK " + status();
                    } else {
                        synchronized (this) {
                            reply = execute(cmd, w);
                        }
                    }
                } catch (Throwable e) {
                    reply = "ERR " + oneLine(e);
                }
                log("control reply: " + reply);
                out.println(reply);
                if (exit) {
                    shutdownQuietly();
                    System.exit(0);
                }
            }
        } catch (IOException e) {
            log("control connection error: " + e);
        }
    }

    private String execute(String cmd, String[] w) throws Exception {
        switch (cmd) {
            case "ping":
                return "OK";
            case "status":
                return "OK " + status();
            case "dn-stop": {
                int slot = slotArg(w);
                if (stopped[slot] != null) {
                    return "ERR datanode " + (slot + 1) + " is already stopped";
                }
                stopped[slot] = cluster.stopDataNode(indexOfSlot(slot));
                return "OK";
            }
            case "dn-start": {
                int slot = slotArg(w);
                MiniDFSCluster.DataNodeProperties props = stopped[slot];
                if (props == null) {
                    return "ERR datanode " + (slot + 1) + " is not stopped";
                }
                if (!cluster.restartDataNode(props, true)) {
                    return "ERR restartDataNode returned false";
                }
                stopped[slot] = null;
                if (nameNodeUp) {
                    waitDataNodeRegistered(slot);
                }
                return "OK";
            }
            case "nn-stop":
                if (!nameNodeUp) {
                    return "ERR namenode is already stopped";
                }
                cluster.shutdownNameNode(0);
                nameNodeUp = false;
                return "OK";
            case "nn-start":
                if (nameNodeUp) {
                    return "ERR namenode is already running";
                }
                startNameNode();
                return "OK";
            case "nn-restart":
                if (nameNodeUp) {
                    cluster.shutdownNameNode(0);
                    nameNodeUp = false;
                }
                startNameNode();
                return "OK";
            case "quota": {
                if (w.length != 3) {
                    return "ERR usage: quota <path> <bytes>";
                }
                DistributedFileSystem fs = liveFileSystem();
                org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(w[1]);
                fs.mkdirs(dir);
                fs.setQuota(dir, HdfsConstants.QUOTA_DONT_SET, Long.parseLong(w[2]));
                return "OK";
            }
            case "quota-clear": {
                if (w.length != 2) {
                    return "ERR usage: quota-clear <path>";
                }
                liveFileSystem().setQuota(new org.apache.hadoop.fs.Path(w[1]),
                        HdfsConstants.QUOTA_DONT_SET, HdfsConstants.QUOTA_RESET);
                return "OK";
            }
            case "safemode-enter":
                liveFileSystem().setSafeMode(SafeModeAction.ENTER);
                return "OK";
            case "safemode-leave":
                liveFileSystem().setSafeMode(SafeModeAction.LEAVE);
                return "OK";
            default:
                return "ERR unknown command '" + cmd
                        + "' (ping, status, dn-stop I, dn-start I, nn-stop, nn-start, nn-restart, "
                        + "quota PATH BYTES, quota-clear PATH, safemode-enter, safemode-leave, shutdown)";
        }
    }

    /** The cluster's client, refusing (rather than hanging in retries) while the NameNode is stopped. */
    private DistributedFileSystem liveFileSystem() throws IOException {
        if (!nameNodeUp) {
            throw new IOException("namenode is stopped");
        }
        return cluster.getFileSystem();
    }

    private void startNameNode() throws IOException {
        // restartNameNode(index, waitActive) re-creates the NameNode with its original conf,
        // so the RPC and HTTP ports are kept; waitActive waits for the running DataNodes and
        // for safe mode to end.
        cluster.restartNameNode(0, true);
        nameNodeUp = true;
    }

    private String status() {
        StringBuilder live = new StringBuilder();
        StringBuilder down = new StringBuilder();
        for (int i = 0; i < numDataNodes; i++) {
            StringBuilder b = stopped[i] == null ? live : down;
            if (b.length() > 0) {
                b.append(',');
            }
            b.append(i + 1);
        }
        return "nn=" + (nameNodeUp ? "up" : "down") + " running=" + live + " stopped=" + down;
    }

    private int slotArg(String[] w) {
        if (w.length != 2) {
            throw new IllegalArgumentException("usage: " + w[0] + " <datanode 1.." + numDataNodes + ">");
        }
        int n = Integer.parseInt(w[1]);
        if (n < 1 || n > numDataNodes) {
            throw new IllegalArgumentException("datanode must be in 1.." + numDataNodes + ", got " + n);
        }
        return n - 1;
    }

    /** Current index in MiniDFSCluster's DataNode list of a running slot (the list shifts on stop). */
    private int indexOfSlot(int slot) {
        List<DataNode> dns = cluster.getDataNodes();
        for (int i = 0; i < dns.size(); i++) {
            if (dns.get(i).getXferPort() == xferPorts[slot]) {
                return i;
            }
        }
        throw new IllegalStateException("datanode " + (slot + 1) + " (xfer port " + xferPorts[slot] + ") not found");
    }

    private void waitDataNodeRegistered(int slot) throws Exception {
        long deadline = System.currentTimeMillis() + waitTimeoutMs;
        DataNode dn = cluster.getDataNodes().get(indexOfSlot(slot));
        while (System.currentTimeMillis() < deadline) {
            if (dn.isDatanodeFullyStarted() && liveAtNameNode(xferPorts[slot])) {
                return;
            }
            Thread.sleep(100);
        }
        throw new IOException("datanode " + (slot + 1) + " did not register with the namenode in "
                + waitTimeoutMs + " ms");
    }

    private boolean liveAtNameNode(int xferPort) throws IOException {
        DistributedFileSystem fs = cluster.getFileSystem();
        for (DatanodeInfo d : fs.getDataNodeStats(DatanodeReportType.LIVE)) {
            if (d.getXferPort() == xferPort) {
                return true;
            }
        }
        return false;
    }

    private boolean shutDown;

    private synchronized void shutdownQuietly() {
        if (shutDown) {
            return;
        }
        shutDown = true;
        try {
            cluster.shutdown(false, false);
        } catch (Throwable e) {
            log("shutdown: " + e);
        }
    }

    // ---- helpers ---------------------------------------------------------------------

    private static void writeSiteFiles(Path confDir, int nnPort, int httpPort, int replication,
            Map<String, String> extra) throws IOException {
        Files.createDirectories(confDir);
        Map<String, String> core = new LinkedHashMap<>();
        core.put("fs.defaultFS", "hdfs://127.0.0.1:" + nnPort);

        Map<String, String> hdfs = new LinkedHashMap<>();
        hdfs.put("dfs.namenode.rpc-address", "127.0.0.1:" + nnPort);
        hdfs.put("dfs.namenode.http-address", "127.0.0.1:" + httpPort);
        hdfs.put("dfs.webhdfs.enabled", "true");
        hdfs.put("dfs.replication", String.valueOf(replication));
        hdfs.put("dfs.blocksize", String.valueOf(16L * 1024 * 1024));
        hdfs.put("dfs.permissions.enabled", "false"); // the secure cluster's extra says true
        hdfs.put("dfs.client.block.write.replace-datanode-on-failure.enable", "true");
        hdfs.put("dfs.client.block.write.replace-datanode-on-failure.policy", "DEFAULT");
        hdfs.put("dfs.client.block.write.replace-datanode-on-failure.best-effort", "true");
        hdfs.put("dfs.client.use.datanode.hostname", "false");
        for (Map.Entry<String, String> e : extra.entrySet()) {
            (e.getKey().startsWith("dfs.") ? hdfs : core).put(e.getKey(), e.getValue());
        }
        writeXml(confDir.resolve("core-site.xml"), core);
        writeXml(confDir.resolve("hdfs-site.xml"), hdfs);
    }

    private static void writeXml(Path file, Map<String, String> props) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (Writer w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
            w.write("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            w.write("<!-- written by flumen testbed MiniHdfs; rewritten on every start -->\n");
            w.write("<configuration>\n");
            for (Map.Entry<String, String> e : props.entrySet()) {
                w.write("  <property><name>" + xml(e.getKey()) + "</name><value>" + xml(e.getValue())
                        + "</value></property>\n");
            }
            w.write("</configuration>\n");
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    private static String xml(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }

    private static String oneLine(Throwable e) {
        String m = e.getClass().getSimpleName() + ": " + e.getMessage();
        return m.replace('\n', ' ').replace('\r', ' ');
    }

    private static void log(String msg) {
        System.err.println(java.time.LocalDateTime.now() + " [flumen-minihdfs] " + msg);
    }
}
