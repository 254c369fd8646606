import Testing
@testable import Shared

@Suite("SHA-256 and HMAC")
struct SecurityTests {
    @Test("NIST SHA-256 vectors")
    func sha256Vectors() {
        #expect(SHA256.hash(Array("".utf8)).hexString == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hash(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).hexString
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000)).hexString
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("incremental updates equal one-shot hashing across block boundaries")
    func incremental() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var s = SHA256()
        s.update(data[0..<63])
        s.update(data[63..<65])
        s.update(data[65...])
        #expect(s.finalize() == SHA256.hash(data))
    }

    @Test("RFC 4231 HMAC-SHA-256 test cases 1, 2 and 6")
    func hmacVectors() {
        #expect(HMACSHA256.authenticate(message: Array("Hi There".utf8), key: [UInt8](repeating: 0x0b, count: 20)).hexString
            == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(HMACSHA256.authenticate(message: Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8)).hexString
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(HMACSHA256.authenticate(message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8), key: [UInt8](repeating: 0xaa, count: 131)).hexString
            == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test("a token proof verifies only for the same token and purpose")
    func proofs() {
        let token = ClusterToken("s3cret")
        let proof = token.prove("register|w1|host")
        #expect(token.verify(proof, purpose: "register|w1|host"))
        #expect(!token.verify(proof, purpose: "register|w2|host"))
        #expect(!ClusterToken("other").verify(proof, purpose: "register|w1|host"))
        #expect(!token.verify(.none, purpose: "register|w1|host"))
    }

    @Test("the token never prints")
    func redacted() {
        let token = ClusterToken("hunter2-secret")
        #expect(!"\(token)".contains("hunter2"))
        #expect(!String(reflecting: token).contains("hunter2"))
    }
}
