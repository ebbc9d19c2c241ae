import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import java.lang.reflect.Method;

/**
 * Starts DynamoDB Local bound to one address (127.0.0.1 unless -Dfinfaas.bindHost says otherwise).
 * DynamoDB Local has no host option and listens on every interface; its Jetty connector is
 * reachable only through a private field, so the host is set reflectively before start.
 * Takes the same arguments as DynamoDBLocal.jar. When standard input closes (the parent
 * process died) the server exits, so a killed launcher leaves no orphan behind.
 */
public final class LoopbackDynamoDBLocal {
    private LoopbackDynamoDBLocal() {
    }

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("finfaas.bindHost", "127.0.0.1");
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        bindConnectors(proxy, host);
        try {
            proxy.start();
        } catch (Exception error) {
            System.err.println("DynamoDB Local failed to start: " + error);
            System.exit(1);
        }
        System.out.println("DynamoDB Local listening on " + host);
        if (Boolean.getBoolean("finfaas.exitOnStdinEof")) {
            exitOnStdinEof();
        }
        proxy.join();
    }

    private static void bindConnectors(DynamoDBProxyServer proxy, String host) throws Exception {
        Field serverField = DynamoDBProxyServer.class.getDeclaredField("server");
        serverField.setAccessible(true);
        Object jetty = serverField.get(proxy);
        Object[] connectors = (Object[]) jetty.getClass().getMethod("getConnectors").invoke(jetty);
        for (Object connector : connectors) {
            Method setHost = connector.getClass().getMethod("setHost", String.class);
            setHost.invoke(connector, host);
        }
    }

    private static void exitOnStdinEof() {
        Thread watcher = new Thread(() -> {
            try {
                while (System.in.read() != -1) {
                    // input is ignored: only its end matters
                }
            } catch (java.io.IOException ignored) {
                // a broken pipe means the parent is gone, as does EOF
            }
            System.exit(0);
        }, "parent-watcher");
        watcher.setDaemon(true);
        watcher.start();
    }
}
