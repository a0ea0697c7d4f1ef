import Foundation
import Testing

@testable import QuadraData

@Suite struct GzipTests {
  /// `gzip.compress(b"hello idx\n", mtime=0)` from Python's gzip module: interop with another encoder.
  static let pythonGzip: [UInt8] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x4c,
    0xa9, 0xe0, 0x02, 0x00, 0x62, 0x28, 0xbc, 0xca, 0x0a, 0x00, 0x00, 0x00,
  ]

  @Test func decompressesPythonGzip() throws {
    let text = try Gzip.decompress(Data(Self.pythonGzip))
    #expect(String(decoding: text, as: UTF8.self) == "hello idx\n")
  }

  @Test(arguments: [0, 1, 1000, 262_145, 700_001])
  func roundTrip(size: Int) throws {
    // Low-entropy bytes compress well, so large sizes exercise several output chunks.
    let original = Data(randomBytes(size, below: 7, seed: UInt64(size)))
    let compressed = try Gzip.compress(original)
    #expect(Gzip.hasGzipMagic(compressed))
    #expect(try Gzip.decompress(compressed) == original)
  }

  @Test func concatenatedMembersDecompressInSequence() throws {
    let a = Data(randomBytes(5000, seed: 1)), b = Data(randomBytes(300, seed: 2))
    let joined = try Gzip.compress(a) + Gzip.compress(b)
    #expect(try Gzip.decompress(joined) == a + b)
  }

  @Test func rejectsNonGzip() {
    #expect(throws: GzipError.notGzip) { try Gzip.decompress(Data([0, 0, 8, 1, 0, 0, 0, 3])) }
    #expect(throws: GzipError.notGzip) { try Gzip.decompress(Data()) }
  }

  @Test func truncatedStreamIsReported() throws {
    let original = Data(randomBytes(20_000, seed: 3))
    let compressed = try Gzip.compress(original)
    // Cut inside the deflate data, and cut only the 8-byte trailer (CRC + length).
    for cut in [compressed.count / 2, compressed.count - 8, compressed.count - 1] {
      let error = thrownError { _ = try Gzip.decompress(compressed.prefix(cut)) }
      guard case .truncated = error as? GzipError else {
        Issue.record("cut at \(cut): expected truncated, got \(String(describing: error))")
        continue
      }
      #expect((error as! GzipError).description.contains("truncated"))
    }
  }

  @Test func corruptStreamIsReported() throws {
    let original = Data(randomBytes(20_000, below: 16, seed: 4))
    let compressed = try Gzip.compress(original)
    // A wrong CRC-32 in the trailer.
    var badCRC = compressed
    badCRC[badCRC.count - 8] ^= 0xFF
    let crcError = thrownError { _ = try Gzip.decompress(badCRC) }
    guard case .corrupt(let message) = crcError as? GzipError else {
      Issue.record("expected corrupt, got \(String(describing: crcError))")
      return
    }
    #expect(message.contains("check"))
    // An unknown compression method in the header.
    var badMethod = compressed
    badMethod[2] = 7
    guard case .corrupt = thrownError({ _ = try Gzip.decompress(badMethod) }) as? GzipError else {
      Issue.record("bad method not reported as corrupt")
      return
    }
    // Garbage after the end of the stream.
    let garbage = compressed + Data([1, 2, 3])
    guard case .corrupt(let tail) = thrownError({ _ = try Gzip.decompress(garbage) }) as? GzipError else {
      Issue.record("trailing garbage not reported as corrupt")
      return
    }
    #expect(tail.contains("3 unexpected bytes"))
  }
}
