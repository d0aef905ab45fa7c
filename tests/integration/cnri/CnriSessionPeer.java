// The client side of a CNRI 7.3.1 session, made with CNRI's own classes, for
// tests/integration/test_cnri_session.py. Lines on stdin and stdout, hex encoded:
// it prints its DH public key; reads the server's SessionSetupResponse data and prints the
// session key it derives; reads the session id and prints a certified HOME request MACed
// with that key, as hdl-genericbatch sends it; then, for every response line it reads,
// prints "verified" or "refused" as the client's MAC check of it says.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.math.BigInteger;
import java.security.KeyPair;
import javax.crypto.interfaces.DHPrivateKey;
import javax.crypto.interfaces.DHPublicKey;
import net.handle.hdllib.AbstractMessage;
import net.handle.hdllib.Common;
import net.handle.hdllib.Encoder;
import net.handle.hdllib.GenericRequest;
import net.handle.hdllib.MessageEnvelope;
import net.handle.hdllib.Util;
import net.handle.security.HdlSecurityProvider;

public class CnriSessionPeer {
  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    HdlSecurityProvider provider = HdlSecurityProvider.getInstance();
    KeyPair pair = provider.generateDHKeyPair(new BigInteger(args[0], 16), BigInteger.valueOf(2));
    System.out.println(Util.decodeHexString(Util.getBytesFromPublicKey(pair.getPublic()), false));
    System.out.flush();

    byte[] data = Util.encodeHexString(in.readLine().trim());
    int algorithm = Encoder.readInt(data, 0);
    DHPublicKey server = (DHPublicKey) Util.getPublicKeyFromBytes(data, Encoder.INT_SIZE);
    byte[] key = Util.substring(provider.getKeyFromDH(server, (DHPrivateKey) pair.getPrivate(), algorithm), Encoder.INT_SIZE);
    System.out.println(Util.decodeHexString(key, false));
    System.out.flush();

    int sessionId = Integer.parseInt(in.readLine().trim());
    GenericRequest req = new GenericRequest(Util.encodeString("0.NA/88.118.8.1"), AbstractMessage.OC_HOME_NA, null);
    req.majorProtocolVersion = 2;
    req.minorProtocolVersion = 5;
    req.certify = true;
    req.sessionId = sessionId;
    req.requestId = 4242;
    req.sessionCounter = 1;
    req.signMessage(key);
    byte[] message = req.getEncodedMessage();
    MessageEnvelope envelope = new MessageEnvelope();
    envelope.protocolMajorVersion = 2;
    envelope.protocolMinorVersion = 5;
    envelope.sessionId = sessionId;
    envelope.requestId = 4242;
    envelope.messageLength = message.length;
    byte[] head = new byte[Common.MESSAGE_ENVELOPE_SIZE];
    Encoder.encodeEnvelope(envelope, head);
    System.out.println(Util.decodeHexString(head, false) + Util.decodeHexString(message, false));
    System.out.flush();

    String line;
    while ((line = in.readLine()) != null && !line.isEmpty()) {
      byte[] raw = Util.encodeHexString(line.trim());
      MessageEnvelope responseEnvelope = new MessageEnvelope();
      Encoder.decodeEnvelope(raw, responseEnvelope);
      AbstractMessage response = Encoder.decodeMessage(raw, Common.MESSAGE_ENVELOPE_SIZE, responseEnvelope);
      System.out.println(response.verifyMessage(key) ? "verified" : "refused");
      System.out.flush();
    }
  }
}
