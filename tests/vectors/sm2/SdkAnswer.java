import cn.hutool.core.util.HexUtil;
import cn.hutool.crypto.SecureUtil;
import cn.hutool.crypto.SmUtil;
import cn.hutool.crypto.asymmetric.SM2;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.security.KeyPair;
import java.util.Base64;

// The EC branch of id-pointer's PublicKeyAuthenticationInfo.authenticate, with hutool and BouncyCastle.
public class SdkAnswer {
    public static void main(String[] args) {
        String handle = args[0];
        byte[] nonce = HexUtil.decodeHex(args[1]);
        byte[] digest = HexUtil.decodeHex(args[2]);
        KeyPair pair = SecureUtil.generateKeyPair("SM2");
        byte[] data = new byte[nonce.length + digest.length];
        System.arraycopy(nonce, 0, data, 0, nonce.length);
        System.arraycopy(digest, 0, data, nonce.length, digest.length);
        String digestHex = SmUtil.sm3(new ByteArrayInputStream(data));
        SM2 sm2 = new SM2(pair.getPrivate(), null);
        byte[] signature = sm2.sign(HexUtil.decodeHex(digestHex), handle.getBytes(StandardCharsets.UTF_8));
        System.out.println("algorithm " + pair.getPrivate().getAlgorithm());
        System.out.println("spki " + Base64.getEncoder().encodeToString(pair.getPublic().getEncoded()));
        System.out.println("signature " + HexUtil.encodeHexStr(signature));
    }
}
