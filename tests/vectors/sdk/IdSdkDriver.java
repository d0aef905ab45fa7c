import cn.ac.caict.iiiiot.id.client.core.BaseResponse;
import cn.ac.caict.iiiiot.id.client.core.ErrorResponse;
import cn.ac.caict.iiiiot.id.client.core.ResolutionResponse;
import cn.ac.caict.iiiiot.id.client.data.IdentifierValue;
import cn.ac.caict.iiiiot.id.client.data.MsgSettings;
import cn.ac.caict.iiiiot.id.client.service.IChannelManageService;
import cn.ac.caict.iiiiot.id.client.service.IIDManageServiceChannel;
import cn.ac.caict.iiiiot.id.client.service.impl.ChannelManageServiceImpl;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

// Drives CAICT's ID-SDK 2.0.x through its public API only (IChannelManageService,
// IIDManageServiceChannel), one scenario per run, for tests.vectors.make_sdk_vectors.
//
//   java -cp <the ID-SDK jar and its dependencies> IdSdkDriver.java HOST PORT SCENARIO ARGS...
//
//   resolve-tcp HANDLE            a TCP channel, lookupIdentifier
//   resolve-udp HANDLE            a UDP channel, lookupIdentifier
//   login-password USER SECRET HANDLE          login(user, password), then the writes on HANDLE
//   login-key IDENTITY INDEX PEM RDTYPE HANDLE login(identity, index, key file, null, rdType), then the writes
//
// Every step prints one line "STEP <name> <responseCode or exception> <detail>" and then waits
// for a line on standard input, so that whoever runs it can look at the node (its REST API)
// between steps; at the end of input it goes on without waiting.
public class IdSdkDriver {
    private static final BufferedReader IN = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        String scenario = args[2];
        IChannelManageService channels = new ChannelManageServiceImpl();
        String protocol = scenario.equals("resolve-udp") ? "UDP" : "TCP";
        IIDManageServiceChannel channel = channels.generateChannel(host, port, protocol);
        step("channel", channels.getIDManageServiceChannelState(channel), protocol);
        switch (scenario) {
            case "resolve-tcp":
            case "resolve-udp":
                report("resolve", () -> channel.lookupIdentifier(args[3], null, null, new MsgSettings()));
                report("resolve-missing", () -> channel.lookupIdentifier(args[3] + "-NO-SUCH", null, null, new MsgSettings()));
                break;
            case "login-password":
                report("login", () -> channel.login(args[3], args[4], new MsgSettings()));
                writes(channel, args[5]);
                break;
            case "login-key":
                int index = Integer.parseInt(args[4]);
                int rdType = Integer.parseInt(args[6]);
                report("login", () -> channel.login(args[3], index, args[5], null, rdType, new MsgSettings()));
                writes(channel, args[7]);
                break;
            default:
                throw new IllegalArgumentException("unknown scenario " + scenario);
        }
        channels.closeChannel(channel);
        System.exit(0);  // the SDK leaves its socket to the finalizer
    }

    // The same five writes as CNRI's batch vectors: create, add, modify, remove, delete.
    private static void writes(IIDManageServiceChannel channel, String handle) throws Exception {
        MsgSettings settings = new MsgSettings();
        IdentifierValue[] created = {new IdentifierValue(1, "URL", "https://example.org/v1")};
        report("create", () -> channel.createIdentifier(handle, created, settings));
        IdentifierValue[] added = {new IdentifierValue(2, "EMAIL", "vec@example.org")};
        report("add", () -> channel.addIdentifierValues(handle, added, settings));
        IdentifierValue[] modified = {new IdentifierValue(1, "URL", "https://example.org/v2")};
        report("modify", () -> channel.modifyIdentifierValues(handle, modified, settings));
        report("remove", () -> channel.removeIdentifierValues(handle, new int[] {2}, settings));
        report("delete", () -> channel.deleteIdentifier(handle, settings));
    }

    interface Call {
        BaseResponse run() throws Exception;
    }

    private static void report(String name, Call call) throws Exception {
        try {
            BaseResponse response = call.run();
            if (response == null) {
                step(name, -1, "null response");
            } else {
                step(name, response.responseCode, describe(response));
            }
        } catch (Exception e) {
            step(name, -2, e.toString().replace('\n', ' '));
        }
    }

    private static String describe(BaseResponse response) throws Exception {
        if (response instanceof ResolutionResponse && ((ResolutionResponse) response).values == null) {
            return "ResolutionResponse with no values";  // how the SDK reads a 2000 success
        }
        if (response instanceof ResolutionResponse) {
            StringBuilder out = new StringBuilder("values");
            for (IdentifierValue v : ((ResolutionResponse) response).getAllIDValues()) {
                out.append(' ').append(v.index).append(':').append(v.getTypeStr());
            }
            return out.toString();
        }
        if (response instanceof ErrorResponse) {
            return "error " + new String(((ErrorResponse) response).message, StandardCharsets.UTF_8);
        }
        return response.getClass().getSimpleName() + " opCode " + response.opCode;
    }

    private static void step(String name, int code, String detail) throws Exception {
        System.out.println("STEP " + name + " " + code + " " + detail);
        System.out.flush();
        IN.readLine();
    }
}
