// Makes tests/vectors/sm2/bc-sha256withsm2.json: what BouncyCastle's "SHA256withSM2" signs, the
// JCA signature id-pointer's PublicKeyAuthenticationInfo asks for (Util.getDefaultSigId) when its
// SM2 private key says "SM2" (KeyConverter.fromPkcs8Pem) rather than hutool's "EC". Ours, not the
// SDK's: it calls the JCA exactly as that code does (update(nonce); update(requestDigest); sign()),
// with no SM2ParameterSpec, as the SDK gives none. Run (Java 17, Debian's libbcprov-java):
//   java -cp /usr/share/java/bcprov.jar tests/vectors/sm2/BcSha256WithSm2.java > tests/vectors/sm2/bc-sha256withsm2.json
import java.security.*;
import java.security.spec.ECGenParameterSpec;
import java.util.Base64;
import java.util.HexFormat;

public class BcSha256WithSm2 {
    public static void main(String[] args) throws Exception {
        Security.addProvider(new org.bouncycastle.jce.provider.BouncyCastleProvider());
        KeyPairGenerator gen = KeyPairGenerator.getInstance("EC", "BC");
        gen.initialize(new ECGenParameterSpec("sm2p256v1"));
        HexFormat hex = HexFormat.of();
        StringBuilder out = new StringBuilder("{\n \"signature_algorithm\": \"SHA256withSM2\",\n \"cases\": [\n");
        for (int n = 0; n < 3; n++) {
            KeyPair pair = gen.generateKeyPair();
            byte[] nonce = new byte[16];
            byte[] digest = new byte[32];
            new SecureRandom().nextBytes(nonce);
            new SecureRandom().nextBytes(digest);
            Signature signer = Signature.getInstance("SHA256withSM2");
            signer.initSign(pair.getPrivate());
            signer.update(nonce);
            signer.update(digest);
            byte[] signature = signer.sign();
            Signature verifier = Signature.getInstance("SHA256withSM2");
            verifier.initVerify(pair.getPublic());
            verifier.update(nonce);
            verifier.update(digest);
            if (!verifier.verify(signature)) throw new IllegalStateException("BouncyCastle does not verify its own signature");
            String pem = "-----BEGIN PUBLIC KEY-----\n"
                + Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(pair.getPublic().getEncoded())
                + "\n-----END PUBLIC KEY-----\n";
            out.append(n == 0 ? "" : ",\n").append("  {\"public_key_pem\": \"").append(pem.replace("\n", "\\n"))
                .append("\", \"nonce\": \"").append(hex.formatHex(nonce))
                .append("\", \"request_digest\": \"").append(hex.formatHex(digest))
                .append("\", \"signature\": \"").append(hex.formatHex(signature)).append("\"}");
        }
        out.append("\n ]\n}");
        System.out.println(out);
    }
}
