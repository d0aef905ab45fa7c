// Offline helper for bench/cnri.py, run with Java's single-file launcher against a CNRI
// HANDLE.NET distribution: java -cp '<dist>/lib/*' bench/CnriHelper.java <command> ...
//
// It exists because two jobs need CNRI's own encoders and storage classes: turning a
// siteinfo.json into the binary forms the server and the client read (siteinfo.bin,
// root_info), and writing handle records straight into the server's Berkeley DB JE
// store while the server is stopped, which loads 100,000 records in seconds where the
// admin protocol manages about a thousand a second. Only API common to 7.3.1 and 9.0.0
// is used, so one source serves both.
//
//   version                             (protocol version this distribution speaks)
//   site <siteinfo.json> <siteinfo.bin out> <root_info out>
//   load <server dir> <siteinfo.json>   (records on stdin, one per line:
//        handle<TAB>index:TYPE:perms:hexdata<TAB>...; hexdata "@site" means the site
//        record of siteinfo.json; perms is 4 flags adminRead adminWrite publicRead
//        publicWrite; a line "#home <prefix handle>" marks a prefix as homed)

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import net.cnri.util.StreamTable;
import net.handle.apps.simple.SiteInfoConverter;
import net.handle.hdllib.Common;
import net.handle.hdllib.Encoder;
import net.handle.hdllib.HandleValue;
import net.handle.hdllib.SiteInfo;
import net.handle.hdllib.Util;
import net.handle.server.bdbje.BDBJEHandleStorage;

public class CnriHelper {
    public static void main(String[] args) throws Exception {
        if (args.length == 4 && args[0].equals("site")) {
            site(new File(args[1]), new File(args[2]), new File(args[3]));
        } else if (args.length == 1 && args[0].equals("version")) {
            System.out.println(Common.MAJOR_VERSION + "." + Common.MINOR_VERSION);
        } else if (args.length == 3 && args[0].equals("load")) {
            load(new File(args[1]), new File(args[2]));
        } else {
            System.err.println("usage: CnriHelper version | site <siteinfo.json> <siteinfo.bin> <root_info>"
                + " | load <server dir> <siteinfo.json> < records");
            System.exit(2);
        }
    }

    static SiteInfo readSite(File json) throws Exception {
        String text = new String(Files.readAllBytes(json.toPath()), StandardCharsets.UTF_8);
        return SiteInfoConverter.convertToSiteInfo(text);
    }

    static void site(File json, File siteBin, File rootInfo) throws Exception {
        byte[] record = Encoder.encodeSiteInfoRecord(readSite(json));
        Files.write(siteBin.toPath(), record);
        HandleValue value = new HandleValue(1, Common.STD_TYPE_HSSITE, record);
        Files.write(rootInfo.toPath(), Encoder.encodeGlobalValues(new HandleValue[] {value}));
    }

    static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    static HandleValue value(String spec, byte[] siteRecord, int now) {
        String[] f = spec.split(":", 4);
        byte[] data = f[3].equals("@site") ? siteRecord : hex(f[3]);
        HandleValue v = new HandleValue(Integer.parseInt(f[0]), Util.encodeString(f[1]), data);
        v.setTimestamp(now);
        v.setTTL(86400);
        v.setAdminCanRead(f[2].charAt(0) == '1');
        v.setAdminCanWrite(f[2].charAt(1) == '1');
        v.setAnyoneCanRead(f[2].charAt(2) == '1');
        v.setAnyoneCanWrite(f[2].charAt(3) == '1');
        return v;
    }

    static void load(File serverDir, File siteJson) throws Exception {
        byte[] siteRecord = Encoder.encodeSiteInfoRecord(readSite(siteJson));
        StreamTable config = new StreamTable();
        config.put("serverDir", serverDir.getAbsolutePath());
        config.put("enable_recovery_log", false);
        config.put("bdbje_no_sync_on_write", true);
        config.put("bdbje_dump_on_checkpoint", false);
        BDBJEHandleStorage storage = new BDBJEHandleStorage();
        storage.init(config);
        int now = (int) (System.currentTimeMillis() / 1000);
        long count = 0;
        long start = System.nanoTime();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try {
            for (String line; (line = in.readLine()) != null; ) {
                if (line.isEmpty()) continue;
                if (line.startsWith("#home ")) {
                    storage.setHaveNA(Util.encodeString(line.substring(6).trim()), true);
                    continue;
                }
                String[] f = line.split("\t");
                List<HandleValue> values = new ArrayList<>();
                for (int i = 1; i < f.length; i++) values.add(value(f[i], siteRecord, now));
                byte[] handle = Util.upperCase(Util.encodeString(f[0]));
                storage.createHandle(handle, values.toArray(new HandleValue[0]));
                count++;
            }
            storage.checkpointDatabase();
        } finally {
            storage.shutdown();
        }
        double secs = (System.nanoTime() - start) / 1e9;
        System.out.printf("loaded %d handles in %.3f s%n", count, secs);
    }
}
