import cn.teleinfo.idpointer.sdk.client.IDClient;
import cn.teleinfo.idpointer.sdk.client.IDClientFactory;
import cn.teleinfo.idpointer.sdk.client.v3.DefaultIdClientFactory;
import cn.teleinfo.idpointer.sdk.config.IDClientConfig;
import cn.teleinfo.idpointer.sdk.core.AuthenticationInfo;
import cn.teleinfo.idpointer.sdk.core.HandleValue;
import cn.teleinfo.idpointer.sdk.core.PublicKeyAuthenticationInfo;
import cn.teleinfo.idpointer.sdk.core.SecretKeyAuthenticationInfo;
import cn.teleinfo.idpointer.sdk.core.Util;
import cn.teleinfo.idpointer.sdk.exception.IDException;
import cn.teleinfo.idpointer.sdk.util.KeyConverter;
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.PrivateKey;

// Drives Teleinfo's id-pointer-sdk through its public client API only (IDClientFactory,
// IDClient, the AuthenticationInfo classes, KeyConverter and Util's key readers), one scenario
// per run, for tests.vectors.make_sdk_vectors.
//
//   java -cp <the SDK's classes and its dependencies> IdPointerDriver.java HOST PORT SCENARIO ARGS...
//
//   resolve-tcp HANDLE                           an unauthenticated client, resolveHandle
//   login-secret IDENTITY INDEX SECRET HANDLE    SecretKeyAuthenticationInfo (the secret hashed, as
//                                                handle.net's tools do), then the writes on HANDLE
//   login-key IDENTITY INDEX LOADER KEYFILE HANDLE
//                                                PublicKeyAuthenticationInfo with the private key
//                                                in KEYFILE, then the writes
//
// LOADER says how KEYFILE is read: handle-net with Util.getPrivateKeyFromFileWithPassphrase
// (handle.net's encoding: DSA and RSA), pkcs8 with KeyConverter.fromPkcs8Pem (RSA, and SM2
// as an "SM2" key), sm2-ec with KeyConverter and then hutool's SecureUtil.generatePrivateKey
// ("SM2", encoded), as the SDK's own JsonWebSignatureImpl turns its SM2 keys into ones hutool
// signs with. PublicKeyAuthenticationInfo signs SM3withSM2 only for a key that says "EC"; an
// "SM2" one goes to Signature "SHA256withSM2".
//
// Every step prints one line "STEP <name> <1, or -2 for an exception> <detail>" and waits for
// a line on standard input, so that whoever runs it can look at the node between steps.
public class IdPointerDriver {
    private static final BufferedReader IN = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

    public static void main(String[] args) throws Exception {
        InetSocketAddress server = new InetSocketAddress(args[0], Integer.parseInt(args[1]));
        String scenario = args[2];
        IDClientConfig config = IDClientConfig.builder()
                .recursionServerIp(args[0]).recursionServerPort(Integer.parseInt(args[1])).promiseTimeout(20).build();
        IDClientFactory factory = new IDClientFactory(config);
        switch (scenario) {
            case "resolve-tcp":
                try (IDClient client = factory.newInstance(server)) {
                    report("resolve", () -> describe(client.resolveHandle(args[3])));
                    report("resolve-missing", () -> describe(client.resolveHandle(args[3] + "-NO-SUCH")));
                }
                report("udp-client", () -> "createUdpClient gives " + new DefaultIdClientFactory().createUdpClient(server, 20));
                break;
            case "login-secret": {
                byte[] secret = args[5].getBytes(StandardCharsets.UTF_8);
                AuthenticationInfo auth = new SecretKeyAuthenticationInfo(Util.encodeString(args[3]), Integer.parseInt(args[4]), secret, true);
                try (IDClient client = factory.newInstance(server, auth)) {
                    writes(client, args[6]);
                }
                break;
            }
            case "login-key": {
                PrivateKey key = privateKey(args[5], args[6]);
                step("key", 1, key.getAlgorithm());
                AuthenticationInfo auth = new PublicKeyAuthenticationInfo(Util.encodeString(args[3]), Integer.parseInt(args[4]), key);
                try (IDClient client = factory.newInstance(server, auth)) {
                    writes(client, args[7]);
                }
                break;
            }
            default:
                throw new IllegalArgumentException("unknown scenario " + scenario);
        }
        System.exit(0);  // netty's event loop threads would keep the JVM up
    }

    private static PrivateKey privateKey(String loader, String path) throws Exception {
        if (loader.equals("handle-net")) {
            return Util.getPrivateKeyFromFileWithPassphrase(new File(path), null);
        }
        String pem = new String(Files.readAllBytes(new File(path).toPath()), StandardCharsets.US_ASCII);
        PrivateKey key = KeyConverter.fromPkcs8Pem(pem);
        switch (loader) {
            case "pkcs8":
                return key;
            case "sm2-ec":
                return cn.hutool.crypto.SecureUtil.generatePrivateKey("SM2", key.getEncoded());
            default:
                throw new IllegalArgumentException("unknown key loader " + loader);
        }
    }

    // The same five writes as CNRI's batch vectors: create, add, modify, remove, delete. The
    // first one logs the client's connection in.
    private static void writes(IDClient client, String handle) throws Exception {
        report("create", () -> { client.createHandle(handle, new HandleValue[] {new HandleValue(1, "URL", "https://example.org/v1")}); return "done"; });
        report("add", () -> { client.addHandleValues(handle, new HandleValue[] {new HandleValue(2, "EMAIL", "vec@example.org")}); return "done"; });
        report("modify", () -> { client.updateHandleValues(handle, new HandleValue[] {new HandleValue(1, "URL", "https://example.org/v2")}); return "done"; });
        report("remove", () -> { client.deleteHandleValues(handle, new int[] {2}); return "done"; });
        report("delete", () -> { client.deleteHandle(handle); return "done"; });
    }

    interface Call {
        String run() throws Exception;
    }

    private static String describe(HandleValue[] values) {
        StringBuilder out = new StringBuilder("values");
        for (HandleValue v : values) {
            out.append(' ').append(v.getIndex()).append(':').append(v.getTypeAsString());
        }
        return out.toString();
    }

    private static void report(String name, Call call) throws Exception {
        String detail;
        int code = 1;
        try {
            detail = call.run();
        } catch (Exception e) {
            code = -2;
            StringBuilder chain = new StringBuilder(e.toString());
            if (e instanceof IDException && ((IDException) e).getResponse() != null) {
                chain.append(" [").append(((IDException) e).getResponse()).append(']');
            }
            for (Throwable cause = e.getCause(); cause != null; cause = cause.getCause()) {
                chain.append(" <- ").append(cause);
            }
            detail = chain.toString();
        }
        step(name, code, detail.replace('\n', ' '));
    }

    private static void step(String name, int code, String detail) throws Exception {
        System.out.println("STEP " + name + " " + code + " " + detail);
        System.out.flush();
        IN.readLine();
    }
}
